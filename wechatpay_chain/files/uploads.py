"""Signed multipart media uploads (PROTOCOL.md section 7): the file hashed before a byte is
sent, read again from the start for every attempt, never held whole in memory."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import mimetypes
import os
import secrets
import tempfile
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
)
from pathlib import Path
from typing import IO, Any, Protocol

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from .._wire import compact_json

#: ``on_progress(bytes_done, bytes_total)``: the file's bytes for an upload; the bytes
#: received (compressed, for a gzip bill) for a download, with ``None`` for an unknown total.
ProgressCallback = Callable[[int, int | None], object]

_READ_CHUNK = 512 * 1024  # one read of an uploaded file
_WRITE_BATCH = 4 * 1024 * 1024  # one hashing step, one write of a spool
_SPOOL_IN_MEMORY = 8 * 1024 * 1024  # an async iterator's spool stays in memory up to this


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


#: What ``post(file=...)`` takes: the bytes themselves, a path (``str`` or ``os.PathLike``),
#: a binary file object, or an async iterator of bytes.
UploadSource = (
    bytes | bytearray | memoryview | str | os.PathLike[str] | _Readable | AsyncIterable[bytes]
)


# -- uploads ------------------------------------------------------------------------------


class _Source:
    """The file of an upload, hashed, and readable again from the start for every attempt."""

    size: int
    sha256: str

    def chunks(self) -> AsyncGenerator[bytes | memoryview, None]:
        raise NotImplementedError  # pragma: no cover


class _BytesSource(_Source):
    def __init__(self, data: memoryview, sha256: str) -> None:
        self._data = data
        self.size = data.nbytes
        self.sha256 = sha256

    async def chunks(self) -> AsyncGenerator[bytes | memoryview, None]:
        for start in range(0, self.size, _READ_CHUNK):
            yield self._data[start : start + _READ_CHUNK]


class _FileSource(_Source):
    """A seekable binary file (opened by us from a path, or the caller's), read from ``start``."""

    def __init__(
        self, opener: Callable[[], Any], start: int, size: int, sha256: str, *, own: bool
    ) -> None:
        self._opener = opener
        self._start = start
        self._own = own  # close what we opened; leave the caller's file open
        self.size = size
        self.sha256 = sha256

    async def chunks(self) -> AsyncGenerator[bytes | memoryview, None]:
        loop = asyncio.get_running_loop()
        file = await loop.run_in_executor(None, self._opener)
        pending: asyncio.Future[bytes] | None = None
        try:
            await loop.run_in_executor(None, file.seek, self._start)
            remaining = self.size
            # One read ahead: the disk works while the previous chunk is being sent.
            if remaining > 0:
                pending = loop.run_in_executor(None, file.read, min(_READ_CHUNK, remaining))
            while pending is not None:
                chunk = await pending
                pending = None
                if not chunk:
                    raise OSError(
                        f"the file shrank while it was being uploaded ({remaining} bytes missing)"
                    )
                chunk = chunk[:remaining]
                remaining -= len(chunk)
                if remaining > 0:
                    pending = loop.run_in_executor(None, file.read, min(_READ_CHUNK, remaining))
                yield chunk
        finally:
            if pending is not None:  # never leave a read running on a file about to close
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            if self._own:
                file.close()


def _hash_file(file: IO[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := file.read(_WRITE_BATCH):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _hash_path(path: str) -> tuple[int, str]:
    with open(path, "rb") as file:
        return _hash_file(file)


def _seekable(file: object) -> bool:
    seekable = getattr(file, "seekable", None)
    try:
        return bool(callable(seekable) and seekable() and callable(getattr(file, "tell", None)))
    except (OSError, ValueError):
        return False


async def _spool(chunks: AsyncIterator[bytes]) -> _Source:
    """Copy a read-once source to a temporary spool while hashing it (bounded memory)."""
    loop = asyncio.get_running_loop()
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - owned below
    digest = hashlib.sha256()
    size = 0

    def store(batch: bytes) -> None:
        digest.update(batch)
        spool.write(batch)

    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in chunks:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"an upload's async iterator must yield bytes, not {type(chunk).__name__}"
                )
            batch.append(bytes(chunk))
            batched += len(batch[-1])
            if batched >= _WRITE_BATCH:
                await loop.run_in_executor(None, store, b"".join(batch))
                size += batched
                batch, batched = [], 0
        if batch:
            await loop.run_in_executor(None, store, b"".join(batch))
            size += batched
    except BaseException:
        spool.close()
        raise
    source = _FileSource(lambda: spool, 0, size, digest.hexdigest(), own=False)
    # The spool lives as long as the payload that sends it (a failover resends it) and is
    # closed, and so deleted, with it.
    weakref.finalize(source, spool.close)
    return source


async def _readable_chunks(file: _Readable) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while chunk := await loop.run_in_executor(None, file.read, _READ_CHUNK):
        yield chunk


async def _prepare(file: UploadSource) -> _Source:
    loop = asyncio.get_running_loop()
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = memoryview(file).cast("B")
        if data.nbytes > _WRITE_BATCH:  # hashlib releases the GIL on large inputs
            digest = await loop.run_in_executor(None, lambda: hashlib.sha256(data).hexdigest())
        else:
            digest = hashlib.sha256(data).hexdigest()
        return _BytesSource(data, digest)
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        size, digest = await loop.run_in_executor(None, _hash_path, path)
        return _FileSource(lambda: open(path, "rb"), 0, size, digest, own=True)
    if callable(getattr(file, "read", None)):
        readable: Any = file
        if _seekable(readable):
            start = readable.tell()
            size, digest = await loop.run_in_executor(None, _hash_file, readable)
            return _FileSource(lambda: readable, start, size, digest, own=False)
        return await _spool(_readable_chunks(readable))
    if isinstance(file, AsyncIterable):
        return await _spool(aiter(file))
    raise TypeError(  # pragma: no cover - Upload() checked the type already
        f"file= takes bytes, a path, a binary file or an async iterator, not {type(file).__name__}"
    )


def _filename_of(file: object) -> str | None:
    if isinstance(file, (str, os.PathLike)):
        return Path(os.fspath(file)).name or None
    name = getattr(file, "name", None)
    if isinstance(name, str) and name and not name.startswith("<"):
        return Path(name).name or None
    return None


def _check_header_text(what: str, value: str) -> str:
    if any(character in value for character in "\r\n\0"):
        raise ValueError(f"{what} must not contain CR, LF or NUL characters")
    return value


def _quoted_filename(filename: str) -> str:
    # As browsers write multipart names (WHATWG): the three characters that would end the
    # quoted string or the header are percent-encoded; UTF-8 stays as it is.
    return filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class Upload:
    """What ``post(file=..., filename=..., content_type=..., meta=..., on_progress=...)``
    was given; the client turns it into an :class:`UploadPayload` when it sends.

    The types are checked here, so that a bad call fails before any I/O.
    """

    __slots__ = ("content_type", "file", "filename", "meta", "on_progress")

    def __init__(
        self,
        file: UploadSource,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        readable = callable(getattr(file, "read", None))
        if isinstance(file, io.TextIOBase):
            raise TypeError("file= takes a binary file: open it with 'rb'")
        if not (
            isinstance(file, (bytes, bytearray, memoryview, str, os.PathLike, AsyncIterable))
            or readable
        ):
            raise TypeError(
                "file= takes bytes, a path, a binary file or an async iterator of bytes, "
                f"not {type(file).__name__}"
            )
        name = filename if filename is not None else _filename_of(file)
        if not name:
            raise TypeError(
                "filename= is required when file= is bytes or an async iterator: "
                "it goes in meta and names the file part"
            )
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta= takes a mapping of extra meta keys, not {type(meta).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress= takes a callable (bytes_done, bytes_total)")
        self.file = file
        self.filename = _check_header_text("filename", name)
        self.content_type = _check_header_text(
            "content_type",
            content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
        )
        self.meta = meta
        self.on_progress = on_progress

    def __repr__(self) -> str:
        return f"<Upload {self.filename!r} {self.content_type}>"

    @classmethod
    def of(
        cls,
        file: UploadSource | None,
        *,
        filename: str | None,
        content_type: str | None,
        meta: Mapping[str, Any] | None,
        on_progress: ProgressCallback | None,
    ) -> Upload | None:
        """The upload a ``post`` asks for, or ``None`` when it has no ``file=``."""
        if file is None:
            given = [
                name
                for name, value in (
                    ("filename", filename),
                    ("content_type", content_type),
                    ("meta", meta),
                    ("on_progress", on_progress),
                )
                if value is not None
            ]
            if given:
                raise TypeError(f"{'=, '.join(given)}= go with file=, which is missing")
            return None
        return cls(
            file,
            filename=filename,
            content_type=content_type,
            meta=meta,
            on_progress=on_progress,
        )

    async def payload(self, *, json: object = None, data: object = None) -> UploadPayload:
        """Hash the file (spooling it if it can be read only once) and build the body."""
        if json is not None or data is not None:
            raise TypeError("pass file= or json=/data=, not both: an upload's body is multipart")
        source = await _prepare(self.file)
        meta = {"filename": self.filename, "sha256": source.sha256, **(self.meta or {})}
        # Serialised once: these bytes are signed and sent as the meta part.
        meta_bytes = compact_json(meta)
        return UploadPayload(meta_bytes, source, self.filename, self.content_type, self.on_progress)


class UploadPayload(Payload):
    """The multipart body of an upload, streamed; ``signed_body`` is the meta JSON it signs.

    It can be written any number of times (a retry, the backup host), each time from the
    start of the file.
    """

    _autoclose = True  # nothing for aiohttp to close: files are opened per write

    def __init__(
        self,
        meta: bytes,
        source: _Source,
        filename: str,
        content_type: str,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        boundary = secrets.token_hex(16)
        super().__init__(source, content_type=f"multipart/form-data; boundary={boundary}")
        #: What the request signature covers (PROTOCOL.md section 7): the meta part, exactly.
        self.signed_body = meta
        self._source = source
        self._on_progress = on_progress
        self._head = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="meta"\r\n'
                "Content-Type: application/json\r\n"
                "\r\n"
            ).encode()
            + meta
            + (
                f"\r\n--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{_quoted_filename(filename)}"\r\n'
                f"Content-Type: {content_type}\r\n"
                "\r\n"
            ).encode()
        )
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._size = len(self._head) + source.size + len(self._tail)

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (lower-case hex), as the meta part states it."""
        return self._source.sha256

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await writer.write(self._head)
        total = self._source.size
        done = 0
        async with contextlib.aclosing(self._source.chunks()) as chunks:
            async for chunk in chunks:
                await writer.write(chunk)
                done += len(chunk)
                if self._on_progress is not None:
                    self._on_progress(done, total)
        if total == 0 and self._on_progress is not None:
            self._on_progress(0, 0)
        await writer.write(self._tail)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an upload's body is binary; the part it signs is .signed_body")

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """The whole multipart body in memory (for inspection; sending streams it)."""
        parts = [self._head]
        async with contextlib.aclosing(self._source.chunks()) as chunks:
            parts.extend([bytes(chunk) async for chunk in chunks])
        parts.append(self._tail)
        return b"".join(parts)
