"""``Request``: what a verb asks for, checked and encoded once, before anything is sent.

A verb (or an upload, a download, the certificate download) builds one :class:`Request`;
the :class:`~wechatpay_chain._transport.Transport` sends it, to the backup host too if need
be, without changing a byte of what is signed: the target is encoded and the JSON body
serialised here, and those very strings and bytes are signed and sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._wire import HEADER_SERIAL, compact_json
from .errors import ConfigError
from .retries import RetryMode

if TYPE_CHECKING:
    from aiohttp import ClientTimeout

    from .files.uploads import Upload

__all__ = ["METHODS", "Request", "check_retry_mode", "check_timeout", "request_body"]

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_RETRY_MODES = (None, "idempotent", "never")


def _size(body: bytes | None) -> str:
    return "None" if body is None else f"<{len(body)} bytes>"


def _no_headers() -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict())


@attrs.frozen
class Request:
    """One call, as it will be signed and sent.

    ``target`` is the encoded path and query, relative to the base URL (``/v3/...?...``), or
    an absolute URL on one of the client's hosts (a ``download_url``). ``timeout`` and
    ``retry`` are the call's own (``None``: the client's). ``upload`` is a media upload
    whose multipart body is built (and its file hashed) when it is sent. ``verify`` is
    false only where the caller verifies the answer itself (the certificate download, at
    bootstrap); ``stream`` leaves a download's body to be read by the caller.
    """

    method: str
    target: str
    body: bytes | None = attrs.field(default=None, repr=_size)
    headers: CIMultiDictProxy[str] = attrs.field(factory=_no_headers, repr=False)
    timeout: ClientTimeout | None = None
    retry: RetryMode = None
    upload: Upload | None = None
    verify: bool = True
    stream: bool = False
    #: ``"v2"`` for an APIv2 (XML) call: no ``Authorization``; the answer's ``sign`` is
    #: checked with ``sign_type`` (unless ``verify`` is false: an unsigned endpoint).
    api: str = "v3"
    sign_type: str | None = None
    #: Another host for this operation (the endpoint table's ``x-base-uri``).
    base_url: str | None = None


def request_body(method: str, json: Any, data: bytes | str | None) -> bytes | None:
    """The body's bytes, serialised once; or a ``TypeError``/``ValueError`` saying why not."""
    if json is not None and data is not None:
        raise TypeError("pass json= or data=, not both")
    if (json is not None or data is not None) and method == "GET":
        raise TypeError("a GET request carries no body: pass the query as params=")
    if json is not None:
        try:
            return compact_json(json)
        except ValueError as error:  # NaN or Infinity: not JSON
            raise ValueError(
                f"json= cannot be sent: {error} (NaN and Infinity are not JSON)"
            ) from None
    if data is not None:
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        raise TypeError(f"data= takes bytes or str, not {type(data).__name__}")
    return None if method == "GET" else b""


def check_timeout(timeout: object, name: str = "timeout") -> ClientTimeout:
    """``timeout`` as an ``aiohttp.ClientTimeout`` whose limits are all positive and finite
    (or unset); ``ConfigError`` naming ``name`` otherwise."""
    from aiohttp import ClientTimeout  # noqa: PLC0415 - the chain stays importable without it

    if isinstance(timeout, ClientTimeout):
        limits = attrs.asdict(timeout)
        for field, value in limits.items():
            if value is not None and not _positive_seconds(value):
                raise ConfigError(
                    f"{name}: ClientTimeout({field}={value!r}) must be seconds > 0 or None"
                )
        return timeout
    if not _positive_seconds(timeout):
        raise ConfigError(
            f"{name}: expected seconds > 0 (a finite number) or an aiohttp.ClientTimeout; "
            f"got {timeout!r}"
        )
    return ClientTimeout(total=float(timeout))  # type: ignore[arg-type]


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_retry_mode(retry: object, name: str = "retry") -> RetryMode:
    if retry not in _RETRY_MODES or isinstance(retry, bool):
        raise ConfigError(f"{name}= takes None, 'idempotent' or 'never'; got {retry!r}")
    return retry  # type: ignore[return-value]


def request_headers(
    base: Mapping[str, str],
    serial: str | None,
    body: bytes | None,
    extra: Mapping[str, str] | None,
) -> CIMultiDictProxy[str]:
    """The headers of a request: the client's, the preferred WeChat Pay key, the body's
    type, then the caller's (which may replace any of them)."""
    headers = CIMultiDict(base)
    if serial is not None:
        headers[HEADER_SERIAL] = serial
    if body:  # v3 bodies are JSON; data= may say otherwise in headers=
        headers["Content-Type"] = "application/json"
    if extra:
        if not isinstance(extra, Mapping):
            raise TypeError(f"headers= takes a mapping, not {type(extra).__name__}")
        headers.update(extra)
    return CIMultiDictProxy(headers)
