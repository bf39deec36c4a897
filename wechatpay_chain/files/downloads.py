"""Streamed downloads: the open answer of a signed ``GET``, read once, saved through a
temporary name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Generator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from .._aiohttp import transport_errors
from ..errors import TransportError
from .uploads import ProgressCallback

#: Downloads stream for as long as they need: no total limit, but a connection must open
#: within 3 s and bytes must keep arriving (60 s at most between two reads).
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=3, sock_connect=3, sock_read=60)

_WRITE_BATCH = 4 * 1024 * 1024  # one write of a saved download (two in memory at most)


T = TypeVar("T", bound="_Closable")


class _Closable(Protocol):
    async def close(self) -> None: ...


class Opening(Generic[T]):
    """A download being opened: ``await`` it for the stream, or use it with ``async with``,
    which closes the stream however the block ends."""

    __slots__ = ("_factory", "_opened")

    def __init__(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._factory = factory
        self._opened: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._factory().__await__()

    async def __aenter__(self) -> T:
        self._opened = await self._factory()
        return self._opened

    async def __aexit__(self, *exc_info: object) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.close()


class Download:
    """An open download: iterate it (``async for chunk in download``), :meth:`save` it or
    :meth:`read` it, once. Reading to the end releases the connection; to stop early, use
    ``async with`` or call :meth:`close`.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        target: str,
        on_progress: ProgressCallback | None = None,
        buffered: bytes | None = None,
        head: bytes = b"",
    ) -> None:
        self._response = response
        self._target = target
        self._on_progress = on_progress
        self._buffered = buffered
        # The first bytes, read already to tell a file from an XML error (APIv2 bills).
        self._head = head
        self._started = False
        #: Bytes received so far.
        self.bytes_received = 0

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._response.headers

    @property
    def request_id(self) -> str | None:
        return self._response.headers.get("Request-ID")

    @property
    def content_length(self) -> int | None:
        """The size the server announced, if it did (a gzip stream may not)."""
        return self._response.content_length

    @property
    def target(self) -> str:
        return self._target

    def __repr__(self) -> str:
        return f"<Download {self.status} {self._target.split('?', 1)[0]!r}>"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("this download was already read: a stream can be read once")
        self._started = True
        total = self.content_length
        complete = False
        try:
            if self._buffered is not None:
                source: AsyncIterator[bytes] = _one(self._buffered)
            else:
                source = _after(self._head, self._response.content.iter_any())
            while True:
                with transport_errors("GET", self._target):
                    try:
                        chunk = await anext(source)
                    except StopAsyncIteration:
                        break
                self.bytes_received += len(chunk)
                if self._on_progress is not None:
                    self._on_progress(self.bytes_received, total)
                yield chunk
            if total is not None and self.bytes_received != total:
                raise TransportError(
                    f"GET {self._target}: {self.bytes_received} bytes received of {total}"
                )
            complete = True
        finally:
            if complete:
                self._response.release()
            else:
                self._response.close()

    async def read(self) -> bytes:
        """The whole file in memory: for small files (an image), not for bills."""
        return b"".join([chunk async for chunk in self])

    async def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file to ``path``: to a temporary name beside it, renamed at the end, so
        that ``path`` never holds a partial file. Returns the path."""
        return await _save(self, Path(path))

    async def close(self) -> None:
        """Drop the connection if the file was not read to the end (idempotent)."""
        self._started = True
        self._response.close()

    async def __aenter__(self) -> Download:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _after(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


async def _save(stream: AsyncIterable[bytes], path: Path) -> Path:
    """Write ``stream`` to a temporary name beside ``path`` and rename it at the end; an
    error (a hash mismatch raised by the stream's last step, say) leaves nothing behind."""
    loop = asyncio.get_running_loop()
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    file = await loop.run_in_executor(None, open, partial, "xb")

    def store(batch: list[bytes]) -> None:
        file.writelines(batch)  # no copy into one buffer; the writes release the GIL

    writing: asyncio.Future[None] | None = None
    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in stream:
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _WRITE_BATCH:
                # The disk writes one batch while the next one arrives.
                if writing is not None:
                    await writing
                writing = loop.run_in_executor(None, store, batch)
                batch, batched = [], 0
        if writing is not None:
            await writing
            writing = None
        await loop.run_in_executor(None, store, batch)
        await loop.run_in_executor(None, file.close)
        await loop.run_in_executor(None, os.replace, partial, path)
    except BaseException:
        if writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
        file.close()
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return path
