"""wechatpay_chain: an asyncio-native WeChat Pay API v3 client.

Write a path the way it reads in the docs, await a verb, and get back a verified answer::

    async with WeChatPay(mchid, serial, private_key, {public_key_id: public_key}) as wxpay:
        r = await wxpay.v3.pay.transactions.native.post(json={...})
"""

from ._version import __version__
from .chain import Node
from .client import WeChatPay
from .errors import (
    ApiError,
    ConfigError,
    ConnectError,
    DecryptionError,
    HashMismatchError,
    InvalidNotificationError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    RequestTimeoutError,
    SignatureMismatchError,
    TimestampSkewError,
    TransportError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
    UntrustedHostError,
    VerificationError,
    WeChatPayError,
)
from .files import BillParser, BillStream, Download, ParsedBill, parse_bill
from .middleware import SigningMiddleware, VerifyingMiddleware
from .notifications import Acknowledgement, Notification
from .response import Response
from .signing import Signer
from .verifying import PublicKeyStore, Verifier

__all__ = [
    "Acknowledgement",
    "ApiError",
    "BillParser",
    "BillStream",
    "ConfigError",
    "ConnectError",
    "DecryptionError",
    "Download",
    "HashMismatchError",
    "InvalidNotificationError",
    "MissingSignatureHeaderError",
    "Node",
    "Notification",
    "ParsedBill",
    "ProbeSignatureError",
    "PublicKeyStore",
    "RequestTimeoutError",
    "Response",
    "SignatureMismatchError",
    "Signer",
    "SigningMiddleware",
    "TimestampSkewError",
    "TransportError",
    "UnknownSerialError",
    "UnsupportedSignatureTypeError",
    "UntrustedHostError",
    "VerificationError",
    "Verifier",
    "VerifyingMiddleware",
    "WeChatPay",
    "WeChatPayError",
    "__version__",
    "parse_bill",
]
