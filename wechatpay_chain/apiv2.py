"""APIv2 (XML): the ``sign``, the XML body, answers, ``req_info`` and the v2 pay-sign.

Pure functions: bytes and strings in, bytes and strings out, no I/O and no aiohttp. The wire
rules are PROTOCOL-V2.md's; the numbers in the comments (``§2``) are its sections.

What is decided here, and why:

- A field value is a ``str`` or an ``int`` (amounts are whole fen). ``bool`` and ``float`` are
  refused with :class:`TypeError`: ``True`` would be signed as ``"True"`` and ``0.1`` has more
  than one spelling, so client and server could sign different strings. ``None`` and ``""``
  are left out of both the sign and the body (§2, §3.1).
- Field names are ASCII XML names (``[A-Za-z_][A-Za-z0-9_.-]*``); every WeChat Pay field is.
- Answers and notifications are flat: ``parse_xml`` refuses a nested element or a repeated
  field, since either would make "the fields that were signed" ambiguous (§3.2). The two
  unsigned endpoints that nest (red-packet queries, sub-merchant management) are read with
  ``parse_xml(body, nested=True)``: a nested element becomes a dict, a repeated one a list.
- An answer is verified with the algorithm of its request, never one guessed from the length
  of the ``sign`` (§4: an MD5-signed answer to an HMAC-SHA256 request is refused).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, overload
from urllib.parse import quote
from xml.parsers import expat

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import (
    ApiError,
    ConfigError,
    DecryptionError,
    MalformedXmlError,
    MissingSignError,
    SignatureMismatchError,
    UnsafeXmlError,
)

__all__ = [
    "CONTENT_TYPE",
    "HMAC_SHA256",
    "MAX_XML_SIZE",
    "MD5",
    "aes_ecb_decrypt",
    "aes_ecb_encrypt",
    "api_error",
    "app_params",
    "check_answer",
    "decrypt_req_info",
    "encrypt_req_info",
    "is_xml",
    "jsapi_params",
    "parse_xml",
    "prepare_request",
    "req_info_key",
    "sign",
    "signed_url",
    "string_to_sign",
    "to_xml",
    "verify",
]

MD5 = "MD5"
HMAC_SHA256 = "HMAC-SHA256"
SIGN_TYPES = (MD5, HMAC_SHA256)
#: The hex length of each algorithm's ``sign``: a length that does not match is refused.
_SIGN_LENGTH = {MD5: 32, HMAC_SHA256: 64}

CONTENT_TYPE = "text/xml; charset=utf-8"
#: Enough for any answer or notification (the largest, a refund query, is a few KiB).
MAX_XML_SIZE = 1024 * 1024

#: The fields that name the merchant, checked in this order (§5).
MERCHANT_FIELDS = ("mch_id", "mchid", "combine_mch_id")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# Characters XML 1.0 cannot carry: C0 controls other than TAB, LF, CR; lone surrogates;
# U+FFFE and U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# §1: APIv2 takes one- to three-byte UTF-8 characters only.
_FOUR_BYTE_UTF8 = re.compile("[\U00010000-\U0010ffff]")
_NEEDS_CDATA = re.compile("[<>&'\"]")


# -- the sign (§2) ----------------------------------------------------------------------------


def _text(name: object, value: object) -> str | None:
    """A field value as it is signed and sent, ``None`` when it is left out."""
    if not isinstance(name, str):
        raise TypeError(f"an APIv2 field name must be a str, not {type(name).__name__}")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(
            f"APIv2 field {name!r}: a value must be a str or an int, not {type(value).__name__}"
        )
    text = value if isinstance(value, str) else str(value)
    return text or None


def string_to_sign(fields: Mapping[str, object]) -> str:
    """``stringA``: the non-empty fields but ``sign``, sorted by name in byte order, joined
    as ``name=value`` with ``&``, values raw (no URL or XML escaping)."""
    pairs = []
    for name, value in fields.items():
        text = _text(name, value)
        if text is not None and name != "sign":
            pairs.append((name.encode(), name, text))
    pairs.sort()
    return "&".join(f"{name}={text}" for _, name, text in pairs)


def _check_sign_type(sign_type: str) -> str:
    if sign_type not in SIGN_TYPES:
        raise ValueError(f"sign_type must be 'MD5' or 'HMAC-SHA256', not {sign_type[:32]!r}")
    return sign_type


def sign(fields: Mapping[str, object], key: str, sign_type: str = MD5) -> str:
    """The upper-case hex ``sign`` of ``fields`` with the APIv2 ``key``.

    MD5 over ``stringA&key=KEY``, or HMAC-SHA256 keyed with ``KEY`` over that same string.
    """
    message = f"{string_to_sign(fields)}&key={key}".encode()
    if _check_sign_type(sign_type) == MD5:
        # MD5 is the protocol's, not a choice made here.
        return hashlib.md5(message).hexdigest().upper()  # noqa: S324
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest().upper()


def verify(fields: Mapping[str, object], key: str, sign_type: str = MD5) -> None:
    """Check ``fields["sign"]`` (over every other received field) in constant time.

    Raises :class:`~wechatpay_chain.errors.MissingSignError` when there is no ``sign`` and
    :class:`~wechatpay_chain.errors.SignatureMismatchError` when it is not ``sign_type``'s
    (a wrong length: another algorithm) or does not match.
    """
    received = fields.get("sign")
    if not isinstance(received, str) or not received:
        raise MissingSignError("the APIv2 message carries no sign")
    if len(received) != _SIGN_LENGTH[_check_sign_type(sign_type)]:
        raise SignatureMismatchError(
            f"the APIv2 sign is {len(received)} characters long, not a {sign_type} sign: "
            f"the message must be signed with {sign_type}, the algorithm of the request"
        )
    expected = sign(fields, key, sign_type)
    if not hmac.compare_digest(received.upper().encode(), expected.encode()):
        raise SignatureMismatchError(f"the APIv2 sign ({sign_type}) does not match the fields")


# -- XML out (§3.1) ---------------------------------------------------------------------------


def _leaf(name: str, text: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"APIv2 field name {name[:40]!r} is not an XML element name")
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise ValueError(
            f"APIv2 field {name!r} holds U+{ord(bad.group()):04X}, which XML cannot carry"
        )
    if _NEEDS_CDATA.search(text):
        # "]]>" would end the section: close it after "]]" and open a new one for ">".
        text = "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return f"<{name}>{text}</{name}>"


def to_xml(fields: Mapping[str, object]) -> bytes:
    """``<xml><name>value</name>...</xml>`` in the mapping's order, UTF-8, no declaration.

    A value with ``< > & ' "`` goes in CDATA; ``None`` and ``""`` are left out. A name that
    is not an XML name or a character XML cannot carry raises :class:`ValueError`; a value
    that is neither ``str`` nor ``int`` raises :class:`TypeError`.
    """
    parts = ["<xml>"]
    for name, value in fields.items():
        text = _text(name, value)
        if text is not None:
            parts.append(_leaf(name, text))
    parts.append("</xml>")
    return "".join(parts).encode()


# -- XML in (§3.2) ----------------------------------------------------------------------------


def _refuse(what: str) -> Callable[..., None]:
    def handler(*_: object) -> None:
        raise UnsafeXmlError(f"the XML document contains {what}: refused")

    return handler


def _refuse_external(*_: object) -> int:
    raise UnsafeXmlError("the XML document refers to an external entity: refused")


class _Reader:
    """Builds the fields from expat's events; refuses what WeChat Pay never sends."""

    def __init__(self, root: str, nested: bool) -> None:
        self.root = root
        self.nested = nested
        self.seen_root = False
        # A stack of (name, children or None, text parts); the bottom is the root.
        self.stack: list[tuple[str, dict[str, Any], list[str]]] = []
        self.result: dict[str, Any] = {}

    def start(self, name: str, _attributes: object) -> None:
        if not self.stack:
            if self.seen_root:
                raise MalformedXmlError("the XML document has more than one root")
            if name != self.root:
                raise MalformedXmlError(f"the XML root is <{name[:40]}>, not <{self.root}>")
            self.seen_root = True
        elif len(self.stack) >= 2 and not self.nested:
            raise UnsafeXmlError(
                f"<{self.stack[-1][0][:40]}> holds an element: APIv2 fields are flat"
            )
        elif len(self.stack) > 32:
            raise UnsafeXmlError("the XML document nests more than 32 levels deep")
        self.stack.append((name, {}, []))

    def end(self, name: str) -> None:
        _, children, texts = self.stack.pop()
        text = "".join(texts)
        if not self.stack:
            if text.strip():
                raise UnsafeXmlError("text between the fields of the XML document")
            self.result = children
            return
        value: Any
        if children:
            if text.strip():
                raise UnsafeXmlError(f"<{name[:40]}> mixes text and elements")
            value = children
        else:
            value = text
        siblings = self.stack[-1][1]
        if name in siblings:
            if len(self.stack) == 1 and not self.nested:
                raise UnsafeXmlError(f"the field <{name[:40]}> appears twice")
            previous = siblings[name]
            siblings[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            siblings[name] = value

    def text(self, data: str) -> None:
        self.stack[-1][2].append(data)


@overload
def parse_xml(
    body: bytes, *, max_size: int = ..., root: str = ..., nested: Literal[False] = ...
) -> dict[str, str]: ...
@overload
def parse_xml(
    body: bytes, *, max_size: int = ..., root: str = ..., nested: Literal[True]
) -> dict[str, Any]: ...
def parse_xml(
    body: bytes, *, max_size: int = MAX_XML_SIZE, root: str = "xml", nested: bool = False
) -> dict[str, Any]:
    """The fields of an APIv2 document: ``{name: text}`` for the children of ``<root>``.

    Safe on hostile input: a DOCTYPE, an entity declaration, a processing instruction, a
    repeated field or (unless ``nested``) a nested element raises
    :class:`~wechatpay_chain.errors.UnsafeXmlError` before any field is returned; a body over
    ``max_size`` bytes or not well-formed raises
    :class:`~wechatpay_chain.errors.MalformedXmlError`. Leaves are the text exactly as
    written (CDATA and character data joined, whitespace inside kept); an empty element is
    ``""``. The body is read as UTF-8 whatever it declares, as APIv2 is UTF-8 only.
    """
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    if len(body) > max_size:
        raise MalformedXmlError(f"the XML document is {len(body)} bytes, over {max_size}")
    reader = _Reader(root, nested)
    parser = expat.ParserCreate("UTF-8")
    parser.buffer_text = True
    # No DTD of any kind: that stops internal entities (billion laughs) and external ones
    # (XXE) alike, as WeChat Pay's own advisory asks.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse("a DOCTYPE")
    parser.EntityDeclHandler = _refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = _refuse("an entity declaration")
    parser.NotationDeclHandler = _refuse("a notation declaration")
    parser.ExternalEntityRefHandler = _refuse_external
    parser.ProcessingInstructionHandler = _refuse("a processing instruction")
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as error:
        raise MalformedXmlError(
            f"not a well-formed XML document ({expat.ErrorString(error.code)}, line {error.lineno})"
        ) from None
    if not reader.seen_root:
        raise MalformedXmlError("the XML document is empty")
    return reader.result


def is_xml(prefix: bytes) -> bool:
    """Whether a body starting with ``prefix`` is XML rather than a bill's text or gzip: a
    download answers a file on success and ``<xml>`` on failure (§4.2)."""
    stripped = prefix.lstrip(b" \t\r\n\xef\xbb\xbf")
    return stripped.startswith((b"<xml>", b"<xml ", b"<?xml"))


# -- req_info (§6.2) --------------------------------------------------------------------------


def req_info_key(apiv2_key: str) -> bytes:
    """The AES-256 key of ``req_info``: the 32 ASCII characters of the lower-case hex MD5 of
    the APIv2 key, used as they are (not hex-decoded)."""
    return hashlib.md5(apiv2_key.encode()).hexdigest().encode()  # noqa: S324 - the protocol's


def aes_ecb_decrypt(ciphertext: str, key: bytes) -> bytes:
    """Base64, then AES-256-ECB, then strict PKCS#7 (a full 0x10 block for a 16-byte-multiple
    plaintext). Anything off is a :class:`~wechatpay_chain.errors.DecryptionError`."""
    try:
        data = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("req_info is not Base64") from None
    if not data or len(data) % 16:
        raise DecryptionError("req_info is not a whole number of AES blocks")
    # ECB is the protocol's choice (no IV, no MAC); the result is checked strictly below.
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError("req_info does not decrypt: a wrong APIv2 key?") from None


def aes_ecb_encrypt(plaintext: bytes, key: bytes) -> str:
    """The inverse of :func:`aes_ecb_decrypt` (standard PKCS#7), Base64."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt_req_info(req_info: str, apiv2_key: str) -> dict[str, str]:
    """Decrypt a refund notification's ``req_info``: Base64, AES-256-ECB keyed with
    :func:`req_info_key`, strict PKCS#7, then the flat XML under ``<root>``.

    ECB carries no MAC: a wrong key or forged data shows as bad padding or bad XML, both
    :class:`~wechatpay_chain.errors.DecryptionError`.
    """
    if not isinstance(req_info, str):
        raise TypeError(f"req_info must be a str, not {type(req_info).__name__}")
    plaintext = aes_ecb_decrypt(req_info, req_info_key(apiv2_key))
    try:
        return parse_xml(plaintext, root="root")
    except (MalformedXmlError, UnsafeXmlError):
        raise DecryptionError("req_info decrypts to no valid XML: a wrong APIv2 key?") from None


def encrypt_req_info(fields: Mapping[str, object], apiv2_key: str) -> str:
    """The inverse of :func:`decrypt_req_info`: what WeChat Pay sends (the fake server's)."""
    inner = to_xml(fields)[len(b"<xml>") : -len(b"</xml>")]
    return aes_ecb_encrypt(b"<root>" + inner + b"</root>", req_info_key(apiv2_key))


# -- a request (§2, §3.1, §5) -----------------------------------------------------------------


def _checked_value(name: str, text: str) -> None:
    if text != text.strip():
        # JSDK trims values before signing, PHP does not: refused so every side signs alike.
        raise ValueError(f"APIv2 field {name!r} starts or ends with whitespace")
    if _FOUR_BYTE_UTF8.search(text):
        raise ValueError(
            f"APIv2 field {name!r} holds a character outside the Basic Multilingual Plane "
            "(an emoji?), which APIv2 does not accept"
        )


def _choose_sign_type(
    fields: Mapping[str, object], option: str | None, sign_types: Collection[str] | None
) -> tuple[str, bool]:
    """The algorithm, and whether a ``sign_type`` field must be added for it."""
    field = fields.get("sign_type")
    if field is not None and field != "":
        if not isinstance(field, str) or field not in SIGN_TYPES:
            raise ValueError(f"sign_type must be 'MD5' or 'HMAC-SHA256', not {str(field)[:32]!r}")
        if option is not None and option != field:
            raise ConfigError(
                f"the sign_type field says {field} but the client is configured for {option}"
            )
        return field, False
    if option is not None:
        _check_sign_type(option)
    if sign_types is not None and not sign_types:
        # The endpoint has no sign_type field: MD5, whatever the client prefers (§2.1).
        return MD5, False
    if option is None:
        if sign_types is not None and MD5 not in sign_types:
            # An HMAC-SHA256-only endpoint (profit sharing, fund flow bills...).
            return HMAC_SHA256, True
        return MD5, False
    return option, option != MD5


def prepare_request(
    fields: Mapping[str, object],
    *,
    mchid: str,
    apiv2_key: str,
    sign_type: str | None,
    nonce: Callable[[], str],
    sign_types: Collection[str] | None = None,
    nonce_field: bool = True,
) -> tuple[bytes, str]:
    """The signed XML body of an APIv2 call, and the algorithm used (to verify the answer).

    ``fields`` is copied, never changed. ``nonce_str`` is added when absent (unless the
    endpoint defines none: ``nonce_field=False``); ``mch_id`` / ``mchid`` /
    ``combine_mch_id``, when present, must be ``mchid`` (a mismatch is a
    :class:`~wechatpay_chain.errors.ConfigError` naming the field), and none is filled in.
    The algorithm is the ``sign_type`` field's, else the client option ``sign_type``, else
    MD5; a field and an option that disagree are an error. ``sign_types`` is what the
    endpoint accepts (from the endpoint table: empty when it has no ``sign_type`` field, so
    MD5; ``None`` when unknown): a client option for HMAC-SHA256 adds the field only where it
    exists, and an HMAC-SHA256-only endpoint gets HMAC-SHA256 by default.
    """
    if not apiv2_key:
        raise ConfigError("apiv2_key: an APIv2 (v2/) call needs the client's APIv2 key")
    if "sign" in fields:
        raise ValueError("do not pass sign: it is computed over the fields sent")
    body: dict[str, object] = {}
    for name, value in fields.items():
        text = _text(name, value)
        if text is not None:
            _checked_value(name, text)
            body[name] = text
    for name in MERCHANT_FIELDS:
        if name in body and body[name] != mchid:
            raise ConfigError(
                f"{name} {str(body[name])[:32]!r} is not this client's merchant {mchid!r}"
            )
    algorithm, add_field = _choose_sign_type(body, sign_type, sign_types)
    if add_field:
        body["sign_type"] = algorithm
    if nonce_field and "nonce_str" not in body:
        generated = nonce()
        if not 0 < len(generated) <= 32:
            raise ValueError("nonce_str must be 1 to 32 characters long")
        body["nonce_str"] = generated
    body["sign"] = sign(body, apiv2_key, algorithm)
    return to_xml(body), algorithm


# -- an answer (§4) ---------------------------------------------------------------------------


def api_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    fields: Mapping[str, Any] | None,
) -> ApiError:
    """An :class:`~wechatpay_chain.errors.ApiError` for an APIv2 answer: ``code`` is
    ``err_code`` (``error_code`` for bills) or ``return_code``, ``message`` is
    ``err_code_des`` or ``return_msg``, ``detail`` every field; without ``fields`` (a body
    that is not XML) only the raw body is kept."""
    request_id = CIMultiDictProxy(CIMultiDict(headers)).get("Request-ID")
    error = ApiError(status, body=body, headers=headers, request_id=request_id)
    if fields is not None:
        code = fields.get("err_code") or fields.get("error_code") or fields.get("return_code")
        message = fields.get("err_code_des") or fields.get("return_msg")
        error.code = code if isinstance(code, str) else None
        error.message = message if isinstance(message, str) else None
        error.detail = dict(fields)
        # The summary is computed in ApiError's constructor from the JSON it looked for.
        error.args = (error._summary(),)
    return error


def check_answer(
    body: bytes,
    *,
    apiv2_key: str,
    sign_type: str,
    signed: bool,
    status: int,
    headers: Mapping[str, str],
    max_size: int = MAX_XML_SIZE,
) -> dict[str, Any]:
    """Verify and read an APIv2 answer, in PROTOCOL-V2 §4's order.

    1. Not XML (or a status outside 2xx): :class:`~wechatpay_chain.errors.ApiError` with the
       raw body. A DOCTYPE or entity: :class:`~wechatpay_chain.errors.UnsafeXmlError`.
    2. ``return_code`` other than ``SUCCESS``: ``ApiError`` (such answers carry no ``sign``).
    3. On a ``signed`` endpoint, the ``sign`` with the request's ``sign_type``:
       :class:`~wechatpay_chain.errors.MissingSignError` or
       :class:`~wechatpay_chain.errors.SignatureMismatchError`.
    4. ``result_code`` other than ``SUCCESS``: ``ApiError`` (only after the sign held).

    Returns the fields, ``str`` to ``str``; an unsigned endpoint's nested answer (red-packet
    queries) keeps its nesting as dicts and lists.
    """
    try:
        fields: dict[str, Any] = (
            parse_xml(body, max_size=max_size)
            if signed
            else parse_xml(body, max_size=max_size, nested=True)
        )
    except MalformedXmlError:
        raise api_error(status, body, headers, None) from None
    if not 200 <= status <= 299:
        raise api_error(status, body, headers, fields)
    return_code = fields.get("return_code")
    if return_code is not None and return_code != "SUCCESS":
        raise api_error(status, body, headers, fields)
    if signed:
        verify(fields, apiv2_key, sign_type)
    result_code = fields.get("result_code")
    if result_code is not None and result_code != "SUCCESS":
        raise api_error(status, body, headers, fields)
    return fields


# -- pay-sign and signed pages (§7, §8) -------------------------------------------------------


def jsapi_params(
    appid: str,
    prepay_id: str,
    apiv2_key: str,
    sign_type: str = MD5,
    *,
    clock: Callable[[], float],
    nonce: Callable[[], str],
) -> dict[str, str]:
    """``getBrandWCPayRequest`` / ``wx.requestPayment`` parameters for a v2 prepay_id:
    ``appId``, ``timeStamp``, ``nonceStr``, ``package``, ``signType`` and ``paySign`` (over
    the other five). ``sign_type`` must be the one the unifiedorder call used."""
    params = {
        "appId": appid,
        "timeStamp": str(int(clock())),
        "nonceStr": nonce(),
        "package": f"prepay_id={prepay_id}",
        "signType": _check_sign_type(sign_type),
    }
    params["paySign"] = sign(params, apiv2_key, sign_type)
    return params


def app_params(
    appid: str,
    prepay_id: str,
    mchid: str,
    apiv2_key: str,
    sign_type: str = MD5,
    *,
    clock: Callable[[], float],
    nonce: Callable[[], str],
) -> dict[str, str]:
    """The OpenSDK ``PayReq`` of an app for a v2 prepay_id: ``appid``, ``partnerid``,
    ``prepayid``, ``package`` (``Sign=WXPay``), ``noncestr``, ``timestamp`` and ``sign``.
    No signType goes to the app; ``sign_type`` is the unifiedorder call's."""
    params = {
        "appid": appid,
        "partnerid": mchid,
        "prepayid": prepay_id,
        "package": "Sign=WXPay",
        "noncestr": nonce(),
        "timestamp": str(int(clock())),
    }
    params["sign"] = sign(params, apiv2_key, _check_sign_type(sign_type))
    return params


def signed_url(base_url: str, path: str, fields: Mapping[str, object], apiv2_key: str) -> str:
    """The signed URL of a page the user's browser opens (papay ``entrustweb``,
    ``h5entrustweb``...): signed over the raw values (the ``sign_type`` field's algorithm,
    MD5 when absent), then each value percent-encoded once (UTF-8, RFC 3986), ``sign`` last.

    ``path`` may be written as the chain writes it (``v2/papay/entrustweb``): the ``v2/`` is
    not part of the URL. No field is added: pass ``timestamp`` and the others the page needs.
    """
    if "sign" in fields:
        raise ValueError("do not pass sign: it is computed over the fields sent")
    query: dict[str, str] = {}
    for name, value in fields.items():
        text = _text(name, value)
        if text is not None:
            _checked_value(name, text)
            query[name] = text
    algorithm = query.get("sign_type", MD5)
    query["sign"] = sign(query, apiv2_key, algorithm)
    path = path.lstrip("/")
    path = path.removeprefix("v2/")
    encoded = "&".join(
        f"{quote(name, safe='')}={quote(text, safe='')}" for name, text in query.items()
    )
    return f"{base_url.rstrip('/')}/{path}?{encoded}"
