"""The verified answer to an API call."""

from __future__ import annotations

import json
from typing import Any, Generic

import attrs
from multidict import CIMultiDictProxy
from typing_extensions import TypeVar

__all__ = ["Response"]

#: The answer's shape: ``Any`` for the dynamic chain; the generated stubs name each
#: operation's answer (``Response[TransactionsNativeAnswer]``) so that ``json()`` is typed.
T = TypeVar("T", default=Any)


@attrs.frozen
class Response(Generic[T]):
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

    def json(self) -> T:
        """The body parsed as JSON; ``None`` for an empty body (a 204, say)."""
        if not self.body:
            return None  # type: ignore[return-value]
        return json.loads(self.body)  # type: ignore[no-any-return]
