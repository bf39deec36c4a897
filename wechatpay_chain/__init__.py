"""wechatpay_chain: an asyncio-native WeChat Pay API client.

Write a path the way it reads in the docs, await a verb, and get back a verified answer::

    async with WeChatPay(mchid, serial, private_key, {public_key_id: public_key}) as wxpay:
        r = await wxpay.v3.pay.transactions.native.post(json={...})
"""

# Names load on first use (PEP 562): ``import wechatpay_chain`` stays cheap for what
# imports the package without calling WeChat Pay over HTTP (the pytest plugin pytest loads
# in every run, a webhook receiver that only verifies notifications, ``--help``). The client
# brings aiohttp, about 180 ms to import, when ``WeChatPay`` is first named.
from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__

if TYPE_CHECKING:
    from .certificates import (
        CertificateManager,
        DirectoryCertificateCache,
    )
    from .chain import (
        Node,
    )
    from .client import (
        REGIONS,
        WeChatPay,
    )
    from .endpoints import (
        EndpointFacts,
        endpoint_facts,
    )
    from .errors import (
        ApiError,
        BodyTooLargeError,
        ClientClosedError,
        ConfigError,
        ConnectError,
        DecryptionError,
        HashMismatchError,
        InvalidNotificationError,
        InvalidResponseError,
        LoopMismatchError,
        MalformedXmlError,
        MissingSignatureHeaderError,
        MissingSignError,
        ProbeSignatureError,
        RequestTimeoutError,
        SignatureMismatchError,
        TimestampSkewError,
        TransportError,
        UnknownSerialError,
        UnsafeXmlError,
        UnsupportedSignatureTypeError,
        UntrustedHostError,
        VerificationError,
        WeChatPayError,
    )
    from .files import (
        BillParser,
        Bills,
        BillStream,
        Download,
        ParsedBill,
        Upload,
        parse_bill,
    )
    from .middleware import (
        RetryMiddleware,
        SigningMiddleware,
        VerifyingMiddleware,
    )
    from .notifications import (
        Acknowledgement,
        Notification,
    )
    from .response import (
        Response,
    )
    from .retries import (
        RetryPolicy,
    )
    from .signing import (
        MessageSigner,
        Signer,
    )
    from .sync import (
        SyncWeChatPay,
    )
    from .verifying import (
        PublicKeyStore,
        Verifier,
    )

_HOMES = {
    "Acknowledgement": "notifications",
    "ApiError": "errors",
    "BillParser": "files",
    "BillStream": "files",
    "Bills": "files",
    "BodyTooLargeError": "errors",
    "CertificateManager": "certificates",
    "ClientClosedError": "errors",
    "ConfigError": "errors",
    "ConnectError": "errors",
    "DecryptionError": "errors",
    "DirectoryCertificateCache": "certificates",
    "Download": "files",
    "EndpointFacts": "endpoints",
    "HashMismatchError": "errors",
    "InvalidNotificationError": "errors",
    "InvalidResponseError": "errors",
    "LoopMismatchError": "errors",
    "MalformedXmlError": "errors",
    "MessageSigner": "signing",
    "MissingSignError": "errors",
    "MissingSignatureHeaderError": "errors",
    "Node": "chain",
    "Notification": "notifications",
    "ParsedBill": "files",
    "ProbeSignatureError": "errors",
    "PublicKeyStore": "verifying",
    "REGIONS": "client",
    "RequestTimeoutError": "errors",
    "Response": "response",
    "RetryMiddleware": "middleware",
    "RetryPolicy": "retries",
    "SignatureMismatchError": "errors",
    "Signer": "signing",
    "SigningMiddleware": "middleware",
    "SyncWeChatPay": "sync",
    "TimestampSkewError": "errors",
    "TransportError": "errors",
    "UnknownSerialError": "errors",
    "UnsafeXmlError": "errors",
    "UnsupportedSignatureTypeError": "errors",
    "UntrustedHostError": "errors",
    "Upload": "files",
    "VerificationError": "errors",
    "Verifier": "verifying",
    "VerifyingMiddleware": "middleware",
    "WeChatPay": "client",
    "WeChatPayError": "errors",
    "endpoint_facts": "endpoints",
    "parse_bill": "files",
}


__getattr__, __dir__ = lazy_names(globals(), _HOMES)


__all__ = [
    "REGIONS",
    "Acknowledgement",
    "ApiError",
    "BillParser",
    "BillStream",
    "Bills",
    "BodyTooLargeError",
    "CertificateManager",
    "ClientClosedError",
    "ConfigError",
    "ConnectError",
    "DecryptionError",
    "DirectoryCertificateCache",
    "Download",
    "EndpointFacts",
    "HashMismatchError",
    "InvalidNotificationError",
    "InvalidResponseError",
    "LoopMismatchError",
    "MalformedXmlError",
    "MessageSigner",
    "MissingSignError",
    "MissingSignatureHeaderError",
    "Node",
    "Notification",
    "ParsedBill",
    "ProbeSignatureError",
    "PublicKeyStore",
    "RequestTimeoutError",
    "Response",
    "RetryMiddleware",
    "RetryPolicy",
    "SignatureMismatchError",
    "Signer",
    "SigningMiddleware",
    "SyncWeChatPay",
    "TimestampSkewError",
    "TransportError",
    "UnknownSerialError",
    "UnsafeXmlError",
    "UnsupportedSignatureTypeError",
    "UntrustedHostError",
    "Upload",
    "VerificationError",
    "Verifier",
    "VerifyingMiddleware",
    "WeChatPay",
    "WeChatPayError",
    "__version__",
    "endpoint_facts",
    "parse_bill",
]
