"""Files end to end against the fake server: signed multipart uploads from every kind of
source, streamed downloads, bills (plain and gzip, verified by SHA-1), the bill parser and
the ``bill download`` command line."""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain import (
    ApiError,
    BillParser,
    HashMismatchError,
    UntrustedHostError,
    WeChatPay,
    parse_bill,
)
from wechatpay_chain.signing import request_message
from wechatpay_chain.testing import FakeWeChatPay, RecordedRequest, Reply
from wechatpay_chain.testing.files import BILL_TOKEN_SECONDS, parse_multipart

CHINA = datetime.timezone(datetime.timedelta(hours=8))
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff\xe0"


def image(size: int, magic: bytes = PNG) -> bytes:
    """A deterministic 'image' of ``size`` bytes (the fake checks only the magic number)."""
    body = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    return (magic + body)[:size]


def bill_day(days_ago: int = 2) -> str:
    """A date whose bill exists on the fake server at any hour (yesterday's is only ready
    after 09:00 China time)."""
    return (datetime.datetime.now(CHINA).date() - datetime.timedelta(days=days_ago)).isoformat()


def verify_authorization(server: FakeWeChatPay, request: RecordedRequest, body: bytes) -> None:
    """Check the request's signature ourselves, over ``body``."""
    parameters = dict(re.findall(r'(\w+)="([^"]*)"', request.headers["Authorization"]))
    message = request_message(
        request.method,
        request.target,
        int(parameters["timestamp"]),
        parameters["nonce_str"],
        body,
    )
    public_key = server.merchant.public_key
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.b64decode(parameters["signature"]), message, padding.PKCS1v15(), hashes.SHA256()
    )


async def listing(directory: Path) -> list[str]:
    return sorted(await asyncio.to_thread(os.listdir, directory))


def meta_json(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


# -- uploads ------------------------------------------------------------------------------------


async def test_upload_of_bytes_signs_the_meta_part_sent_byte_for_byte(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(10_000)
    response = await wechatpay_client.v3.merchant.media.upload.post(file=data, filename="商品.png")
    assert response.status == 200
    media = wechatpay_server.media.uploads[-1]
    assert response.json() == {"media_id": media.media_id}
    expected_meta = meta_json(filename="商品.png", sha256=hashlib.sha256(data).hexdigest())
    assert media.meta == expected_meta
    assert media.data == data
    assert media.content_type == "image/png"  # guessed from the name
    request = wechatpay_server.requests[-1]
    assert request.target == "/v3/merchant/media/upload"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request.headers["Accept"] == "application/json"
    parts = parse_multipart(request.headers["Content-Type"], request.body)
    assert [part.name for part in parts] == ["meta", "file"]
    assert parts[0].data == expected_meta
    assert parts[0].content_type == "application/json"
    assert parts[1].filename == "商品.png"
    # The signature covers the meta JSON, not the multipart body.
    verify_authorization(wechatpay_server, request, expected_meta)
    assert int(request.headers["Content-Length"]) == len(request.body)


async def test_upload_from_a_path_names_the_file_after_it(
    tmp_path: Path, wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(300_000, JPEG)
    path = tmp_path / "shopfront.jpg"
    path.write_bytes(data)
    await wechatpay_client.v3.merchant.media.upload.post(file=path)
    await wechatpay_client.chain("v3/merchant-service/images/upload").post(file=str(path))
    first, second = wechatpay_server.media.uploads
    for media in (first, second):
        assert media.data == data
        assert media.filename == "shopfront.jpg"
        assert media.content_type == "image/jpeg"
        assert json.loads(media.meta)["sha256"] == hashlib.sha256(data).hexdigest()


async def test_upload_from_file_objects_starts_where_they_stand_and_leaves_them_open(
    tmp_path: Path, wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(700_000)
    path = tmp_path / "with-prefix.bin"
    path.write_bytes(b"PREFIX" + data)
    with path.open("rb") as file:
        file.seek(6)
        await wechatpay_client.v3.merchant.media.upload.post(
            file=file, filename="a.png", content_type="image/png"
        )
        assert not file.closed
    buffer = io.BytesIO(data)
    await wechatpay_client.v3.merchant.media.upload.post(file=buffer, filename="b.png")
    assert [media.data for media in wechatpay_server.media.uploads] == [data, data]
    assert [media.filename for media in wechatpay_server.media.uploads] == ["a.png", "b.png"]


class _Pipe(io.RawIOBase):
    """A binary file that cannot seek, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 50_000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


async def test_upload_from_an_unseekable_file_is_spooled(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(400_000)
    await wechatpay_client.v3.merchant.media.upload.post(file=_Pipe(data), filename="pipe.png")
    assert wechatpay_server.media.uploads[-1].data == data


async def test_upload_from_an_async_iterator_is_spooled_and_sent_exactly(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(3_000_000, b"")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 65_536):
            await asyncio.sleep(0)
            yield data[start : start + 65_536]

    await wechatpay_client.v3.merchant.media.video_upload.post(file=chunks(), filename="clip.mp4")
    media = wechatpay_server.media.uploads[-1]
    assert media.data == data
    assert media.content_type == "video/mp4"
    assert media.meta == meta_json(filename="clip.mp4", sha256=hashlib.sha256(data).hexdigest())


async def test_a_large_async_upload_spools_to_disk_and_arrives_whole(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    # Bigger than the in-memory spool (8 MiB), sent to a route of the test's own, since
    # WeChat Pay's media endpoints stop at 5 MB.
    received: list[bytes] = []

    def sink(request: RecordedRequest, _: object) -> Reply:
        meta, file = parse_multipart(request.headers["Content-Type"], request.body)
        assert json.loads(meta.data)["sha256"] == hashlib.sha256(file.data).hexdigest()
        received.append(file.data)
        return Reply(200, {"media_id": "big"})

    wechatpay_server.route("POST", "/v3/test/big-upload", sink)
    block = image(1 << 20, b"")

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(9):
            yield bytes([index]) + block[1:]

    response = await wechatpay_client.chain("v3/test/big-upload").post(
        file=chunks(), filename="big.bin", timeout=30
    )
    assert response.json() == {"media_id": "big"}
    assert received == [b"".join([bytes([index]) + block[1:] for index in range(9)])]


async def test_extra_meta_keys_merge_into_filename_and_sha256(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(5000)
    await wechatpay_client.v3.merchant.media.upload.post(
        file=data, filename="x.png", meta={"bank_type": "CMB", "备注": "门店"}
    )
    assert wechatpay_server.media.uploads[-1].meta == meta_json(
        filename="x.png", sha256=hashlib.sha256(data).hexdigest(), bank_type="CMB", 备注="门店"
    )


async def test_a_filename_with_quotes_is_escaped_in_the_part_header_only(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await wechatpay_client.v3.merchant.media.upload.post(file=image(100), filename='门店"1".png')
    request = wechatpay_server.requests[-1]
    _, file = parse_multipart(request.headers["Content-Type"], request.body)
    assert file.filename == "门店%221%22.png"
    assert json.loads(wechatpay_server.media.uploads[-1].meta)["filename"] == '门店"1".png'


async def test_favor_image_upload_answers_a_media_url(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    response = await wechatpay_client.v3.marketing.favor.media.imageUpload.post(
        file=image(2000), filename="coupon.png"
    )
    assert response.json()["media_url"].startswith("https://")


async def test_a_sha256_that_does_not_match_the_file_is_the_documented_400(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.merchant.media.upload.post(
            file=image(1000), filename="a.png", meta={"sha256": "0" * 64}
        )
    assert caught.value.status == 400
    assert caught.value.code == "PARAM_ERROR"
    assert caught.value.detail["field"] == "/meta/sha256"
    assert not wechatpay_server.media.uploads


@pytest.mark.parametrize(
    "case",
    [
        ("v3/merchant/media/upload", "big.png", image(2 * 1024 * 1024 + 1), "/file"),
        ("v3/merchant/media/upload", "anim.gif", image(1000), "/meta/filename"),
        ("v3/merchant/media/upload", "fake.png", b"GIF89a" + bytes(100), "/file"),
        ("v3/merchant/media/video_upload", "clip.png", image(1000), "/meta/filename"),
        ("v3/merchant/media/video_upload", "long.mp4", bytes(5 * 1024 * 1024 + 1), "/file"),
    ],
)
async def test_documented_size_limits_and_file_types_are_enforced(
    wechatpay_client: WeChatPay, case: tuple[str, str, bytes, str]
) -> None:
    path, filename, data, field = case
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.chain(path).post(file=data, filename=filename)
    assert (caught.value.status, caught.value.code) == (400, "PARAM_ERROR")
    assert caught.value.detail["field"] == field


async def test_the_limits_themselves_are_accepted(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await wechatpay_client.v3.merchant.media.upload.post(
        file=image(2 * 1024 * 1024), filename="max.PNG"
    )
    await wechatpay_client.v3.merchant.media.video_upload.post(
        file=bytes(5 * 1024 * 1024), filename="max.MP4"
    )
    assert len(wechatpay_server.media.uploads) == 2


async def test_bad_upload_calls_fail_before_anything_is_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    upload = wechatpay_client.v3.merchant.media.upload
    with pytest.raises(TypeError, match="not both"):
        await upload.post(file=image(10), filename="a.png", json={"a": 1})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not both"):
        await upload.post(file=image(10), filename="a.png", data=b"x")
    with pytest.raises(TypeError, match="filename= is required"):
        await upload.post(file=image(10))
    with pytest.raises(TypeError, match="go with file="):
        await upload.post(json={"a": 1}, meta={"x": 1})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="binary file"):
        await upload.post(file=io.StringIO("text"), filename="a.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="file= takes"):
        await upload.post(file=12345, filename="a.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CR, LF"):
        await upload.post(file=image(10), filename="a.png\r\nX-Evil: 1")
    assert wechatpay_server.requests == []


async def test_upload_progress_counts_the_file_bytes(
    tmp_path: Path, wechatpay_client: WeChatPay
) -> None:
    data = image(1_500_000)
    path = tmp_path / "p.png"
    path.write_bytes(data)
    calls: list[tuple[int, int | None]] = []
    await wechatpay_client.v3.merchant.media.upload.post(
        file=path, on_progress=lambda done, total: calls.append((done, total))
    )
    assert len(calls) >= 3
    assert calls[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in calls)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


async def test_an_upload_is_resent_whole_after_a_retryable_answer(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    from wechatpay_chain.testing import Fault

    wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), path="/v3/merchant/media/upload")
    data = image(600_000)
    await wechatpay_client.v3.merchant.media.upload.post(
        file=io.BytesIO(data), filename="a.png", retry="idempotent"
    )
    assert [request.path for request in wechatpay_server.requests] == [
        "/v3/merchant/media/upload"
    ] * 2
    for request in wechatpay_server.requests:  # each attempt carried the whole file
        meta, file = parse_multipart(request.headers["Content-Type"], request.body)
        assert file.data == data
        verify_authorization(wechatpay_server, request, meta.data)
    assert wechatpay_server.media.uploads[-1].data == data


# -- downloads ----------------------------------------------------------------------------------


async def test_download_of_an_unsigned_image_streams_it_back(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    data = image(250_000, JPEG)
    answer = await wechatpay_client.chain("v3/merchant-service/images/upload").post(
        file=data, filename="evidence.jpg"
    )
    media_id = answer.json()["media_id"]
    async with wechatpay_client.download(f"/v3/merchant-service/images/{media_id}") as stream:
        assert stream.status == 200
        assert "Wechatpay-Signature" not in stream.headers  # files are not signed
        assert stream.content_length == len(data)
        received = await stream.read()
    assert received == data
    request = wechatpay_server.requests[-1]
    assert request.method == "GET"
    verify_authorization(wechatpay_server, request, b"")  # the request itself is signed


async def test_a_trade_bill_streams_verified_and_matches_the_servers_file(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    day = bill_day()
    wechatpay_server.bills.rows = 300
    expected = wechatpay_server.bills.content("trade", day).content()
    bill = await wechatpay_client.bills.trade(day)
    chunks = [chunk async for chunk in bill]
    assert b"".join(chunks) == expected
    assert bill.sha1 == hashlib.sha1(expected, usedforsecurity=False).hexdigest()
    assert bill.sha1 == bill.hash_value
    assert bill.size == len(expected)
    apply, download = wechatpay_server.requests
    assert apply.target == f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL"
    assert download.path == "/v3/billdownload/file"
    assert "Authorization" in download.headers


async def test_a_bill_saved_to_a_file_is_put_in_place_whole(
    tmp_path: Path, wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    day = bill_day()
    wechatpay_server.bills.size = 3_000_001  # several write batches, an odd size
    expected = wechatpay_server.bills.content("fundflow", day, "OPERATION").content()
    assert len(expected) == 3_000_001
    target = tmp_path / "fundflow.csv"
    async with wechatpay_client.bills.fundflow(day, "OPERATION") as bill:
        assert await bill.save(target) == target
    assert await asyncio.to_thread(target.read_bytes) == expected
    assert await listing(tmp_path) == ["fundflow.csv"]
    assert wechatpay_server.requests[0].target.endswith("account_type=OPERATION")


async def test_a_gzip_bill_is_gunzipped_and_hashed_after_decompression(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    day = bill_day()
    wechatpay_server.bills.size = 2_000_000
    content = wechatpay_server.bills.content("trade", day, "SUCCESS")
    progress: list[tuple[int, int | None]] = []
    bill = await wechatpay_client.bills.trade(
        day, "SUCCESS", "GZIP", on_progress=lambda done, total: progress.append((done, total))
    )
    assert await bill.read() == content.content()
    assert bill.sha1 == content.sha1
    received = bill.download.bytes_received
    assert received == len(content.gzipped()) < content.size
    assert progress[-1] == (received, None)  # a compressed stream has no announced length
    assert "tartype=gzip" in wechatpay_server.requests[-1].target


async def test_a_corrupted_bill_raises_and_leaves_no_file_behind(
    tmp_path: Path, wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    day = bill_day()
    wechatpay_server.bills.size = 1_500_000
    target = tmp_path / "trade.csv"
    for tar_type in (None, "GZIP"):
        wechatpay_server.bills.corrupt_next()
        with pytest.raises(HashMismatchError, match="SHA-1"):
            async with wechatpay_client.bills.trade(day, tar_type=tar_type) as bill:
                await bill.save(target)
        assert await listing(tmp_path) == []
    # An older file of the same name is left as it was.
    await asyncio.to_thread(target.write_bytes, b"yesterday's good copy")
    wechatpay_server.bills.corrupt_next()
    with pytest.raises(HashMismatchError):
        await (await wechatpay_client.bills.trade(day)).save(target)
    assert await listing(tmp_path) == ["trade.csv"]
    assert await asyncio.to_thread(target.read_bytes) == b"yesterday's good copy"
    # The next download is good again.
    await (await wechatpay_client.bills.trade(day)).save(target)
    assert target.read_bytes() == wechatpay_server.bills.content("trade", day).content()


async def test_broken_gzip_is_a_hash_mismatch(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    raw = b"\x1f\x8b\x08\x00" + bytes(100)

    def apply(_: RecordedRequest, __: object) -> Reply:
        return Reply(
            200,
            {
                "hash_type": "SHA1",
                "hash_value": "0" * 40,
                "download_url": wechatpay_server.url + "/v3/billdownload/file?token=broken",
            },
        )

    async def send(request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=raw)

    wechatpay_server.route("GET", "/v3/bill/tradebill", apply)
    wechatpay_server.route("GET", "/v3/billdownload/file", lambda _, __: Reply(stream=send))
    bill = await wechatpay_client.bills.trade(bill_day(), tar_type="GZIP")
    with pytest.raises(HashMismatchError, match="gzip"):
        await bill.read()


class _Listener:
    """A loopback port that records whether anyone connected to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.setblocking(False)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def connected(self) -> bool:
        try:
            connection, _ = self.socket.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True


async def test_a_download_url_on_another_host_raises_before_anything_is_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    listener = _Listener()
    try:
        foreign = listener.url + "/v3/billdownload/file?token=stolen"

        def apply(_: RecordedRequest, __: object) -> Reply:
            return Reply(
                200, {"hash_type": "SHA1", "hash_value": "0" * 40, "download_url": foreign}
            )

        wechatpay_server.route("GET", "/v3/bill/tradebill", apply)
        with pytest.raises(UntrustedHostError, match="configured WeChat Pay hosts"):
            await wechatpay_client.bills.trade(bill_day())
        for url in (
            foreign,
            "https://evil.example/v3/billdownload/file?token=x",
            wechatpay_server.url.replace("http://", "https://") + "/v3/billdownload/file",
            wechatpay_server.url.replace("127.0.0.1", "user:pw@127.0.0.1")
            + "/v3/billdownload/file",
        ):
            with pytest.raises(UntrustedHostError):
                await wechatpay_client.download(url)
        await asyncio.sleep(0.05)
        assert not listener.connected()
        assert [request.path for request in wechatpay_server.requests] == ["/v3/bill/tradebill"]
    finally:
        listener.socket.close()


async def test_the_failover_host_is_trusted_too(wechatpay_server: FakeWeChatPay) -> None:
    backup = wechatpay_server.url.replace("127.0.0.1", "localhost")
    async with wechatpay_server.client(failover_url=backup) as wxpay:
        # The backup host's URL is sent (the fake refuses the made-up token)...
        with pytest.raises(ApiError):
            await wxpay.download(backup + "/v3/billdownload/file?token=t")
        assert [r.path for r in wechatpay_server.requests] == ["/v3/billdownload/file"]
        # ...a third host's is not.
        with pytest.raises(UntrustedHostError):
            await wxpay.download("http://localhost:2/v3/billdownload/file?token=t")
    assert len(wechatpay_server.requests) == 1


async def test_a_download_token_expires_after_30_seconds(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    now = [time.time()]
    merchant_key, wechatpay_key = wechatpay_keys
    async with (
        FakeWeChatPay(
            merchant_private_key=merchant_key,
            wechatpay_private_key=wechatpay_key,
            clock=lambda: now[0],
        ) as server,
        server.client() as wxpay,
    ):
        day = bill_day()
        answers = [
            (await wxpay.v3.bill.tradebill.get(params={"bill_date": day})).json() for _ in range(2)
        ]
        now[0] += BILL_TOKEN_SECONDS - 1
        bill = await wxpay.bills.download(answers[0])  # still valid
        assert bill.sha1 is None
        await bill.read()
        assert bill.sha1 == answers[0]["hash_value"]
        now[0] += 2
        with pytest.raises(ApiError) as caught:
            await wxpay.bills.download(answers[1])
        assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
        with pytest.raises(ApiError):
            await wxpay.download("/v3/billdownload/file?token=never-issued")


async def test_bill_dates_are_checked(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    for bad in ("2026-5-1", "yesterday", "2026-02-30"):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            wechatpay_client.bills.trade(bad)
    with pytest.raises(ValueError, match="GZIP"):
        wechatpay_client.bills.trade(bill_day(), tar_type="ZIP")
    assert wechatpay_server.requests == []
    today = datetime.datetime.now(CHINA).date()
    for day in (today, today - datetime.timedelta(days=120)):
        with pytest.raises(ApiError) as caught:
            await wechatpay_client.bills.trade(day)
        assert caught.value.code == "NO_STATEMENT_EXIST"


async def test_download_progress_reports_bytes_against_the_length(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.bills.size = 1_234_567
    calls: list[tuple[int, int | None]] = []
    bill = await wechatpay_client.bills.trade(
        bill_day(), on_progress=lambda done, total: calls.append((done, total))
    )
    await bill.read()
    assert calls[-1] == (1_234_567, 1_234_567)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


async def test_stopping_early_closes_the_connection(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.bills.size = 8_000_000
    async with wechatpay_client.bills.trade(bill_day()) as bill:
        async for _ in bill:
            break
    assert bill.sha1 is None
    with pytest.raises(RuntimeError, match="read once"):
        await bill.read()
    # The client is still perfectly usable.
    wechatpay_server.bills.size = None
    assert (await (await wechatpay_client.bills.trade(bill_day())).read()).startswith(
        b"\xef\xbb\xbf"
    )


# -- parsing ------------------------------------------------------------------------------------


def _cents(value: str) -> int:
    whole, _, fraction = value.lstrip("-").partition(".")
    cents = int(whole) * 100 + int(fraction[:2])
    return -cents if value.startswith("-") else cents


async def test_a_trade_bill_parses_into_rows_and_a_summary_that_adds_up(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.bills.rows = 5000  # more than one generation block
    bill = await wechatpay_client.bills.trade(bill_day())
    parsed = parse_bill(await bill.read())
    assert parsed.header[0] == "交易时间"  # the BOM is gone
    assert len(parsed.header) == 27
    assert len(parsed.rows) == 5000
    first = parsed.rows[0]
    assert first["商户号"] == wechatpay_server.merchant.mchid
    assert first["交易状态"] == "SUCCESS"
    assert first["商品名称"] == "Image形象店-深圳腾大-QQ公仔"
    assert not any(value.startswith("`") for value in first.values())
    assert len({row["微信订单号"] for row in parsed.rows}) == 5000
    successes = [row for row in parsed.rows if row["交易状态"] == "SUCCESS"]
    refunds = [row for row in parsed.rows if row["交易状态"] == "REFUND"]
    assert 400 < len(refunds) < 600  # about one in ten
    summary = parsed.summary
    assert summary["总交易单数"] == "5000"
    assert _cents(summary["应结订单总金额"]) == sum(
        _cents(row["应结订单金额"]) for row in successes
    )
    assert _cents(summary["退款总金额"]) == sum(_cents(row["退款金额"]) for row in refunds)


async def test_bill_rows_stream_with_the_summary_at_the_end(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.bills.rows = 41
    async with wechatpay_client.bills.fundflow(bill_day(), tar_type="GZIP") as bill:
        rows = [row async for row in bill.rows()]
    assert bill.sha1 == bill.hash_value
    assert len(rows) == 41
    assert bill.summary is not None
    assert bill.summary["资金流水总笔数"] == "41"
    assert int(bill.summary["收入笔数"]) == sum(row["收支类型"] == "收入" for row in rows) == 21
    assert _cents(bill.summary["支出金额"]) == sum(
        _cents(row["收支金额(元)"]) for row in rows if row["收支类型"] == "支出"
    )


def test_the_parser_takes_lf_or_crlf_commas_in_fields_and_any_chunking() -> None:
    text = (
        "\ufeff交易时间,商品名称,订单金额\n"
        "`2026-05-01 10:00:00,`T恤, 白色,`9.90\r\n"
        "`2026-05-01 11:00:00,`帽子,`19.00\n"
        "\n"
        "总交易单数,订单总金额\n"
        "`2,`28.90\n"
    ).encode()
    parsed = parse_bill(text)
    assert parsed.rows == (
        {"交易时间": "2026-05-01 10:00:00", "商品名称": "T恤, 白色", "订单金额": "9.90"},
        {"交易时间": "2026-05-01 11:00:00", "商品名称": "帽子", "订单金额": "19.00"},
    )
    assert parsed.summary == {"总交易单数": "2", "订单总金额": "28.90"}
    parser = BillParser()
    rows = [row for index in range(len(text)) for row in parser.feed(text[index : index + 1])]
    rows += parser.close()
    assert tuple(rows) == parsed.rows
    assert parser.summary == parsed.summary
    with pytest.raises(ValueError, match="3 fields"):
        parse_bill("a,b\n`1,`2,`3\n")
    with pytest.raises(ValueError, match="empty"):
        parse_bill(b"")


async def test_a_gzip_bomb_bill_stops_at_max_size_and_leaves_no_file(
    wechatpay_server: FakeWeChatPay, tmp_path: Path
) -> None:
    from aiohttp import web

    from wechatpay_chain import BodyTooLargeError

    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))  # 64 MiB in ~64 KiB
    sent: list[int] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(bomb)
        sent.append(len(bomb))
        await response.write_eof()
        return response

    wechatpay_server.route(
        "GET",
        "/v3/bill/tradebill",
        lambda request, values: Reply(
            json={
                "hash_type": "SHA1",
                "hash_value": "0" * 40,
                "download_url": wechatpay_server.url + "/v3/billdownload/file?token=bomb",
            }
        ),
    )
    wechatpay_server.route("GET", "/v3/billdownload/file", lambda r, v: Reply(stream=stream))
    target = tmp_path / "bill.csv"
    async with wechatpay_server.client() as wxpay:
        with pytest.raises(BodyTooLargeError) as raised:
            async with wxpay.bills.trade(
                "2026-05-01", tar_type="GZIP", max_size=1024 * 1024
            ) as bill:
                await bill.save(target)
    assert raised.value.limit == 1024 * 1024
    assert sent == [len(bomb)]
    assert os.listdir(tmp_path) == []  # no partial file, no final one
