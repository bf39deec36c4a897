"""Trade and fund-flow bills: applied for, downloaded, gunzipped and SHA-1-verified as they
stream (``wxpay.bills``)."""

from __future__ import annotations

import datetime
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import (
    BodyTooLargeError,
    HashMismatchError,
    InvalidResponseError,
    VerificationError,
    WeChatPayError,
)
from .bill_csv import BillParser
from .downloads import Download, Opening, _save
from .uploads import ProgressCallback

if TYPE_CHECKING:
    from aiohttp import ClientTimeout

    from ..response import Response

_INFLATE_CHUNK = 1024 * 1024  # at most this much decompressed output per step

#: The largest bill kept by default, decompressed: a day of a large merchant's trades is
#: hundreds of MiB of CSV; a gzip bomb (2 MiB that inflate to 2 GiB) stops here.
MAX_BILL_SIZE = 1024 * 1024 * 1024

#: ``query(path, params)``: the signed, verified ``GET`` of a bill's apply endpoint.
BillQuery = Callable[[str, Mapping[str, str | None]], Awaitable["Response"]]
#: ``fetch_v2(path, fields, on_progress, timeout)``: an APIv2 bill's download (the client
#: signs the fields, adding its mch_id).
BillFetchV2 = Callable[
    [str, Mapping[str, object], "ProgressCallback | None", "float | ClientTimeout | None"],
    Awaitable[Download],
]
#: ``fetch(download_url, on_progress, timeout)``: the signed download of the file.
BillFetch = Callable[
    [str, "ProgressCallback | None", "float | ClientTimeout | None"], Awaitable[Download]
]


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

    def __init__(
        self,
        download: Download,
        *,
        hash_value: str | None,
        gzip: bool,
        max_size: int = MAX_BILL_SIZE,
    ) -> None:
        self._download = download
        #: The most decompressed bytes accepted before the bill is refused.
        self.max_size = max_size
        #: The SHA-1 WeChat Pay announced (lower-case hex); ``None`` for an APIv2 bill,
        #: which comes with no hash (only TLS vouches for it).
        self.hash_value = None if hash_value is None else hash_value.lower()
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
                yield self._counted(piece)
        if gunzip is not None:
            for piece in gunzip.close():
                yield self._counted(piece)

    def _counted(self, piece: bytes) -> bytes:
        self.size += len(piece)
        if self.size > self.max_size:
            raise BodyTooLargeError(
                self.size,
                self.max_size,
                at_least=True,
                what="the bill (decompressed)",
                request_id=self._download.request_id,
            )
        return piece

    async def _chunks(self) -> AsyncIterator[bytes]:
        digest = hashlib.sha1(usedforsecurity=False)
        async for piece in self._pieces():
            digest.update(piece)
            yield piece
        self._verify(digest)

    def _verify(self, digest: Any) -> None:
        computed: str = digest.hexdigest()
        if self.hash_value is not None and computed != self.hash_value:
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


@attrs.frozen
class Bills:
    """Trade and fund-flow bills: apply, download, gunzip, verify (``wxpay.bills``).

    ``query`` sends the apply call and ``fetch`` opens the file's download: the client
    passes its own, so this module knows nothing of how a request is sent.
    """

    query: BillQuery
    fetch: BillFetch
    fetch_v2: BillFetchV2 | None = None

    def trade(
        self,
        bill_date: str | datetime.date,
        bill_type: str = "ALL",
        tar_type: str | None = None,
        *,
        sub_mchid: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | ClientTimeout | None = None,
        max_size: int = MAX_BILL_SIZE,
    ) -> Opening[BillStream]:
        """The trade bill of ``bill_date`` (``GET /v3/bill/tradebill``), opened for reading.

        ``bill_type`` is ``ALL``, ``SUCCESS``, ``REFUND``...; ``tar_type="GZIP"`` has it
        travel compressed (what you read is always the CSV). ``max_size`` bounds the
        decompressed bill (:class:`~wechatpay_chain.errors.BodyTooLargeError` past it).
        """
        params = {
            "bill_date": _bill_date(bill_date),
            "sub_mchid": sub_mchid,
            "bill_type": bill_type,
            "tar_type": _tar_type(tar_type),
        }
        limits = _Limits(on_progress, timeout, _max_size(max_size))
        return Opening(lambda: self._apply("v3/bill/tradebill", params, limits))

    def fundflow(
        self,
        bill_date: str | datetime.date,
        account_type: str = "BASIC",
        tar_type: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | ClientTimeout | None = None,
        max_size: int = MAX_BILL_SIZE,
    ) -> Opening[BillStream]:
        """The fund-flow bill of ``bill_date`` (``GET /v3/bill/fundflowbill``) for
        ``account_type`` ``BASIC``, ``OPERATION`` or ``FEES``, opened for reading."""
        params = {
            "bill_date": _bill_date(bill_date),
            "account_type": account_type,
            "tar_type": _tar_type(tar_type),
        }
        limits = _Limits(on_progress, timeout, _max_size(max_size))
        return Opening(lambda: self._apply("v3/bill/fundflowbill", params, limits))

    def download(
        self,
        answer: Mapping[str, Any],
        *,
        tar_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | ClientTimeout | None = None,
        max_size: int = MAX_BILL_SIZE,
    ) -> Opening[BillStream]:
        """Download the bill an apply call answered (``{"hash_type", "hash_value",
        "download_url"}``, from any bill endpoint: sub-merchant, e-commerce...); pass
        ``tar_type="GZIP"`` if it was applied for compressed."""
        gzip = _tar_type(tar_type) == "GZIP"
        limits = _Limits(on_progress, timeout, _max_size(max_size))
        return Opening(lambda: self._download(answer, gzip, limits))

    def trade_v2(
        self,
        appid: str,
        bill_date: str | datetime.date,
        bill_type: str = "ALL",
        tar_type: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | ClientTimeout | None = None,
        max_size: int = MAX_BILL_SIZE,
    ) -> Opening[BillStream]:
        """The APIv2 trade bill of ``bill_date`` (``v2/pay/downloadbill``), opened for
        reading: CSV, gunzipped when ``tar_type="GZIP"``; an XML answer (no bill that day, a
        bad date) is an :class:`~wechatpay_chain.errors.ApiError`. APIv2 bills come with no
        hash: what you read is vouched for by TLS alone."""
        fields = {
            "appid": appid,
            "bill_date": _bill_date(bill_date).replace("-", ""),
            "bill_type": bill_type,
            "tar_type": _tar_type(tar_type),
        }
        limits = _Limits(on_progress, timeout, _max_size(max_size))
        return Opening(lambda: self._download_v2("v2/pay/downloadbill", fields, limits))

    def fundflow_v2(
        self,
        appid: str,
        bill_date: str | datetime.date,
        account_type: str = "Basic",
        tar_type: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | ClientTimeout | None = None,
        max_size: int = MAX_BILL_SIZE,
    ) -> Opening[BillStream]:
        """The APIv2 fund-flow bill of ``bill_date`` (``v2/pay/downloadfundflow``: signed
        HMAC-SHA256, over the client certificate) for ``account_type`` ``Basic``,
        ``Operation`` or ``Fees``, opened for reading as :meth:`trade_v2` is."""
        fields = {
            "appid": appid,
            "bill_date": _bill_date(bill_date).replace("-", ""),
            "account_type": account_type,
            "sign_type": "HMAC-SHA256",
            "tar_type": _tar_type(tar_type),
        }
        limits = _Limits(on_progress, timeout, _max_size(max_size))
        return Opening(lambda: self._download_v2("v2/pay/downloadfundflow", fields, limits))

    async def _download_v2(
        self, path: str, fields: dict[str, str | None], limits: _Limits
    ) -> BillStream:
        if self.fetch_v2 is None:  # pragma: no cover - the client always passes one
            raise WeChatPayError("APIv2 bills need a client that sends APIv2 calls")
        download = await self.fetch_v2(path, fields, limits.on_progress, limits.timeout)
        return BillStream(
            download, hash_value=None, gzip=fields["tar_type"] == "GZIP", max_size=limits.max_size
        )

    async def _apply(self, path: str, params: dict[str, str | None], limits: _Limits) -> BillStream:
        answer = (await self.query(path, params)).json()
        return await self._download(answer, params["tar_type"] == "GZIP", limits)

    async def _download(self, answer: Mapping[str, Any], gzip: bool, limits: _Limits) -> BillStream:
        if not isinstance(answer, Mapping):
            raise InvalidResponseError(
                f"a bill answer is a JSON object, not {type(answer).__name__}", status=200
            )
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
        download = await self.fetch(answer["download_url"], limits.on_progress, limits.timeout)
        return BillStream(
            download, hash_value=answer["hash_value"], gzip=gzip, max_size=limits.max_size
        )


@attrs.frozen
class _Limits:
    on_progress: ProgressCallback | None
    timeout: float | ClientTimeout | None
    max_size: int


def _max_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"max_size: expected a number of bytes > 0; got {value!r}")
    return value
