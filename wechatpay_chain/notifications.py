"""Webhooks: verify and decrypt what WeChat Pay posts to your ``notify_url``, and answer it.

The one rule that makes webhooks work: verify the **raw** request body, byte for byte as it
arrived. A framework that hands over parsed-and-re-serialised JSON breaks every signature.
:func:`verify_and_decrypt` takes the headers and those raw bytes from any framework; the
client's :attr:`WeChatPay.notifications` adds adapters that read them from aiohttp and
Starlette / FastAPI requests themselves.

Order (PROTOCOL.md sections 2 to 4): the arguments and the body's size (at most
:data:`DEFAULT_MAX_BODY` unless configured), the four ``Wechatpay-*`` headers, the 300 s
window, the serial, the signature (a ``WECHATPAY/SIGNTEST/`` probe fails as a probe), and only
then JSON parsing and AES-256-GCM decryption of ``resource``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._wire import compact_json
from .crypto import aes_gcm_cipher, aes_gcm_decrypt
from .errors import (
    BodyTooLargeError,
    ConfigError,
    DecryptionError,
    InvalidNotificationError,
    UnknownSerialError,
)
from .verifying import Verifier

if TYPE_CHECKING:
    from aiohttp import web
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import Response as StarletteResponse

__all__ = [
    "DEFAULT_MAX_BODY",
    "Acknowledgement",
    "Notification",
    "Notifications",
    "failure",
    "parse_v2",
    "success",
    "v2_failure",
    "v2_success",
    "verify_and_decrypt",
]

SUPPORTED_ALGORITHM = "AEAD_AES_256_GCM"
#: The largest notification body accepted, in bytes. WeChat Pay's notifications are a few
#: KiB; a larger body is refused before its signature is checked or its JSON parsed.
DEFAULT_MAX_BODY = 1024 * 1024


@attrs.frozen
class Notification:
    """A verified, decrypted notification.

    ``resource`` is the decrypted JSON (a transaction, a refund, a contract...); ``raw`` is
    the envelope as received. Neither appears in ``repr``: they hold payer data.
    """

    id: str
    create_time: datetime.datetime
    event_type: str
    resource_type: str
    summary: str
    original_type: str
    resource: Any = attrs.field(repr=False)
    raw: Mapping[str, Any] = attrs.field(repr=False)
    request_id: str | None = None


def _text_field(
    document: Mapping[str, Any], name: str, where: str, *, required: bool = True
) -> str:
    value = document.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidNotificationError(f"{where}.{name} is missing or not a string")
    return value


def _parse_time(text: str) -> datetime.datetime:
    # RFC 3339 as WeChat Pay writes it (2015-05-20T13:29:35+08:00); "Z" for Python 3.10.
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidNotificationError(
            f"create_time {text[:40]!r} is not an RFC 3339 time"
        ) from None
    if moment.tzinfo is None:
        raise InvalidNotificationError(f"create_time {text[:40]!r} has no UTC offset")
    return moment


def verify_and_decrypt(
    headers: Mapping[str, str],
    body: bytes,
    *,
    verifier: Verifier,
    apiv3_key: str | bytes | AESGCM,
    max_body: int = DEFAULT_MAX_BODY,
) -> Notification:
    """Verify a notification's signature over the raw ``body``, then decrypt its resource.

    ``apiv3_key`` is the 32-byte APIv3 key as ``str`` or ``bytes`` (a ``str`` stands for its
    UTF-8 bytes), or an ``AESGCM`` made from it. Arguments of the wrong kind raise
    ``TypeError`` (or :class:`~wechatpay_chain.errors.ConfigError` for the key) before
    anything is checked; a body longer than ``max_body`` bytes raises
    :class:`~wechatpay_chain.errors.BodyTooLargeError` before its signature is checked.
    Then a :class:`~wechatpay_chain.errors.VerificationError` subclass when the message is
    not proven to come from WeChat Pay, :class:`~wechatpay_chain.errors.InvalidNotificationError`
    when it is signed but malformed, and :class:`~wechatpay_chain.errors.DecryptionError`
    when the resource does not decrypt (a wrong APIv3 key, usually). Nothing else.
    """
    cipher = _check_arguments(headers, body, verifier, apiv3_key, max_body)
    return _verify_and_decrypt(headers, body, verifier, cipher, max_body)


def _check_arguments(
    headers: object, body: object, verifier: object, apiv3_key: object, max_body: object
) -> AESGCM:
    # Wrong-shaped arguments fail here, by name, not as an AttributeError deep inside.
    if not isinstance(headers, Mapping):
        raise TypeError(
            f"headers must be the request's header mapping, not {type(headers).__name__}"
        )
    if not isinstance(body, bytes):
        raise TypeError(
            f"body must be the raw request bytes, not {type(body).__name__}: re-serialised JSON breaks the signature"
        )
    if not isinstance(verifier, Verifier):
        raise TypeError(
            f"verifier must be a wechatpay_chain.verifying.Verifier, not {type(verifier).__name__}"
        )
    _check_max_body(max_body)
    return aes_gcm_cipher(apiv3_key)  # type: ignore[arg-type]  # checked: ConfigError


def _check_max_body(max_body: object) -> int:
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise ConfigError(f"max_body: expected a number of bytes > 0; got {repr(max_body)[:40]}")
    return max_body


def _verify_and_decrypt(
    headers: Mapping[str, str], body: bytes, verifier: Verifier, cipher: AESGCM, max_body: int
) -> Notification:
    if len(body) > max_body:
        raise BodyTooLargeError(len(body), max_body, what="the notification body")
    verifier.verify(headers, body)
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidNotificationError("the notification body is not JSON") from None
    if not isinstance(envelope, dict):
        raise InvalidNotificationError("the notification body is not a JSON object")
    resource = envelope.get("resource")
    if not isinstance(resource, dict):
        raise InvalidNotificationError("resource is missing or not an object")
    algorithm = _text_field(resource, "algorithm", "resource")
    if algorithm != SUPPORTED_ALGORITHM:
        raise InvalidNotificationError(
            f"resource.algorithm {algorithm[:32]!r} is not {SUPPORTED_ALGORITHM}"
        )
    plaintext = aes_gcm_decrypt(
        cipher,
        nonce=_text_field(resource, "nonce", "resource"),
        ciphertext=_text_field(resource, "ciphertext", "resource"),
        associated_data=_text_field(resource, "associated_data", "resource", required=False),
    )
    try:
        decrypted = json.loads(plaintext.decode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecryptionError("the decrypted resource is not JSON") from None
    return Notification(
        id=_text_field(envelope, "id", "notification"),
        create_time=_parse_time(_text_field(envelope, "create_time", "notification")),
        event_type=_text_field(envelope, "event_type", "notification"),
        resource_type=_text_field(envelope, "resource_type", "notification"),
        summary=_text_field(envelope, "summary", "notification", required=False),
        original_type=_text_field(resource, "original_type", "resource", required=False),
        resource=decrypted,
        raw=envelope,
        request_id=_request_id(headers),
    )


def _request_id(headers: Mapping[str, str]) -> str | None:
    found = headers.get("Request-ID")  # case-insensitive mappings (aiohttp, Starlette)
    if found is None:
        found = next(
            (value for name, value in headers.items() if name.lower() == "request-id"), None
        )
    return found


@attrs.frozen
class Acknowledgement:
    """What to answer WeChat Pay: 204 with no body, or 4xx/5xx with ``{"code":"FAIL",...}``."""

    status: int
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        return "application/json" if self.body else None

    def to_aiohttp(self) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - the server side of aiohttp only when asked

        return web.Response(
            status=self.status, body=self.body or None, content_type=self.content_type
        )

    def to_starlette(self) -> StarletteResponse:
        from starlette.responses import Response  # noqa: PLC0415 - Starlette is optional

        return Response(status_code=self.status, content=self.body, media_type=self.content_type)


def success() -> Acknowledgement:
    """Received: 204 and no body (WeChat Pay decides on the status alone)."""
    return Acknowledgement(204)


def failure(message: str = "失败", *, status: int = 500) -> Acknowledgement:
    """Not accepted: WeChat Pay will send it again on its retry schedule."""
    if not 400 <= status <= 599:
        raise ValueError("a failure answer is a 4xx or 5xx status")
    return Acknowledgement(status, compact_json({"code": "FAIL", "message": message}))


class Notifications:
    """``wxpay.notifications``: the client's keys applied to incoming notifications.

    ``max_body`` is the largest body accepted, in bytes (default 1 MiB): a larger one is
    refused with :class:`~wechatpay_chain.errors.BodyTooLargeError` before its signature is
    checked, and the adapters never read more than that into memory.
    """

    def __init__(
        self,
        verifier: Verifier,
        apiv3_key: str | bytes | None,
        learn: Callable[[str], Awaitable[bool]] | None = None,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        apiv2_key: str | None = None,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError(
                "verifier must be a wechatpay_chain.verifying.Verifier, "
                f"not {type(verifier).__name__}"
            )
        self._verifier = verifier
        self._learn = learn
        self.max_body = _check_max_body(max_body)
        self._apiv2_key = apiv2_key
        # Made once: building the cipher costs as much as a notification's decryption.
        self._cipher = None if apiv3_key is None else aes_gcm_cipher(apiv3_key)

    def __repr__(self) -> str:
        return "<wechatpay_chain.Notifications>"

    async def parse(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decrypt; see :func:`verify_and_decrypt`."""
        if self._cipher is None:
            raise ConfigError("apiv3_key: the client needs the APIv3 key to decrypt notifications")
        _check_arguments(headers, body, self._verifier, self._cipher, self.max_body)
        try:
            return _verify_and_decrypt(headers, body, self._verifier, self._cipher, self.max_body)
        except UnknownSerialError:
            # A serial not held yet: a rotated platform certificate, perhaps.
            serial = next(
                (value for name, value in headers.items() if name.lower() == "wechatpay-serial"), ""
            )
            if self._learn is None or not await self._learn(serial.strip()):
                raise
            return _verify_and_decrypt(headers, body, self._verifier, self._cipher, self.max_body)

    async def from_aiohttp(self, request: web.Request) -> Notification:
        """Read the raw body of an ``aiohttp.web.Request`` (at most ``max_body`` bytes of it)
        and parse it."""
        self._refuse_announced(request.content_length)
        body = bytearray()
        while len(body) <= self.max_body:
            chunk = await request.content.read(self.max_body + 1 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) > self.max_body:
            raise BodyTooLargeError(
                len(body), self.max_body, at_least=True, what="the notification body"
            )
        if not body and request.content.at_eof():
            # Read before we were called: aiohttp keeps what request.read() returned (and
            # parse() still applies the limit to it).
            return await self.parse(request.headers, await request.read())
        return await self.parse(request.headers, bytes(body))

    async def from_starlette(self, request: StarletteRequest) -> Notification:
        """Read the raw body of a Starlette / FastAPI ``Request`` (at most ``max_body`` bytes
        of it) and parse it."""
        self._refuse_announced(_content_length(request.headers.get("content-length", "")))
        body = bytearray()
        # stream() hands over the cached body when something read it already.
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise BodyTooLargeError(
                    len(body), self.max_body, at_least=True, what="the notification body"
                )
        return await self.parse(request.headers, bytes(body))

    def _refuse_announced(self, length: int | None) -> None:
        # A Content-Length beyond the limit is refused before a byte of the body is read.
        if length is not None and length > self.max_body:
            raise BodyTooLargeError(length, self.max_body, what="the notification body")

    def parse_v2(self, body: bytes) -> dict[str, Any]:
        """Verify an APIv2 notification; see :func:`parse_v2`."""
        if not self._apiv2_key:
            raise ConfigError(
                "apiv2_key: the client needs the APIv2 key to verify v2 notifications"
            )
        return parse_v2(body, apiv2_key=self._apiv2_key)


def _content_length(text: str) -> int | None:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None  # absent or malformed: the body is counted as it is read
    # Bounded: int() of thousands of digits is slow, then refused by Python.
    return int(text) if len(text) <= 18 else 10**18


# -- APIv2 (XML) ------------------------------------------------------------------------------


@attrs.frozen
class _XmlAcknowledgement(Acknowledgement):
    """An APIv2 answer: HTTP 200 whatever the verdict, which is in the XML (PROTOCOL-V2 §6.3)."""

    @property
    def content_type(self) -> str | None:
        return "text/xml"


def _v2_acknowledgement(return_code: str, message: str) -> Acknowledgement:
    from .apiv2 import to_xml  # noqa: PLC0415 - v2 code is loaded by those who use v2

    to_xml({"return_msg": message})  # a ValueError for what XML cannot carry
    if "]]>" in message:
        raise ValueError("an acknowledgement message cannot contain ']]>'")
    # CDATA always: byte for byte the acknowledgement WeChat Pay documents.
    return _XmlAcknowledgement(
        200,
        f"<xml><return_code><![CDATA[{return_code}]]></return_code>"
        f"<return_msg><![CDATA[{message}]]></return_msg></xml>".encode(),
    )


def v2_success() -> Acknowledgement:
    """Received (APIv2): HTTP 200, ``text/xml``, ``return_code`` SUCCESS and ``OK``."""
    return _v2_acknowledgement("SUCCESS", "OK")


def v2_failure(message: str = "失败") -> Acknowledgement:
    """Not accepted (APIv2): HTTP 200 with ``return_code`` FAIL; WeChat Pay sends it again."""
    return _v2_acknowledgement("FAIL", message)


def parse_v2(body: bytes, *, apiv2_key: str) -> dict[str, Any]:
    """Verify an APIv2 (XML) notification and return its fields (PROTOCOL-V2 §6).

    A pay result or a papay contract or deduction result must carry a ``sign`` valid over
    every other field, with the notification's own ``sign_type`` (MD5 when absent). A refund
    result carries no ``sign`` but an encrypted ``req_info``: it is decrypted and returned in
    place of the ciphertext, as a dict. Refused like a forged v3 notification: a missing or
    wrong ``sign`` raises a :class:`~wechatpay_chain.errors.VerificationError`
    (:class:`~wechatpay_chain.errors.MissingSignError`,
    :class:`~wechatpay_chain.errors.SignatureMismatchError`; a DOCTYPE or entity,
    :class:`~wechatpay_chain.errors.UnsafeXmlError`), a ``req_info`` that does not decrypt
    :class:`~wechatpay_chain.errors.DecryptionError`, a body that is not XML
    :class:`~wechatpay_chain.errors.InvalidNotificationError`.

    ``req_info`` is AES-ECB without a MAC: check the refund against your records (or query
    it) before acting on an amount, as WeChat Pay asks for every notification.
    """
    from . import apiv2  # noqa: PLC0415 - v2 code is loaded by those who use v2
    from .errors import MalformedXmlError  # noqa: PLC0415

    if not isinstance(body, bytes):
        raise TypeError(f"body must be the raw request bytes, not {type(body).__name__}")
    try:
        fields: dict[str, Any] = apiv2.parse_xml(body)
    except MalformedXmlError as error:
        raise InvalidNotificationError(f"the v2 notification is not XML: {error}") from None
    if "sign" in fields or "req_info" not in fields:
        sign_type = fields.get("sign_type") or apiv2.MD5
        if sign_type not in (apiv2.MD5, apiv2.HMAC_SHA256):
            raise InvalidNotificationError(
                f"sign_type {sign_type[:32]!r} is not MD5 or HMAC-SHA256"
            )
        apiv2.verify(fields, apiv2_key, sign_type)
    if "req_info" in fields:
        # A refund result: no sign, its proof is that req_info decrypts under the key.
        fields["req_info"] = apiv2.decrypt_req_info(fields["req_info"], apiv2_key)
    return fields
