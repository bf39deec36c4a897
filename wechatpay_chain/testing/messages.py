"""What passes through the fake server: recorded requests, replies and API failures."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from multidict import CIMultiDictProxy, MultiDictProxy

from .._wire import compact_json

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ApiFailure", "RecordedRequest", "Reply", "dump_json"]


def dump_json(document: Any) -> bytes:
    return compact_json(document)


@attrs.frozen
class RecordedRequest:
    """One request as the fake server received it, before any check."""

    method: str
    #: The request target exactly as sent on the request line (path and query, encoded).
    target: str
    #: The decoded path.
    path: str
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")

    def json(self) -> Any:
        """The body parsed as JSON, ``None`` when there is none."""
        return json.loads(self.body) if self.body else None


@attrs.frozen
class Reply:
    """What a route answers: a status and a JSON document (or raw bytes)."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: A file download: writes the answer itself to the aiohttp request, streamed and
    #: unsigned, as WeChat Pay sends files (``status``, ``json`` and ``body`` are unused).
    stream: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = attrs.field(
        default=None, repr=False
    )

    def encoded(self) -> bytes:
        if self.body is not None:
            return self.body
        return b"" if self.json is None else dump_json(self.json)


class ApiFailure(Exception):
    """Raised by a route to answer with WeChat Pay's error shape ``{"code","message","detail"}``."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers: dict[str, str] = {}

    def reply(self) -> Reply:
        document: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            document["detail"] = self.detail
        return Reply(self.status, document, headers=self.headers)


def param_error(field: str, issue: str, *, location: str = "body", value: Any = None) -> ApiFailure:
    """400 ``PARAM_ERROR`` pointing at one field, as WeChat Pay words it."""
    detail: dict[str, Any] = {"field": field, "issue": issue, "location": location}
    if value is not None:
        detail["value"] = value
    return ApiFailure(400, "PARAM_ERROR", f"参数错误: {issue}", detail)
