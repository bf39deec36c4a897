"""A fake WeChat Pay server for offline tests, demos and other clients.

``FakeWeChatPay`` is a real aiohttp server on loopback: it verifies every request's
signature with the merchant's key, signs every answer with its own WeChat Pay key, keeps
orders, refunds and pre-sign sessions, and injects faults on request. The pytest plugin
(installed with the package) provides the ``wechatpay_server`` and ``wechatpay_client``
fixtures.
"""

from .faults import Fault
from .keypairs import generate_private_key
from .messages import ApiFailure, RecordedRequest, Reply
from .notify import RETRY_SCHEDULE, Attempt, Delivery
from .server import FakeWeChatPay, MerchantCredentials

__all__ = [
    "RETRY_SCHEDULE",
    "ApiFailure",
    "Attempt",
    "Delivery",
    "FakeWeChatPay",
    "Fault",
    "MerchantCredentials",
    "RecordedRequest",
    "Reply",
    "generate_private_key",
]
