"""Downloads and bills for blocking code: :class:`SyncDownload`, :class:`SyncBillStream`.

Each wraps the async stream of :mod:`wechatpay_chain.files`, which lives on the client's
loop thread; every step (the next chunk, ``read``, ``save``, ``close``) runs there and the
calling thread waits for it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from multidict import CIMultiDictProxy

from ._loop_thread import LoopThread
from .files.bills import Bills

if TYPE_CHECKING:
    from .files import BillStream, Download, Opening
    from .sync import SyncWeChatPay

__all__ = ["SyncBillStream", "SyncBills", "SyncDownload"]

T = TypeVar("T")

#: How long closing an abandoned stream may take.
_CLOSE_TIMEOUT = 10.0


async def _step(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    # StopAsyncIteration is turned into a flag: it must not cross the thread as an exception.
    try:
        return False, await anext(iterator)
    except StopAsyncIteration:
        return True, None


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _iterate(thread: LoopThread, source: AsyncIterable[T]) -> Iterator[T]:
    """The items of ``source``, each one fetched on the loop thread."""
    iterator = aiter(source)
    finished = False
    try:
        while True:
            done, item = thread.run(_step(iterator))
            if done:
                finished = True
                return
            yield cast(T, item)  # not None unless done
    finally:
        if not finished and thread.alive:
            # Stopped early (break, an exception): the stream's own clean-up, on its loop.
            if thread.in_thread():
                thread.spawn(_close_iterator(iterator))
            else:
                thread.run(_close_iterator(iterator), timeout=_CLOSE_TIMEOUT)


class _SyncStream:
    __slots__ = ("_stream", "_thread")

    def __init__(self, thread: LoopThread, stream: Download | BillStream) -> None:
        self._thread = thread
        self._stream = stream

    def _await(self, awaitable: Awaitable[T]) -> T:
        async def awaited() -> T:
            return await awaitable

        return self._thread.run(awaited())

    def read(self) -> bytes:
        """The whole content in memory."""
        return self._await(self._stream.read())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the content to ``path`` through a temporary name beside it (see the async
        stream's ``save``). Returns the path."""
        return self._await(self._stream.save(path))

    def close(self) -> None:
        """Drop the connection if the content was not read to the end (idempotent)."""
        if self._thread.alive:
            self._await(self._stream.close())

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SyncDownload(_SyncStream):
    """An open download: iterate it (``for chunk in download``), :meth:`save` it or
    :meth:`read` it, once; use it in a ``with`` block, or :meth:`close` it."""

    __slots__ = ()
    _stream: Download

    @property
    def status(self) -> int:
        return self._stream.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._stream.headers

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    @property
    def content_length(self) -> int | None:
        return self._stream.content_length

    @property
    def target(self) -> str:
        return self._stream.target

    @property
    def bytes_received(self) -> int:
        return self._stream.bytes_received

    def __iter__(self) -> Iterator[bytes]:
        return _iterate(self._thread, self._stream)

    def __repr__(self) -> str:
        return f"<SyncDownload {self.status} {self.target.split('?', 1)[0]!r}>"


class SyncBillStream(_SyncStream):
    """A bill being downloaded: iterate it for the decompressed CSV, :meth:`save` it or
    read its :meth:`rows`, once; the SHA-1 is checked after the last chunk, as in
    :class:`~wechatpay_chain.files.BillStream`."""

    __slots__ = ()
    _stream: BillStream

    @property
    def hash_value(self) -> str | None:
        return self._stream.hash_value

    @property
    def gzip(self) -> bool:
        return self._stream.gzip

    @property
    def sha1(self) -> str | None:
        return self._stream.sha1

    @property
    def size(self) -> int:
        return self._stream.size

    @property
    def summary(self) -> dict[str, str] | None:
        return self._stream.summary

    @property
    def download(self) -> SyncDownload:
        return SyncDownload(self._thread, self._stream.download)

    def __iter__(self) -> Iterator[bytes]:
        return _iterate(self._thread, self._stream)

    def rows(self) -> Iterator[dict[str, str]]:
        """The detail rows as they stream; then :attr:`summary` holds the summary section."""
        return _iterate(self._thread, self._stream.rows())

    def __repr__(self) -> str:
        return f"<SyncBillStream sha1={self.hash_value} gzip={self.gzip}>"


async def _opened(opening: Opening[BillStream]) -> BillStream:
    return await opening


class SyncBills:
    """``wxpay.bills`` of a :class:`~wechatpay_chain.SyncWeChatPay`: each method applies
    for (or downloads) the bill and returns it open."""

    __slots__ = ("_owner",)

    def __init__(self, owner: SyncWeChatPay) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return "<wechatpay_chain.SyncBills>"

    def _open(self, opening: Any) -> SyncBillStream:
        running = self._owner._running()
        bill = self._owner._run(lambda _: _opened(opening), running)
        return SyncBillStream(running.thread, bill)

    # Each method is the async client's of the same name (same arguments), opened on the
    # loop: ``trade``, ``fundflow``, ``download``, ``trade_v2``, ``fundflow_v2``.
    def _bill(name: str) -> Callable[..., SyncBillStream]:  # type: ignore[misc]
        def open_bill(self: SyncBills, *args: Any, **kwargs: Any) -> SyncBillStream:
            bills = self._owner._running().client.bills
            return self._open(getattr(bills, name)(*args, **kwargs))

        open_bill.__name__ = name
        open_bill.__doc__ = getattr(Bills, name).__doc__
        return open_bill

    trade = _bill("trade")
    fundflow = _bill("fundflow")
    download = _bill("download")
    trade_v2 = _bill("trade_v2")
    fundflow_v2 = _bill("fundflow_v2")
    del _bill
