"""WeChat Pay's side of signing: the ``Wechatpay-*`` headers of answers and notifications."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from .._wire import response_message
from ..signing import AUTHORIZATION_SCHEME, rsa_sign
from .faults import Fault
from .keypairs import generate_private_key

__all__ = ["UNKNOWN_SERIAL", "WeChatPaySigner"]

#: A public-key ID no client holds (the ``wrong_serial`` fault).
UNKNOWN_SERIAL = "PUB_KEY_ID_0000000000000000000000000000"


@attrs.frozen
class WeChatPaySigner:
    """Signs ``timestamp\\nnonce\\nbody\\n`` with WeChat Pay's key, as WeChat Pay does."""

    key: rsa.RSAPrivateKey = attrs.field(repr=False)
    public_key_id: str
    clock: Callable[[], float]

    def headers(
        self, body: bytes, fault: Fault | None = None, *, failed: bool = False
    ) -> dict[str, str]:
        """``Request-ID`` and the five ``Wechatpay-*`` headers for ``body``, spoilt as ``fault`` says.

        ``tamper_body`` is the caller's to apply (it changes the body, not the headers).
        """
        kind = fault.kind if fault is not None else None
        timestamp = int(self.clock()) - (
            int(fault.seconds) if fault is not None and kind == "stale_timestamp" else 0
        )
        nonce = secrets.token_hex(16)
        key = generate_private_key() if kind == "wrong_key" else self.key
        headers = {
            # The part after the last "-" is WeChat Pay's internal error number, 0 on success.
            "Request-ID": f"{secrets.token_hex(16).upper()}-{268435456 if failed else 0}",
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Timestamp": str(timestamp),
            "Wechatpay-Serial": UNKNOWN_SERIAL if kind == "wrong_serial" else self.public_key_id,
            "Wechatpay-Signature": rsa_sign(key, response_message(str(timestamp), nonce, body)),
            "Wechatpay-Signature-Type": AUTHORIZATION_SCHEME,
        }
        if kind == "probe":
            headers["Wechatpay-Signature"] = (
                "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(32)).decode()
            )
        elif kind == "unsigned":
            for name in [name for name in headers if name.startswith("Wechatpay-")]:
                del headers[name]
        return headers
