"""Downloads and bills for blocking code: :class:`SyncDownload`, :class:`SyncBillStream`.

Each wraps the async stream of :mod:`wechatpay_chain.files`, which lives on the client's
loop thread; every step (the next chunk, ``read``, ``save``, ``close``) runs there and the
calling thread waits for it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from multidict import CIMultiDictProxy

from ._loop_thread import LoopThread

if TYPE_CHECKING:
    import aiohttp

    from .client import WeChatPay
    from .files import BillStream, Download, Opening, ProgressCallback
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

    def trade(
        self,
        bill_date: str | datetime.date,
        bill_type: str = "ALL",
        tar_type: str | None = None,
        *,
        sub_mchid: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> SyncBillStream:
        """The trade bill of ``bill_date`` (``GET /v3/bill/tradebill``), opened."""
        client: WeChatPay = self._owner._running().client
        return self._open(
            client.bills.trade(
                bill_date,
                bill_type,
                tar_type,
                sub_mchid=sub_mchid,
                on_progress=on_progress,
                timeout=timeout,
            )
        )

    def fundflow(
        self,
        bill_date: str | datetime.date,
        account_type: str = "BASIC",
        tar_type: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> SyncBillStream:
        """The fund-flow bill of ``bill_date`` (``GET /v3/bill/fundflowbill``), opened."""
        client: WeChatPay = self._owner._running().client
        return self._open(
            client.bills.fundflow(
                bill_date, account_type, tar_type, on_progress=on_progress, timeout=timeout
            )
        )

    def download(
        self,
        answer: Mapping[str, Any],
        *,
        tar_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> SyncBillStream:
        """Download the bill an apply call answered, opened."""
        client: WeChatPay = self._owner._running().client
        return self._open(
            client.bills.download(
                answer, tar_type=tar_type, on_progress=on_progress, timeout=timeout
            )
        )
