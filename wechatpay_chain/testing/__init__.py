"""A fake WeChat Pay server for offline tests, demos and other clients.

``FakeWeChatPay`` is a real aiohttp server on loopback: it verifies every request's
signature with the merchant's key, signs every answer with its own WeChat Pay key, keeps
orders, refunds and pre-sign sessions, and injects faults on request. The pytest plugin
(installed with the package) provides the ``wechatpay_server`` and ``wechatpay_client``
fixtures.
"""

# Names load on first use (PEP 562), as in the package itself: pytest imports this package
# for its plugin in every run, and the server brings aiohttp.
from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:
    from .faults import Fault
    from .keypairs import generate_private_key
    from .messages import ApiFailure, RecordedRequest, Reply
    from .notify import RETRY_SCHEDULE, Attempt, Delivery
    from .server import FakeWeChatPay, MerchantCredentials

_HOMES = {
    "RETRY_SCHEDULE": "notify",
    "ApiFailure": "messages",
    "Attempt": "notify",
    "Delivery": "notify",
    "FakeWeChatPay": "server",
    "Fault": "faults",
    "MerchantCredentials": "server",
    "RecordedRequest": "messages",
    "Reply": "messages",
    "generate_private_key": "keypairs",
}


__getattr__, __dir__ = lazy_names(globals(), _HOMES)


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
