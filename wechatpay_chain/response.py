"""The verified answer to an API call."""

from __future__ import annotations

import json
from typing import Any

import attrs
from multidict import CIMultiDictProxy


@attrs.frozen
class Response:
    """A 2xx answer whose signature has been verified before it was built.

    ``body`` holds the bytes exactly as received (and verified); ``json()`` parses them.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")
    method: str
    target: str

    @property
    def request_id(self) -> str | None:
        """WeChat Pay's ``Request-ID``, the handle its support asks for."""
        return self.headers.get("Request-ID")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON; ``None`` for an empty body (a 204, say)."""
        if not self.body:
            return None
        return json.loads(self.body)
