"""Files: signed multipart media uploads, streamed downloads, and bills.

**Uploads** (PROTOCOL.md section 7). ``node.post(file=...)`` sends ``multipart/form-data``
with two parts, ``meta`` then ``file``. The ``meta`` part is a JSON string
``{"filename": ..., "sha256": ...}`` serialised once; those very bytes are what the request
signature covers (:class:`UploadPayload` carries them as ``signed_body``, which
:class:`~wechatpay_chain.middleware.SigningMiddleware` signs instead of the multipart body)
and what goes on the wire. Because the meta part comes first, the file's SHA-256 must be
known before a byte is sent:

* ``bytes`` are hashed in place;
* a path, or a seekable binary file, is read twice: once to hash it, once to send it,
  in chunks, so a large file is never held in memory;
* an async iterator (or an unseekable file) can be read only once: it is copied to a
  temporary spool (in memory up to 8 MiB, then on disk) while it is hashed, and sent from
  there.

**Downloads** (section 8). :meth:`WeChatPay.download` sends a signed ``GET`` and hands back
the open answer as a :class:`Download` to iterate or save; WeChat Pay does not sign file
answers (section 2.5). The ``Authorization`` header only ever goes to the configured WeChat
Pay hosts (the base URL and its failover host): a URL anywhere else raises
:class:`~wechatpay_chain.errors.UntrustedHostError` before anything is sent.

**Bills**. :attr:`WeChatPay.bills` applies for a trade or fund-flow bill, downloads it,
gunzips it when asked for ``GZIP``, and computes the SHA-1 of the decompressed content as it
streams; the last chunk is followed by the comparison with ``hash_value``, and a mismatch
raises :class:`~wechatpay_chain.errors.HashMismatchError`. :meth:`BillStream.save` writes to
a temporary name beside the target and renames it only once the hash matched.
:func:`parse_bill` and :class:`BillParser` read the CSV (BOM, backquoted fields, summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import io
import json as jsonlib
import mimetypes
import os
import secrets
import tempfile
import weakref
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
)
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import aiohttp
import attrs
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from multidict import CIMultiDictProxy
from yarl import URL

from .errors import (
    ApiError,
    ConnectError,
    HashMismatchError,
    RequestTimeoutError,
    TransportError,
    UntrustedHostError,
    VerificationError,
    WeChatPayError,
)
from .middleware import RetryMiddleware, is_unsigned_download

if TYPE_CHECKING:
    from .client import WeChatPay

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "BillParser",
    "BillStream",
    "Bills",
    "Download",
    "Opening",
    "ParsedBill",
    "ProgressCallback",
    "Upload",
    "UploadPayload",
    "UploadSource",
    "parse_bill",
]

#: ``on_progress(bytes_done, bytes_total)``: the file's bytes for an upload; the bytes
#: received (compressed, for a gzip bill) for a download, with ``None`` for an unknown total.
ProgressCallback = Callable[[int, int | None], object]

#: Downloads stream for as long as they need: no total limit, but a connection must open
#: within 3 s and bytes must keep arriving (60 s at most between two reads).
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=3, sock_connect=3, sock_read=60)

_READ_CHUNK = 512 * 1024  # one read of an uploaded file
_WRITE_BATCH = 4 * 1024 * 1024  # one write of a saved download (two in memory at most)
_READ_BUFFER = 1024 * 1024  # aiohttp's read buffer for a download (flow control)
_INFLATE_CHUNK = 1024 * 1024  # at most this much decompressed output per step
_SPOOL_IN_MEMORY = 8 * 1024 * 1024  # an async iterator's spool stays in memory up to this
_ERROR_BODY_LIMIT = 1024 * 1024


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
        meta_bytes = jsonlib.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
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


# -- downloads ----------------------------------------------------------------------------


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


@contextlib.contextmanager
def _transport_errors(method: str, target: str) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
        raise ConnectError(f"{method} {target}: cannot connect: {error}") from error
    except asyncio.TimeoutError as error:
        raise RequestTimeoutError(f"{method} {target}: no data within the timeout") from error
    except aiohttp.ClientError as error:
        raise TransportError(f"{method} {target}: {type(error).__name__}: {error}") from error


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def download_url(client: WeChatPay, url_or_target: str) -> URL:
    """The absolute URL to fetch: a target (``/v3/...``) goes to the base URL; an absolute
    URL must name the base URL's host or its failover host (scheme, host and port)."""
    if not isinstance(url_or_target, str) or not url_or_target:
        raise TypeError("download() takes a download_url or a request target such as '/v3/...'")
    if "://" not in url_or_target:
        target = url_or_target if url_or_target.startswith("/") else "/" + url_or_target
        return URL(client.base_url + target)
    url = URL(url_or_target)
    trusted = [URL(client.base_url)]
    if client.failover_url is not None:
        trusted.append(URL(client.failover_url))
    if (
        url.scheme not in ("http", "https")
        or url.user is not None
        or url.password is not None
        or _origin(url) not in {_origin(host) for host in trusted}
    ):
        allowed = ", ".join(str(host.origin()) for host in trusted)
        raise UntrustedHostError(
            f"refusing to send the signed request to {url.origin()}: downloads go only to the "
            f"configured WeChat Pay hosts ({allowed})"
        )
    return url


async def open_download(
    client: WeChatPay,
    url_or_target: str,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float | aiohttp.ClientTimeout | None = None,
) -> Download:
    """Send the signed GET and return the open answer (see :meth:`WeChatPay.download`)."""
    url = download_url(client, url_or_target)
    target = url.raw_path_qs
    if timeout is None:
        limits = DOWNLOAD_TIMEOUT
    elif isinstance(timeout, aiohttp.ClientTimeout):
        limits = timeout
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        limits = aiohttp.ClientTimeout(total=float(timeout))
    else:
        raise ValueError("timeout: expected seconds > 0 or an aiohttp.ClientTimeout")
    session = client._get_session()
    retry = RetryMiddleware(client._retry, None, None, client._rng)
    with _transport_errors("GET", target):
        response = await session.request(
            "GET",
            url,
            headers=client._request_headers(None, None),
            timeout=limits,
            allow_redirects=False,
            raise_for_status=False,
            read_bufsize=_READ_BUFFER,
            # Verifying skips the documented unsigned downloads by itself; anything else
            # fetched this way is an ordinary signed answer and is verified in full.
            middlewares=(retry, client._signing, client._verifying),
        )
    try:
        if not 200 <= response.status < 300:
            with _transport_errors("GET", target):
                body = await response.content.read(_ERROR_BODY_LIMIT)
            raise ApiError(
                response.status,
                body=body,
                headers=response.headers,
                request_id=response.headers.get("Request-ID"),
            )
        buffered = None
        if not is_unsigned_download("GET", url.raw_path):
            with _transport_errors("GET", target):
                buffered = await response.read()  # already read, and verified
    except BaseException:
        response.close()
        raise
    return Download(response, target=target, on_progress=on_progress, buffered=buffered)


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
    ) -> None:
        self._response = response
        self._target = target
        self._on_progress = on_progress
        self._buffered = buffered
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
                source = self._response.content.iter_any()
            while True:
                with _transport_errors("GET", self._target):
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


# -- bills --------------------------------------------------------------------------------


class _Gunzip:
    """gzip decompression with bounded output per step (a small compressed chunk can expand
    a thousandfold), accepting several concatenated members as gzip allows."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                out = self._inflater.decompress(data, _INFLATE_CHUNK)
                if out:
                    yield out
                data = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    data = self._inflater.unused_data + data
                    if data:
                        self._inflater = zlib.decompressobj(wbits=31)
        except zlib.error as error:
            raise HashMismatchError(f"the bill is not valid gzip: {error}") from None

    def close(self) -> Iterator[bytes]:
        try:
            out = self._inflater.flush()
        except zlib.error as error:  # pragma: no cover - flush rarely raises
            raise HashMismatchError(f"the bill is not valid gzip: {error}") from None
        if out:
            yield out
        if not self._inflater.eof:
            raise HashMismatchError("the bill's gzip stream ends early")


class BillStream:
    """A bill being downloaded: iterate it for the decompressed CSV, :meth:`save` it, or
    read its :meth:`rows`; once. The SHA-1 of the content is compared with ``hash_value``
    after the last chunk, and a mismatch raises
    :class:`~wechatpay_chain.errors.HashMismatchError`: content seen before then is not yet
    proven (:meth:`save` keeps nothing of a bill that fails).
    """

    def __init__(self, download: Download, *, hash_value: str, gzip: bool) -> None:
        self._download = download
        #: The SHA-1 WeChat Pay announced (lower-case hex).
        self.hash_value = hash_value.lower()
        #: Whether the file travels gzip-compressed (``tar_type="GZIP"``).
        self.gzip = gzip
        #: The SHA-1 computed over the content, once the whole bill matched it.
        self.sha1: str | None = None
        #: Decompressed bytes delivered so far.
        self.size = 0
        #: After :meth:`rows`: the summary section (column name to value).
        self.summary: dict[str, str] | None = None

    @property
    def download(self) -> Download:
        """The underlying download (status, headers, bytes received)."""
        return self._download

    def __repr__(self) -> str:
        return f"<BillStream sha1={self.hash_value} gzip={self.gzip}>"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _pieces(self) -> AsyncIterator[bytes]:
        """The decompressed content, not yet hashed."""
        gunzip = _Gunzip() if self.gzip else None
        async for raw in self._download:
            for piece in gunzip.feed(raw) if gunzip is not None else (raw,):
                self.size += len(piece)
                yield piece
        if gunzip is not None:
            for piece in gunzip.close():
                self.size += len(piece)
                yield piece

    async def _chunks(self) -> AsyncIterator[bytes]:
        digest = hashlib.sha1(usedforsecurity=False)
        async for piece in self._pieces():
            digest.update(piece)
            yield piece
        self._verify(digest)

    def _verify(self, digest: Any) -> None:
        computed: str = digest.hexdigest()
        if computed != self.hash_value:
            raise HashMismatchError(
                f"the bill's SHA-1 is {computed}, WeChat Pay announced {self.hash_value} "
                f"({self.size} bytes received): do not use this file",
                request_id=self._download.request_id,
            )
        self.sha1 = computed

    async def read(self) -> bytes:
        """The whole verified bill in memory (fine for a day of a small shop)."""
        return b"".join([chunk async for chunk in self])

    async def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the verified bill to ``path`` (decompressed): through a temporary name
        beside it, renamed only once the SHA-1 matched. Returns the path."""
        return await _save(self, Path(path))

    async def rows(self) -> AsyncIterator[dict[str, str]]:
        """The detail rows as they stream, keyed by the header's column names; then
        :attr:`summary` holds the summary section. The hash is checked after the last row."""
        parser = BillParser()
        async for chunk in self:
            for row in parser.feed(chunk):
                yield row
        for row in parser.close():
            yield row
        self.summary = parser.summary

    async def close(self) -> None:
        await self._download.close()

    async def __aenter__(self) -> BillStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _bill_date(value: str | datetime.date) -> str:
    if isinstance(value, datetime.datetime):
        raise TypeError("bill_date takes a date (or 'YYYY-MM-DD'), not a datetime")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"bill_date: expected YYYY-MM-DD; got {value!r}") from None
        if len(value) != 10:
            raise ValueError(f"bill_date: expected YYYY-MM-DD; got {value!r}")
        return value
    raise TypeError(f"bill_date takes a date or 'YYYY-MM-DD', not {type(value).__name__}")


def _tar_type(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() != "GZIP":
        raise ValueError(f"tar_type: expected None or 'GZIP'; got {value!r}")
    return "GZIP"


class Bills:
    """Trade and fund-flow bills: apply, download, gunzip, verify (``wxpay.bills``)."""

    __slots__ = ("_client",)

    def __init__(self, client: WeChatPay) -> None:
        self._client = client

    def trade(
        self,
        bill_date: str | datetime.date,
        bill_type: str = "ALL",
        tar_type: str | None = None,
        *,
        sub_mchid: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> Opening[BillStream]:
        """The trade bill of ``bill_date`` (``GET /v3/bill/tradebill``), opened for reading.

        ``bill_type`` is ``ALL``, ``SUCCESS``, ``REFUND``...; ``tar_type="GZIP"`` has it
        travel compressed (what you read is always the CSV).
        """
        params = {
            "bill_date": _bill_date(bill_date),
            "sub_mchid": sub_mchid,
            "bill_type": bill_type,
            "tar_type": _tar_type(tar_type),
        }
        return Opening(
            lambda: self._apply(
                "v3/bill/tradebill", params, on_progress=on_progress, timeout=timeout
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
    ) -> Opening[BillStream]:
        """The fund-flow bill of ``bill_date`` (``GET /v3/bill/fundflowbill``) for
        ``account_type`` ``BASIC``, ``OPERATION`` or ``FEES``, opened for reading."""
        params = {
            "bill_date": _bill_date(bill_date),
            "account_type": account_type,
            "tar_type": _tar_type(tar_type),
        }
        return Opening(
            lambda: self._apply(
                "v3/bill/fundflowbill", params, on_progress=on_progress, timeout=timeout
            )
        )

    def download(
        self,
        answer: Mapping[str, Any],
        *,
        tar_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> Opening[BillStream]:
        """Download the bill an apply call answered (``{"hash_type", "hash_value",
        "download_url"}``, from any bill endpoint: sub-merchant, e-commerce...); pass
        ``tar_type="GZIP"`` if it was applied for compressed."""
        gzip = _tar_type(tar_type) == "GZIP"
        return Opening(
            lambda: self._download(answer, gzip=gzip, on_progress=on_progress, timeout=timeout)
        )

    async def _apply(
        self,
        path: str,
        params: dict[str, str | None],
        *,
        on_progress: ProgressCallback | None,
        timeout: float | aiohttp.ClientTimeout | None,
    ) -> BillStream:
        answer = (await self._client.chain(path).get(params=params)).json()
        return await self._download(
            answer, gzip=params["tar_type"] == "GZIP", on_progress=on_progress, timeout=timeout
        )

    async def _download(
        self,
        answer: Mapping[str, Any],
        *,
        gzip: bool,
        on_progress: ProgressCallback | None,
        timeout: float | aiohttp.ClientTimeout | None,
    ) -> BillStream:
        if not isinstance(answer, Mapping):
            raise WeChatPayError(f"a bill answer is a JSON object, not {type(answer).__name__}")
        missing = [
            name
            for name in ("hash_type", "hash_value", "download_url")
            if not isinstance(answer.get(name), str) or not answer[name]
        ]
        if missing:
            raise WeChatPayError(f"the bill answer lacks {', '.join(missing)}")
        if answer["hash_type"].upper() != "SHA1":
            raise VerificationError(
                f"the bill's hash_type is {answer['hash_type']!r}; only SHA1 is documented"
            )
        download = await open_download(
            self._client, answer["download_url"], on_progress=on_progress, timeout=timeout
        )
        return BillStream(download, hash_value=answer["hash_value"], gzip=gzip)


# -- parsing ------------------------------------------------------------------------------


@attrs.frozen
class ParsedBill:
    """A bill's CSV as data: the detail rows keyed by column name, and the summary."""

    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...] = attrs.field(repr=lambda rows: f"<{len(rows)} rows>")
    summary_header: tuple[str, ...]
    summary: dict[str, str]


class BillParser:
    """An incremental parser for WeChat Pay's bill CSV: :meth:`feed` it bytes as they come,
    get the detail rows back, :meth:`close` it at the end; then :attr:`summary` is set.

    The format: UTF-8 (with a BOM), a header line of column names, one line per detail
    whose every field starts with a backquote (so spreadsheets keep long numbers as text),
    then a summary header line and one backquoted line of totals. Lines end in LF or CRLF.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._line = 0
        self.header: tuple[str, ...] | None = None
        self.summary_header: tuple[str, ...] | None = None
        self.summary: dict[str, str] | None = None

    def feed(self, data: bytes) -> list[dict[str, str]]:
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        return [row for line in lines if (row := self._line_of(line)) is not None]

    def close(self) -> list[dict[str, str]]:
        pending, self._pending = self._pending, b""
        rows = [row] if (row := self._line_of(pending)) is not None else []
        if self.header is None:
            raise ValueError("the bill is empty: no header line")
        if self.summary_header is not None and self.summary is None:
            raise ValueError("the bill's summary header has no values line")
        return rows

    def _line_of(self, raw: bytes) -> dict[str, str] | None:
        self._line += 1
        if self._line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        line = raw.rstrip(b"\r").decode("utf-8")
        if not line.strip():
            return None
        if self.header is None:
            self.header = tuple(name.strip() for name in line.split(","))
            return None
        if not line.startswith("`"):
            if self.summary_header is not None:
                raise ValueError(f"line {self._line}: a second summary header")
            self.summary_header = tuple(name.strip() for name in line.split(","))
            return None
        # Every field starts with "`": split on ",`" keeps a comma inside a field.
        values = line[1:].split(",`")
        names = self.summary_header if self.summary_header is not None else self.header
        if len(values) != len(names):
            raise ValueError(
                f"line {self._line}: {len(values)} fields where the header names {len(names)}"
            )
        record = dict(zip(names, values, strict=True))
        if self.summary_header is None:
            return record
        if self.summary is not None:
            raise ValueError(f"line {self._line}: a second summary line")
        self.summary = record
        return None


def parse_bill(content: bytes | str) -> ParsedBill:
    """Parse a whole bill (bytes as downloaded, or text) into rows and summary."""
    parser = BillParser()
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    rows = parser.feed(data)
    rows.extend(parser.close())
    return ParsedBill(
        header=parser.header or (),  # close() raised when there was none
        rows=tuple(rows),
        summary_header=parser.summary_header or (),
        summary=parser.summary or {},
    )
