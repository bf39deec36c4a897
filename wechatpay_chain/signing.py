"""Signing requests: the message of PROTOCOL.md section 1.2 and the Authorization header.

The merchant key is either an RSA private key in this process, or any object with
``sign(message: bytes) -> bytes`` (RSASSA-PKCS1-v1_5 with SHA-256) that keeps the key
elsewhere: a hardware security module, a cloud KMS, another process.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .keys import KeySource, load_private_key

__all__ = [
    "AUTHORIZATION_SCHEME",
    "Draft",
    "MessageSigner",
    "Signer",
    "SigningKey",
    "new_nonce",
    "request_message",
    "rsa_sign",
]


@runtime_checkable
class MessageSigner(Protocol):
    """A merchant key held outside this process: ``sign`` returns the raw RSASSA-PKCS1-v1_5
    SHA-256 signature of ``message`` (256 bytes for RSA-2048), not Base64."""

    def sign(self, message: bytes) -> bytes: ...


#: The merchant's key as a :class:`Signer` holds it.
SigningKey = rsa.RSAPrivateKey | MessageSigner


def is_message_signer(source: object) -> bool:
    """Whether ``source`` is a :class:`MessageSigner`: an object with ``sign(message)`` that
    is not a loaded RSA key (nor a path or PEM text)."""
    return not isinstance(source, (rsa.RSAPrivateKey, str, bytes)) and callable(
        getattr(source, "sign", None)
    )


def load_signing_key(source: KeySource | MessageSigner) -> SigningKey:
    """An RSA private key loaded from ``source``, or ``source`` itself when it is a
    :class:`MessageSigner`."""
    if is_message_signer(source):
        return source  # type: ignore[return-value]
    return load_private_key(source)  # type: ignore[arg-type]


AUTHORIZATION_SCHEME = "WECHATPAY2-SHA256-RSA2048"
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def new_nonce() -> str:
    """32 random hexadecimal characters (128 bits), like the documentation's example: within
    the ``[0-9A-Za-z]`` alphabet the official SDKs draw from, at a thirtieth of the cost of
    drawing 32 characters one by one (measured: 0.7 us against 33 us per request)."""
    return secrets.token_hex(16)


def request_message(method: str, target: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """``METHOD\\nTARGET\\nTIMESTAMP\\nNONCE\\nBODY\\n``, with the body's bytes untouched."""
    head = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def rsa_sign(key: SigningKey, message: bytes) -> str:
    """RSASSA-PKCS1-v1_5 with SHA-256, standard Base64."""
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, _PKCS1, _SHA256)
    else:
        signature = key.sign(message)
        if not isinstance(signature, (bytes, bytearray)) or not signature:
            raise TypeError(
                f"the external signer's sign() returned {type(signature).__name__}: "
                "expected the raw signature as bytes"
            )
    return base64.b64encode(signature).decode("ascii")


def _authorization(mchid: str, serial: str, timestamp: int, nonce: str, signature: str) -> str:
    return (
        f'{AUTHORIZATION_SCHEME} mchid="{mchid}",nonce_str="{nonce}",'
        f'timestamp="{timestamp}",serial_no="{serial}",signature="{signature}"'
    )


@attrs.frozen
class Draft:
    """An ``Authorization`` header waiting for the signature of :attr:`message`."""

    mchid: str
    serial: str
    timestamp: int
    nonce: str
    message: bytes = attrs.field(repr=lambda message: f"<{len(message)} bytes>")

    def authorization(self, signature: str) -> str:
        return _authorization(self.mchid, self.serial, self.timestamp, self.nonce, signature)


@attrs.frozen(repr=False)
class Signer:
    """Signs requests on behalf of one merchant.

    ``serial`` is the merchant API certificate's serial number (not a WeChat Pay key).
    ``private_key`` is a key source (see :mod:`wechatpay_chain.keys`) or a
    :class:`MessageSigner`. ``clock`` returns Unix seconds and ``nonce`` returns a fresh
    nonce string; both are injectable so that a test can reproduce a documented signature
    byte for byte.
    """

    mchid: str
    serial: str
    private_key: SigningKey = attrs.field(converter=load_signing_key, repr=False)
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True)
    nonce: Callable[[], str] = attrs.field(default=new_nonce, kw_only=True)

    def authorization(self, method: str, target: str, body: bytes = b"") -> str:
        """The ``Authorization`` header value for ``method`` on ``target`` (path and query)."""
        timestamp = int(self.clock())
        nonce = self.nonce()
        message = request_message(method, target, timestamp, nonce, body)
        signature = rsa_sign(self.private_key, message)
        return _authorization(self.mchid, self.serial, timestamp, nonce, signature)

    def draft(self, method: str, target: str, body: bytes = b"") -> Draft:
        """Everything of an ``Authorization`` header but the signature: its timestamp and
        nonce, and the message to sign (which a worker thread may sign)."""
        timestamp = int(self.clock())
        nonce = self.nonce()
        return Draft(
            self.mchid,
            self.serial,
            timestamp,
            nonce,
            request_message(method, target, timestamp, nonce, body),
        )

    def __repr__(self) -> str:
        # Never raises, not even for a signer whose construction failed half-way.
        mchid = getattr(self, "mchid", "?")
        serial = getattr(self, "serial", "?")
        return f"Signer(mchid={mchid!r}, serial={serial!r})"

    @property
    def external(self) -> bool:
        """Whether the key is held outside this process (a :class:`MessageSigner`)."""
        return not isinstance(self.private_key, rsa.RSAPrivateKey)

    def sign(self, message: bytes) -> str:
        """Sign an arbitrary message with the merchant key (client-side pay parameters)."""
        return rsa_sign(self.private_key, message)
