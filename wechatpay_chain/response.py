"""The verified answer to an API call."""

from __future__ import annotations

import json
from typing import Any, Generic

import attrs
from multidict import CIMultiDictProxy
from typing_extensions import TypeVar

from .errors import InvalidResponseError

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
        """The body as UTF-8 text (:class:`~wechatpay_chain.errors.InvalidResponseError`
        if it is not)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._invalid(f"the body is not UTF-8 ({error.reason})") from None

    def json(self) -> T:
        """The body parsed as JSON; ``None`` for an empty body (a 204, say). A body that is
        not JSON (or nests deeper than Python can parse) raises
        :class:`~wechatpay_chain.errors.InvalidResponseError`, with the status and
        ``Request-ID``."""
        if not self.body:
            return None  # type: ignore[return-value]
        try:
            return json.loads(self.body)  # type: ignore[no-any-return]
        except RecursionError:
            raise self._invalid("the JSON body nests too deeply to parse") from None
        except UnicodeDecodeError as error:
            raise self._invalid(f"the body is not UTF-8 ({error.reason})") from None
        except ValueError as error:
            raise self._invalid(f"the body is not JSON ({error})") from None

    def xml(self) -> dict[str, Any]:
        """An APIv2 answer's fields (``str`` to ``str``), already verified; an unsigned
        answer that nests (a red-packet query) keeps its nesting as dicts and lists."""
        from .apiv2 import parse_xml  # noqa: PLC0415 - v2 code loads for those who use v2

        try:
            return parse_xml(self.body, nested=True)
        except ValueError as error:
            raise self._invalid(f"the body is not the XML it should be ({error})") from None

    def _invalid(self, message: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self.method} {self.target.split('?', 1)[0]}: {message}",
            status=self.status,
            request_id=self.request_id,
        )
