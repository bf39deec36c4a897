"""The fake server's files: media uploads and bills (PROTOCOL.md sections 7 and 8).

Uploads: the request signature covers the ``meta`` part of the multipart body
(:func:`signed_body`); the upload endpoints check the meta JSON, the file's SHA-256 against
it, the documented file types and size limits, and answer a ``media_id`` (or a
``media_url``). What they received is kept in :attr:`MediaState.uploads`.

Bills: ``GET /v3/bill/tradebill`` and ``/v3/bill/fundflowbill`` answer ``hash_type``,
``hash_value`` and a ``download_url`` whose token lives 30 seconds; ``GET
/v3/billdownload/file`` streams the file, unsigned, plain or gzip. The content is
deterministic (:class:`BillContent`), of :attr:`BillState.rows` rows or exactly
:attr:`BillState.size` bytes, generated as it is sent, so a gigabyte costs no memory.
:meth:`BillState.corrupt_next` spoils the next downloads (one byte differs from the hash).
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import hashlib
import json
import re
import secrets
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Literal

import attrs
from aiohttp import web

from .._wire import CHINA_TIME
from .messages import ApiFailure, RecordedRequest, Reply, param_error

__all__ = [
    "BILL_TOKEN_SECONDS",
    "BillContent",
    "BillState",
    "MediaState",
    "Part",
    "UploadedMedia",
    "parse_multipart",
    "signed_body",
]

Handler = Callable[[RecordedRequest, Mapping[str, str]], Reply | Awaitable[Reply]]

#: A bill's download_url is valid this long (PROTOCOL.md section 8).
BILL_TOKEN_SECONDS = 30.0
_MIB = 1024 * 1024


# -- multipart ----------------------------------------------------------------------------


@attrs.frozen
class Part:
    """One part of a ``multipart/form-data`` body, its content exactly as received."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_NAME = re.compile(r'(?:^|;)\s*name="([^"]*)"')
_FILENAME = re.compile(r';\s*filename="([^"]*)"')


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a ``multipart/form-data`` body into its parts; ``ValueError`` when malformed."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise ValueError("not multipart/form-data with a boundary")
    delimiter = b"\r\n--" + (match.group(1) or match.group(2)).encode()
    sections = (b"\r\n" + body).split(delimiter)
    if sections[0] != b"" or len(sections) < 2 or not sections[-1].startswith(b"--"):
        raise ValueError("the body does not open and close with the boundary")
    parts: list[Part] = []
    for section in sections[1:-1]:
        head, separator, data = section.partition(b"\r\n\r\n")
        if not separator or not head.startswith(b"\r\n"):
            raise ValueError("a part without headers")
        headers: dict[str, str] = {}
        for line in head[2:].split(b"\r\n"):
            name, colon, value = line.decode("utf-8").partition(":")
            if not colon:
                raise ValueError(f"a malformed part header: {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name_match, filename_match = _NAME.search(disposition), _FILENAME.search(disposition)
        parts.append(
            Part(
                name=name_match.group(1) if name_match else None,
                filename=filename_match.group(1) if filename_match else None,
                content_type=headers.get("content-type"),
                data=data,
            )
        )
    return parts


def _is_multipart(request: RecordedRequest) -> bool:
    return request.headers.get("Content-Type", "").lower().startswith("multipart/form-data")


def signed_body(request: RecordedRequest) -> bytes:
    """What the request signature covers: for a multipart upload the ``meta`` part (PROTOCOL.md
    section 7), else the body as received."""
    if _is_multipart(request):
        try:
            parts = parse_multipart(request.headers["Content-Type"], request.body)
        except ValueError:
            return request.body
        for part in parts:
            if part.name == "meta":
                return part.data
    return request.body


async def _stream(
    request: web.Request,
    chunks: Iterator[bytes],
    *,
    content_type: str,
    length: int | None,
    gzip: bool = False,
) -> web.StreamResponse:
    """Send ``chunks`` as an unsigned file answer, compressed on the way when ``gzip``."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Request-ID": f"{secrets.token_hex(16).upper()}-0",
            "Content-Type": content_type,
        },
    )
    if length is not None and not gzip:
        response.content_length = length
    await response.prepare(request)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None
    try:
        for chunk in chunks:
            data = compressor.compress(chunk) if compressor is not None else chunk
            if data:
                await response.write(data)
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading and went away: nothing left to send it
    return response


# -- media uploads ------------------------------------------------------------------------


@attrs.frozen
class UploadedMedia:
    """One accepted upload, as the fake server received it."""

    path: str
    #: The meta part's bytes exactly as received (and as signed).
    meta: bytes
    filename: str
    #: The file part's ``Content-Type``.
    content_type: str | None
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    media_id: str


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".png")
_VIDEO_SUFFIXES = tuple(
    "." + suffix
    for suffix in ["avi", "wmv", "mpeg", "mp4", "mov", "mkv", "flv", "f4v", "m4v", "rmvb"]
)
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")


@attrs.frozen
class _Endpoint:
    kind: Literal["image", "video"]
    limit: int
    limit_text: str
    answer: Literal["media_id", "media_url"]


#: The upload endpoints and their documented rules (OAPI, IM openapi/v3/**/upload.md).
UPLOAD_ENDPOINTS: dict[str, _Endpoint] = {
    "/v3/merchant/media/upload": _Endpoint("image", 2 * _MIB, "2M", "media_id"),
    "/v3/merchant/media/video_upload": _Endpoint("video", 5 * _MIB, "5M", "media_id"),
    "/v3/marketing/favor/media/image-upload": _Endpoint("image", 2 * _MIB, "2M", "media_url"),
    "/v3/merchant-service/images/upload": _Endpoint("image", 2 * _MIB, "2M", "media_id"),
}


def _meta_error(issue: str) -> ApiFailure:
    return param_error("/meta", issue)


@attrs.define
class MediaState:
    """Uploaded media, by ``media_id``."""

    uploads: list[UploadedMedia] = attrs.field(factory=list)

    def routes(self) -> list[tuple[str, str, Handler]]:
        table: list[tuple[str, str, Handler]] = [
            ("POST", path, self._uploader(path, endpoint))
            for path, endpoint in UPLOAD_ENDPOINTS.items()
        ]
        table.append(("GET", "/v3/merchant-service/images/{media_id}", self._image))
        return table

    def _uploader(self, path: str, endpoint: _Endpoint) -> Handler:
        def upload(request: RecordedRequest, _: Mapping[str, str]) -> Reply:
            return self.upload(path, endpoint, request)

        return upload

    def upload(self, path: str, endpoint: _Endpoint, request: RecordedRequest) -> Reply:
        if not _is_multipart(request):
            raise ApiFailure(400, "PARAM_ERROR", "参数错误: 请求主体应为multipart/form-data")
        try:
            parts = parse_multipart(request.headers["Content-Type"], request.body)
        except ValueError as error:
            raise ApiFailure(
                400, "PARAM_ERROR", f"参数错误: multipart主体格式错误 ({error})"
            ) from None
        if [part.name for part in parts] != ["meta", "file"]:
            raise ApiFailure(400, "PARAM_ERROR", "参数错误: 请求主体应依次包含meta和file两个部分")
        meta_part, file_part = parts
        try:
            meta = json.loads(meta_part.data)
        except (ValueError, UnicodeDecodeError):
            raise _meta_error("meta 应为JSON字符串") from None
        if not isinstance(meta, dict):
            raise _meta_error("meta 应为JSON对象")
        filename, sha256 = meta.get("filename"), meta.get("sha256")
        if not isinstance(filename, str) or not filename:
            raise param_error("/meta/filename", "filename 为必填参数")
        if not isinstance(sha256, str) or not sha256:
            raise param_error("/meta/sha256", "sha256 为必填参数")
        suffixes = _IMAGE_SUFFIXES if endpoint.kind == "image" else _VIDEO_SUFFIXES
        if not filename.lower().endswith(suffixes):
            allowed = "、".join(suffix[1:].upper() for suffix in suffixes)
            raise param_error("/meta/filename", f"文件名必须以{allowed}为后缀", value=filename)
        data = file_part.data
        if len(data) > endpoint.limit:
            raise param_error("/file", f"文件大小不能超过{endpoint.limit_text}")
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise param_error("/meta/sha256", "文件的sha256摘要与meta中的sha256值不一致")
        if endpoint.kind == "image" and not data.startswith(_IMAGE_MAGIC):
            raise param_error("/file", "图片文件格式错误，只支持JPG、BMP、PNG格式")
        media_id = secrets.token_urlsafe(48)
        self.uploads.append(
            UploadedMedia(
                path=path,
                meta=meta_part.data,
                filename=filename,
                content_type=file_part.content_type,
                data=data,
                media_id=media_id,
            )
        )
        if endpoint.answer == "media_url":
            return Reply(200, {"media_url": f"https://wxpaylogo.qpic.cn/wxpaylogo/{media_id}"})
        return Reply(200, {"media_id": media_id})

    def _image(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        for media in self.uploads:
            if media.media_id == path["media_id"] and media.path.startswith(
                "/v3/merchant-service/"
            ):

                async def send(
                    raw: web.Request, media: UploadedMedia = media
                ) -> web.StreamResponse:
                    return await _stream(
                        raw,
                        iter((media.data,)),
                        content_type=media.content_type or "application/octet-stream",
                        length=len(media.data),
                    )

                return Reply(200, stream=send)
        raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "图片不存在")


# -- bills --------------------------------------------------------------------------------

_APPID = "wxd678efh567hg6787"
_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
_PRODUCT = "Image形象店-深圳腾大-QQ公仔"
TRADE_HEADER = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
]
TRADE_SUMMARY = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
FUNDFLOW_HEADER = [
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
]
FUNDFLOW_SUMMARY = ["资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额"]
TRADE_BILL_TYPES = (
    "ALL",
    "SUCCESS",
    "REFUND",
    "RECHARGE_REFUND",
    "ALL_SPECIAL",
    "SUC_SPECIAL",
    "REF_SPECIAL",
)
ACCOUNT_TYPES = ("BASIC", "OPERATION", "FEES")

# Rows are generated a block at a time from one template, the block number written in
# place of the marker: a megabyte costs one bytes.replace.
_BLOCK_ROWS = 4096
_MARKER = "########"
_OPENING_BALANCE = 1_000_000  # cents


def _yuan(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _fee(units: int) -> str:
    """Fees are written to 0.00001 yuan."""
    sign = "-" if units < 0 else ""
    return f"{sign}{abs(units) // 100_000}.{abs(units) % 100_000:05d}"


def _amount(j: int) -> int:
    return 100 + (j * 37) % 900  # 1.00 to 9.99 yuan


class BillContent:
    """One deterministic bill: the same arguments always give the same bytes.

    ``size`` (bytes, exact) or ``rows`` says how big; the last row's free-text field
    (``商户数据包`` or ``备注``) is padded to reach the size exactly. A trade bill of type
    ``ALL`` has a refund every tenth row, ``SUCCESS`` none and ``REFUND`` only refunds; a
    fund-flow bill alternates income and expense.
    """

    def __init__(
        self,
        kind: Literal["trade", "fundflow"],
        bill_date: str,
        bill_type: str,
        mchid: str,
        *,
        size: int | None = None,
        rows: int = 10,
    ) -> None:
        self.kind = kind
        self.bill_date = bill_date
        self.bill_type = bill_type
        self._mchid = mchid
        self._compact = bill_date.replace("-", "")
        header, self._summary_header = (
            (TRADE_HEADER, TRADE_SUMMARY)
            if kind == "trade"
            else (FUNDFLOW_HEADER, FUNDFLOW_SUMMARY)
        )
        self._head = ("\ufeff" + ",".join(header) + "\r\n").encode()
        template_rows = [self._row(j, _MARKER, 0).encode() for j in range(_BLOCK_ROWS)]
        self._template = b"".join(template_rows)
        self._offsets = [0]
        for row in template_rows:
            self._offsets.append(self._offsets[-1] + len(row))
        # Prefix sums of the per-row figures the summary adds up.
        self._prefix: list[tuple[int, ...]] = [(0, 0, 0, 0)]
        for j in range(_BLOCK_ROWS):
            self._prefix.append(
                tuple(a + b for a, b in zip(self._prefix[-1], self._figures(j), strict=True))
            )
        self._sha1: str | None = None
        if size is None:
            if rows < 0:
                raise ValueError("rows cannot be negative")
            self.rows, self._pad = rows, 0
        else:
            smallest = self._total(1)
            if size < smallest:
                raise ValueError(f"a {kind} bill is at least {smallest} bytes")
            low, high = 1, size  # the largest row count whose bill fits in size
            while low < high:
                middle = (low + high + 1) // 2
                if self._total(middle) <= size:
                    low = middle
                else:
                    high = middle - 1
            self.rows, self._pad = low, size - self._total(low)
        #: The bill's length in bytes (uncompressed).
        self.size = self._total(self.rows) + self._pad

    # -- rows -------------------------------------------------------------------------------

    def _is_refund(self, j: int) -> bool:
        if self.kind == "fundflow":
            return j % 2 == 1  # every income is followed by an expense of the same amount
        if self.bill_type in ("SUCCESS", "SUC_SPECIAL"):
            return False
        if self.bill_type in ("REFUND", "RECHARGE_REFUND", "REF_SPECIAL"):
            return True
        return j % 10 == 9

    def _figures(self, j: int) -> tuple[int, int, int, int]:
        """(successes or incomes, their cents, refunds or expenses, their cents)."""
        refund = self._is_refund(j)
        cents = _amount(j - j % 2) if self.kind == "fundflow" else _amount(j)
        return (0, 0, 1, cents) if refund else (1, cents, 0, 0)

    def _row(self, j: int, block: str, pad: int) -> str:
        seconds = j * 86400 // _BLOCK_ROWS
        when = f"{self.bill_date} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        serial = f"{block}{j:05d}"
        refund = self._is_refund(j)
        filler = "x" * pad
        if self.kind == "fundflow":
            cents = _amount(j - j % 2)
            balance = _OPENING_BALANCE + (0 if refund else cents)
            fields = [
                when,
                f"4200{self._compact}{serial}000",
                f"{self._mchid}{self._compact}{serial}",
                "退款" if refund else "交易",
                "退款" if refund else "交易",
                "支出" if refund else "收入",
                _yuan(cents),
                _yuan(balance),
                f"{self._mchid}API" if refund else "system",
                filler,
                f"{'R' if refund else 'T'}{self._compact}{serial}",
            ]
        else:
            cents = _amount(j)
            fee = cents * 6  # 0.60%, in 0.00001 yuan
            common = [
                when,
                _APPID,
                self._mchid,
                "0",
                "",
                f"4200{self._compact}{serial}000",
                f"T{self._compact}{serial}",
                _OPENID,
                "NATIVE",
                "REFUND" if refund else "SUCCESS",
                "OTHERS",
                "CNY",
            ]
            if refund:
                fields = [
                    *common,
                    "0.00",
                    "0.00",
                    f"5030{self._compact}{serial}000",
                    f"R{self._compact}{serial}",
                    _yuan(cents),
                    "0.00",
                    "ORIGINAL",
                    "SUCCESS",
                    _PRODUCT,
                    filler,
                    _fee(-fee),
                    "0.60%",
                    "0.00",
                    _yuan(cents),
                    "",
                ]
            else:
                fields = [
                    *common,
                    _yuan(cents),
                    "0.00",
                    "0",
                    "0",
                    "0.00",
                    "0.00",
                    "",
                    "",
                    _PRODUCT,
                    filler,
                    _fee(fee),
                    "0.60%",
                    _yuan(cents),
                    "0.00",
                    "",
                ]
        return "`" + ",`".join(fields) + "\r\n"

    # -- sizes and totals -------------------------------------------------------------------

    def _sums(self, rows: int) -> tuple[int, ...]:
        blocks, rest = divmod(rows, _BLOCK_ROWS)
        whole, part = self._prefix[_BLOCK_ROWS], self._prefix[rest]
        return tuple(blocks * a + b for a, b in zip(whole, part, strict=True))

    def _summary(self, rows: int) -> bytes:
        successes, success_cents, refunds, refund_cents = self._sums(rows)
        if self.kind == "fundflow":
            values = [
                str(rows),
                str(successes),
                _yuan(success_cents),
                str(refunds),
                _yuan(refund_cents),
            ]
        else:
            values = [
                str(rows),
                _yuan(success_cents),
                _yuan(refund_cents),
                "0.00",
                _fee(6 * (success_cents - refund_cents)),
                _yuan(success_cents),
                _yuan(refund_cents),
            ]
        return (",".join(self._summary_header) + "\r\n`" + ",`".join(values) + "\r\n").encode()

    def _rows_length(self, rows: int) -> int:
        blocks, rest = divmod(rows, _BLOCK_ROWS)
        return blocks * self._offsets[_BLOCK_ROWS] + self._offsets[rest]

    def _total(self, rows: int) -> int:
        return len(self._head) + self._rows_length(rows) + len(self._summary(rows))

    # -- content ----------------------------------------------------------------------------

    def chunks(self, *, corrupt: bool = False) -> Iterator[bytes]:
        """The bill, about a megabyte at a time; ``corrupt`` changes one digit of the summary."""
        yield self._head
        if self.rows:
            last_block, last = divmod(self.rows - 1, _BLOCK_ROWS)
            marker = _MARKER.encode()
            for block in range(last_block):
                yield self._template.replace(marker, b"%08d" % block)
            if last:
                yield self._template[: self._offsets[last]].replace(marker, b"%08d" % last_block)
            yield self._row(last, f"{last_block:08d}", self._pad).encode()
        summary = self._summary(self.rows)
        if corrupt:
            at = summary.index(b"\r\n`") + 3  # the first digit of the row count
            summary = (
                summary[:at]
                + str((int(summary[at : at + 1]) + 1) % 10).encode()
                + summary[at + 1 :]
            )
        yield summary

    def content(self) -> bytes:
        """The whole bill in memory (small bills, in tests)."""
        return b"".join(self.chunks())

    @property
    def sha1(self) -> str:
        """SHA-1 of the bill (the ``hash_value``), computed once."""
        if self._sha1 is None:
            digest = hashlib.sha1(usedforsecurity=False)
            for chunk in self.chunks():
                digest.update(chunk)
            self._sha1 = digest.hexdigest()
        return self._sha1

    def gzipped(self) -> bytes:
        """The bill as the fake sends it with ``tar_type=GZIP`` (small bills, in tests)."""
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        return b"".join(compressor.compress(chunk) for chunk in self.chunks()) + compressor.flush()


@attrs.define
class _Token:
    content: BillContent
    gzip: bool
    expires: float


def _months_before(day: datetime.date, months: int) -> datetime.date:
    years, month = divmod(day.month - 1 - months, 12)
    year = day.year + years
    return datetime.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


class BillState:
    """Bills on demand. Set :attr:`size` (bytes) or :attr:`rows` before applying; tokens
    expire :data:`BILL_TOKEN_SECONDS` after the apply, on the server's clock."""

    def __init__(self, *, mchid: str, clock: Callable[[], float], url: Callable[[], str]) -> None:
        self._mchid = mchid
        self._clock = clock
        self._url = url
        #: Exact size in bytes of the bills applied for from now on (``None``: :attr:`rows`).
        self.size: int | None = None
        #: Detail rows of the bills applied for from now on, when :attr:`size` is ``None``.
        self.rows = 10
        #: Issued download tokens.
        self.tokens: dict[str, _Token] = {}
        #: How many downloads were served.
        self.downloads = 0
        self._corrupt = 0
        self._contents: dict[tuple[str, str, str, int | None, int], BillContent] = {}

    def corrupt_next(self, times: int = 1) -> None:
        """Serve the next ``times`` bill downloads with one byte changed, so that their SHA-1
        no longer matches the ``hash_value`` the apply answered."""
        if times < 1:
            raise ValueError("times must be at least 1")
        self._corrupt += times

    def content(
        self, kind: Literal["trade", "fundflow"], bill_date: str, bill_type: str = "ALL"
    ) -> BillContent:
        """The bill the next apply for these arguments answers (``bill_type`` is the account
        type for a fund-flow bill)."""
        key = (kind, bill_date, bill_type, self.size, self.rows)
        content = self._contents.get(key)
        if content is None:
            if len(self._contents) >= 16:
                self._contents.pop(next(iter(self._contents)))
            content = BillContent(
                kind, bill_date, bill_type, self._mchid, size=self.size, rows=self.rows
            )
            self._contents[key] = content
        return content

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v3/bill/tradebill", self._applier("trade")),
            ("GET", "/v3/bill/fundflowbill", self._applier("fundflow")),
            ("GET", "/v3/billdownload/file", self._download),
        ]

    def _check_date(self, value: str | None) -> str:
        if not value:
            raise param_error("bill_date", "bill_date 为必填参数", location="query")
        try:
            day = datetime.date.fromisoformat(value)
        except ValueError:
            day = None
        if day is None or len(value) != 10:
            raise param_error(
                "bill_date", "bill_date 格式应为YYYY-MM-DD", location="query", value=value
            )
        now = datetime.datetime.fromtimestamp(self._clock(), CHINA_TIME)
        if day >= now.date() or day < _months_before(now.date(), 3):
            raise ApiFailure(400, "NO_STATEMENT_EXIST", "账单文件不存在（仅可下载三个月内的账单）")
        if day == now.date() - datetime.timedelta(days=1) and now.hour < 9:
            raise ApiFailure(400, "STATEMENT_CREATING", "账单生成中，请在次日上午10点以后再获取")
        return value

    def _applier(self, kind: Literal["trade", "fundflow"]) -> Handler:
        async def apply(request: RecordedRequest, _: Mapping[str, str]) -> Reply:
            query = request.query
            bill_date = self._check_date(query.get("bill_date"))
            if kind == "trade":
                bill_type = query.get("bill_type", "ALL")
                allowed: tuple[str, ...] = TRADE_BILL_TYPES
                field = "bill_type"
            else:
                bill_type = query.get("account_type", "BASIC")
                allowed, field = ACCOUNT_TYPES, "account_type"
            if bill_type not in allowed:
                raise param_error(
                    field,
                    f"{field} 应为 {'|'.join(allowed)} 之一",
                    location="query",
                    value=bill_type,
                )
            tar_type = query.get("tar_type")
            if tar_type not in (None, "GZIP"):
                raise param_error(
                    "tar_type", "tar_type 只支持GZIP", location="query", value=tar_type
                )
            try:
                content = self.content(kind, bill_date, bill_type)
            except ValueError as error:
                raise ApiFailure(400, "PARAM_ERROR", f"参数错误: {error}") from None
            if content.size > 16 * _MIB:  # hashing a big bill must not stall the server
                hash_value = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: content.sha1
                )
            else:
                hash_value = content.sha1
            token = secrets.token_urlsafe(36)
            gzip = tar_type == "GZIP"
            self.tokens[token] = _Token(content, gzip, self._clock() + BILL_TOKEN_SECONDS)
            url = f"{self._url()}/v3/billdownload/file?token={token}"
            return Reply(
                200,
                {
                    "hash_type": "SHA1",
                    "hash_value": hash_value,
                    "download_url": url + ("&tartype=gzip" if gzip else ""),
                },
            )

        return apply

    def _download(self, request: RecordedRequest, _: Mapping[str, str]) -> Reply:
        token = self.tokens.get(request.query.get("token", ""))
        if token is None:
            raise ApiFailure(400, "INVALID_REQUEST", "下载链接无效，请重新申请账单")
        if self._clock() > token.expires:
            raise ApiFailure(400, "INVALID_REQUEST", "下载链接已过期（有效期30秒），请重新申请账单")
        corrupt = self._corrupt > 0
        if corrupt:
            self._corrupt -= 1
        self.downloads += 1
        content = token.content

        async def send(raw: web.Request) -> web.StreamResponse:
            return await _stream(
                raw,
                content.chunks(corrupt=corrupt),
                content_type="application/octet-stream",
                length=content.size,
                gzip=token.gzip,
            )

        return Reply(200, stream=send)
