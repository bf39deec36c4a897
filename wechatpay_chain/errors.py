"""The exception hierarchy: everything this library raises on purpose is a `WeChatPayError`.

Messages say what a person needs to act on and never carry a key, the APIv3 key or an
Authorization header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ApiError",
    "BodyTooLargeError",
    "ClientClosedError",
    "ConfigError",
    "ConnectError",
    "DecryptionError",
    "HashMismatchError",
    "InvalidNotificationError",
    "InvalidResponseError",
    "LoopMismatchError",
    "MalformedXmlError",
    "MissingSignError",
    "MissingSignatureHeaderError",
    "ProbeSignatureError",
    "RequestTimeoutError",
    "SignatureMismatchError",
    "TimestampSkewError",
    "TransportError",
    "UnknownSerialError",
    "UnsafeXmlError",
    "UnsupportedSignatureTypeError",
    "UntrustedHostError",
    "VerificationError",
    "WeChatPayError",
]


class WeChatPayError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(WeChatPayError, ValueError):
    """The client was configured with something unusable (a bad key, a bad APIv3 key...)."""


class ApiError(WeChatPayError):
    """WeChat Pay answered with a status outside 2xx.

    ``code``, ``message`` and ``detail`` come from the JSON error body when there is one;
    ``body`` and ``headers`` keep what was received, for a body that is not JSON (an HTML
    page from a proxy, say).
    """

    status: int
    code: str | None
    message: str | None
    detail: Any
    request_id: str | None
    body: bytes
    headers: Mapping[str, str]

    def __init__(
        self,
        status: int,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = CIMultiDictProxy(CIMultiDict(headers or {}))
        self.request_id = request_id
        self.code, self.message, self.detail = _parse_error_body(body)
        super().__init__(self._summary())

    @classmethod
    def from_answer(cls, status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
        """The error for an answer outside 2xx: its status, headers and (the kept prefix of)
        its body; ``request_id`` from its ``Request-ID``."""
        return cls(status, body=body, headers=headers, request_id=headers.get("Request-ID"))

    def _summary(self) -> str:
        summary = f"HTTP {self.status}"
        if self.code:
            summary += f" {self.code}"
        if self.message:
            summary += f": {self.message}"
        elif self.code is None and self.body:
            summary += f": a non-JSON body of {len(self.body)} bytes"
        if self.request_id:
            summary += f" (Request-ID {self.request_id})"
        return summary


def _parse_error_body(body: bytes) -> tuple[str | None, str | None, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    code = document.get("code")
    message = document.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        document.get("detail"),
    )


class VerificationError(WeChatPayError):
    """A response or notification could not be proven to come from WeChat Pay.

    Nothing of what failed verification is handed back; ``request_id`` (when the message
    carried one) helps WeChat Pay's support find the exchange.
    """

    request_id: str | None

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        super().__init__(message if request_id is None else f"{message} (Request-ID {request_id})")


class MissingSignatureHeaderError(VerificationError):
    """One of the four ``Wechatpay-*`` headers is missing or empty."""


class TimestampSkewError(VerificationError):
    """``Wechatpay-Timestamp`` is more than 300 s from now (a replay, or a wrong clock)."""


class UnknownSerialError(VerificationError):
    """``Wechatpay-Serial`` names no public key or certificate this client holds."""


class UnsupportedSignatureTypeError(VerificationError):
    """``Wechatpay-Signature-Type`` names a scheme this client does not implement."""


class SignatureMismatchError(VerificationError):
    """The RSA signature does not verify over the received bytes."""


class ProbeSignatureError(SignatureMismatchError):
    """WeChat Pay's deliberate probe (``WECHATPAY/SIGNTEST/...``): rejected like any bad signature."""


class HashMismatchError(VerificationError):
    """A downloaded bill is not the file WeChat Pay described: its SHA-1 differs from the
    announced ``hash_value``, or its gzip stream is broken. Nothing of it is kept."""


class UntrustedHostError(WeChatPayError, ValueError):
    """A download URL points outside the configured WeChat Pay hosts, where the request's
    ``Authorization`` header must never go."""


class DecryptionError(WeChatPayError):
    """A ciphertext could not be decrypted (wrong key, tampered data)."""


class InvalidNotificationError(WeChatPayError):
    """A notification was signed correctly but is not shaped as WeChat Pay documents it."""


class TransportError(WeChatPayError):
    """The exchange with WeChat Pay failed below HTTP: nothing verified was received."""


class ConnectError(TransportError):
    """No connection could be made (DNS, refused, TLS)."""


class RequestTimeoutError(TransportError, TimeoutError):
    """The request did not complete within its timeout."""


class BodyTooLargeError(WeChatPayError, ValueError):
    """A body is larger than the limit set for it (an answer, a webhook, a bill): refused
    before it is verified, parsed, held in memory or written out.

    ``size`` is the body's length in bytes as announced, or how much of it was read when the
    limit was crossed (then ``at_least`` is true); ``limit`` is the limit in bytes; ``what``
    names the body; ``request_id`` is the answer's ``Request-ID``, if any.
    """

    size: int
    limit: int
    at_least: bool
    what: str
    request_id: str | None

    def __init__(
        self,
        size: int,
        limit: int,
        *,
        at_least: bool = False,
        what: str = "a body",
        request_id: str | None = None,
    ) -> None:
        self.size = size
        self.limit = limit
        self.at_least = at_least
        self.what = what
        self.request_id = request_id
        of = f"at least {size}" if at_least else f"{size}"
        message = f"{what} of {of} bytes exceeds the limit of {limit} bytes"
        super().__init__(message if request_id is None else f"{message} (Request-ID {request_id})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not in ``args``: rebuild from the attributes (pickling).
        return (
            _body_too_large,
            (self.size, self.limit, self.at_least, self.what, self.request_id),
        )


def _body_too_large(
    size: int, limit: int, at_least: bool, what: str, request_id: str | None
) -> BodyTooLargeError:
    return BodyTooLargeError(size, limit, at_least=at_least, what=what, request_id=request_id)


class InvalidResponseError(WeChatPayError, ValueError):
    """A verified answer could not be parsed as what it claims to be (invalid JSON or UTF-8,
    nested too deeply). ``status`` and ``request_id`` say which answer."""

    status: int
    request_id: str | None

    def __init__(self, message: str, *, status: int, request_id: str | None = None) -> None:
        self.status = status
        self.request_id = request_id
        suffix = "" if request_id is None else f" (Request-ID {request_id})"
        super().__init__(f"HTTP {status}: {message}{suffix}")


class ClientClosedError(TransportError, RuntimeError):
    """The client was closed, before this call or while it was in flight. Nothing is sent
    (or sent again) through a closed client."""


class LoopMismatchError(WeChatPayError, RuntimeError):
    """A ``WeChatPay`` client was used from an event loop other than the one it first ran
    in. Nothing was sent."""


class MissingSignError(MissingSignatureHeaderError):
    """An APIv2 answer or notification that must be signed carries no ``sign`` field (the
    v2 counterpart of a missing ``Wechatpay-Signature`` header)."""


class UnsafeXmlError(VerificationError, ValueError):
    """An XML document declares a DOCTYPE, an entity or a processing instruction, repeats a
    field or nests one where WeChat Pay sends flat fields: refused before any field is read."""


class MalformedXmlError(WeChatPayError, ValueError):
    """A body that should be APIv2 XML is not well-formed XML with the expected root (an
    HTML error page from a proxy, a truncated answer), or is larger than allowed."""
