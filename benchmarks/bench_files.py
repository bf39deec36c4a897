"""Files (issue 7): a bill download and a media upload through the library, next to plain
aiohttp moving the same bytes between the same two processes, in the same run.

The fake WeChat Pay server runs in a process of its own (this file with ``--serve``): it
generates the bill as it streams it (``FakeWeChatPay.bills``), and an upload sink beside it
parses the multipart body as it arrives, hashes the file part and, for the signed route,
checks the signature over the meta part and the announced SHA-256. This process is the
client, and its peak resident memory is measured per case (Linux: ``VmHWM`` reset through
``/proc/self/clear_refs`` before each case; elsewhere a 5 ms sampler).

Targets: throughput at least 0.8 of plain aiohttp's, and peak memory growth under 64 MiB
whatever the size.

    .venv/bin/python benchmarks/bench_files.py [--download-mib 1024] [--upload-mib 200] [--rounds 3]

Saved files go to the temporary directory, or to ``$BENCH_FILES_DIR`` (``/dev/shm`` takes the
disk out of the figures).

Positional arguments naming other benchmarks' sections (``nox -s bench -- e2e``) skip this one
unless ``files`` is among them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from _fake_server import child_process, stop_requested
from _report import report
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain import WeChatPay
from wechatpay_chain.signing import AUTHORIZATION_SCHEME, request_message, rsa_sign
from wechatpay_chain.testing import FakeWeChatPay, generate_private_key

MIB = 1024 * 1024
MCHID = "1900000109"
MAX_LIFETIME = 600.0  # a forgotten server process stops by itself
START_TIMEOUT = 60.0
CHINA = datetime.timezone(datetime.timedelta(hours=8))
READ = 256 * 1024  # plain aiohttp's reads and the sink's


# -- the server process -------------------------------------------------------------------------


def _signed_headers(key: rsa.RSAPrivateKey, key_id: str, body: bytes) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    return {
        "Request-ID": secrets.token_hex(16).upper() + "-0",
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Serial": key_id,
        "Wechatpay-Signature": rsa_sign(key, f"{timestamp}\n{nonce}\n".encode() + body + b"\n"),
        "Wechatpay-Signature-Type": AUTHORIZATION_SCHEME,
        "Content-Type": "application/json",
    }


def _sink(config: dict[str, Any], server: FakeWeChatPay, bill_day: str) -> web.Application:
    merchant = serialization.load_pem_public_key(config["merchant_public_key"].encode())
    wechatpay = serialization.load_pem_private_key(
        config["wechatpay_private_key"].encode(), password=None
    )
    assert isinstance(merchant, rsa.RSAPublicKey)
    assert isinstance(wechatpay, rsa.RSAPrivateKey)

    async def receive(request: web.Request, *, signed: bool) -> web.Response:
        reader = await request.multipart()
        meta_part = await reader.next()
        assert isinstance(meta_part, aiohttp.BodyPartReader)
        meta = bytes(await meta_part.read())
        file_part = await reader.next()
        assert isinstance(file_part, aiohttp.BodyPartReader)
        digest, size = hashlib.sha256(), 0
        while chunk := await file_part.read_chunk(READ):
            digest.update(chunk)
            size += len(chunk)
        if signed:
            parameters = dict(re.findall(r'(\w+)="([^"]*)"', request.headers["Authorization"]))
            message = request_message(
                "POST",
                request.raw_path,
                int(parameters["timestamp"]),
                parameters["nonce_str"],
                meta,
            )
            merchant.verify(
                base64.b64decode(parameters["signature"]),
                message,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            if json.loads(meta)["sha256"] != digest.hexdigest():
                return web.json_response({"code": "PARAM_ERROR", "message": "sha256"}, status=400)
        body = json.dumps({"media_id": secrets.token_urlsafe(16), "size": size}).encode()
        return web.Response(body=body, headers=_signed_headers(wechatpay, config["key_id"], body))

    async def signed_upload(request: web.Request) -> web.Response:
        return await receive(request, signed=True)

    async def plain_upload(request: web.Request) -> web.Response:
        return await receive(request, signed=False)

    async def plain_bill(request: web.Request) -> web.StreamResponse:
        # The very bytes the fake's /v3/billdownload/file sends, from the same generator.
        content = server.bills.content("trade", bill_day)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = content.size
        await response.prepare(request)
        for chunk in content.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v3/merchant/media/video_upload", signed_upload)
    app.router.add_post("/plain-upload", plain_upload)
    app.router.add_get("/plain/bill", plain_bill)
    return app


async def _serve() -> None:
    config = json.loads(sys.stdin.readline())
    stop = stop_requested()
    server = FakeWeChatPay(
        mchid=MCHID,
        serial=config["serial"],
        merchant_public_key=config["merchant_public_key"].encode(),
        public_key_id=config["key_id"],
        wechatpay_private_key=config["wechatpay_private_key"].encode(),
        fast=True,
    )
    server.bills.size = config["bill_size"]
    async with server:
        runner = web.AppRunner(_sink(config, server, config["bill_day"]), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"fake": server.url, "sink": f"http://127.0.0.1:{port}"}), flush=True)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), MAX_LIFETIME)
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def serve_in_subprocess(config: dict[str, Any]) -> Iterator[dict[str, str]]:
    with child_process(Path(__file__), config, "--serve", start_timeout=START_TIMEOUT) as (
        line,
        _pid,
    ):
        if not line.startswith("{"):
            raise RuntimeError(f"the server process did not start (said {line!r})")
        urls: dict[str, str] = json.loads(line)
        yield urls


# -- memory ---------------------------------------------------------------------------------------


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {
        key: int(value) * 1024
        for key, value in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)
    }


class PeakMemory:
    """Peak resident memory growth of this process over a block, in bytes."""

    def __init__(self) -> None:
        self.growth = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self._before = _status()["VmRSS"]
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._hwm = True
        except OSError:
            self._hwm = False
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, _status()["VmRSS"])

    def __exit__(self, *exc_info: object) -> None:
        if self._hwm:
            peak = _status()["VmHWM"]
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            peak = self._sampled
        self.growth = max(0, peak - self._before)


# -- the cases --------------------------------------------------------------------------------------


Case = Callable[[], Awaitable[int]]


def _bill_day() -> str:
    return (datetime.datetime.now(CHINA).date() - datetime.timedelta(days=2)).isoformat()


async def _measure(
    cases: dict[str, Case], rounds: int, before: Callable[[], None] | None = None
) -> dict[str, dict[str, float]]:
    """Each case ``rounds`` times, taking turns; median seconds and the largest memory growth.
    ``before`` runs ahead of each case, untimed."""
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    memory: dict[str, int] = dict.fromkeys(cases, 0)
    moved: dict[str, int] = {}
    names = list(cases)
    for round_ in range(rounds):
        # Each round starts with another case: whatever the first one pays (a colder page
        # cache, the kernel finding fresh pages for a new file) falls on each in turn.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            case = cases[name]
            if before is not None:
                before()
            with PeakMemory() as peak:
                started, processor = time.perf_counter(), time.process_time()
                moved[name] = await case()
                seconds[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - processor)
            memory[name] = max(memory[name], peak.growth)
    return {
        name: {
            "seconds": statistics.median(seconds[name]),
            "mib_per_s": moved[name] / MIB / statistics.median(seconds[name]),
            "client_cpu_s_per_gib": statistics.median(cpu[name]) * 1024 * MIB / moved[name],
            "peak_rss_growth_mib": memory[name] / MIB,
        }
        for name in cases
    }


async def _downloads(
    urls: dict[str, str], config: dict[str, Any], keys: dict[str, Any], rounds: int, work: Path
) -> dict[str, dict[str, float]]:
    day = config["bill_day"]
    size: int = config["bill_size"]
    target = work / "bill.csv"

    async with (
        aiohttp.ClientSession() as session,
        WeChatPay(
            MCHID,
            config["serial"],
            keys["merchant"],
            {config["key_id"]: keys["wechatpay"].public_key()},
            base_url=urls["fake"],
        ) as wxpay,
    ):
        # Warm-up: the server hashes the bill once (cached), both connections open.
        first = await wxpay.bills.trade(day)
        await first.read() if size <= 64 * MIB else await first.save(target)
        async with session.get(urls["sink"] + "/plain/bill") as response:
            await response.read() if size <= 64 * MIB else [
                None async for _ in response.content.iter_any()
            ]

        async def plain_stream() -> int:
            received = 0
            async with session.get(urls["sink"] + "/plain/bill") as response:
                async for chunk in response.content.iter_any():
                    received += len(chunk)
            assert received == size
            return received

        async def plain_save() -> int:
            received = 0
            async with session.get(urls["sink"] + "/plain/bill") as response:
                with target.open("wb") as file:
                    async for chunk in response.content.iter_any():
                        file.write(chunk)
                        received += len(chunk)
            return received

        async def plain_save_sha1() -> int:
            received, digest = 0, hashlib.sha1(usedforsecurity=False)
            async with session.get(urls["sink"] + "/plain/bill") as response:
                with target.open("wb") as file:
                    async for chunk in response.content.iter_any():
                        digest.update(chunk)
                        file.write(chunk)
                        received += len(chunk)
            return received

        def clean() -> None:
            # Each save starts from the same place: no old file to replace, nothing dirty.
            with contextlib.suppress(OSError):
                target.unlink()
            os.sync()

        async def download_stream() -> int:
            # The signed download alone: apply first (outside the clock would be fairer, but
            # the token lives 30 s, so the apply is timed too; it costs one round trip).
            answer = (await wxpay.v3.bill.tradebill.get(params={"bill_date": day})).json()
            received = 0
            async with wxpay.download(answer["download_url"]) as stream:
                async for chunk in stream:
                    received += len(chunk)
            assert received == size
            return received

        async def bill_stream() -> int:
            received = 0
            async with wxpay.bills.trade(day) as bill:
                async for chunk in bill:
                    received += len(chunk)
            assert bill.sha1 == bill.hash_value
            return received

        async def bill_save() -> int:
            async with wxpay.bills.trade(day) as bill:
                await bill.save(target)
            assert bill.sha1 == bill.hash_value
            return bill.size

        results = await _measure(
            {
                "aiohttp stream": plain_stream,
                "wxpay.download stream": download_stream,
                "wxpay.bills.trade stream (SHA-1)": bill_stream,
                "aiohttp to file": plain_save,
                "aiohttp + sha1 to file": plain_save_sha1,
                "wxpay.bills.trade save (SHA-1)": bill_save,
            },
            rounds,
            clean,
        )
    with contextlib.suppress(OSError):
        target.unlink()
    return results


def _write_upload_file(path: Path, size: int) -> None:
    block = hashlib.sha256(b"upload").digest() * (MIB // 32)
    with path.open("wb") as file:
        for index in range(size // MIB):
            file.write(index.to_bytes(4, "big") + block[4:])
        file.write(block[: size % MIB])


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


async def _uploads(
    urls: dict[str, str], config: dict[str, Any], keys: dict[str, Any], rounds: int, work: Path
) -> dict[str, dict[str, float]]:
    size: int = config["upload_size"]
    path = work / "upload.mp4"
    await asyncio.to_thread(_write_upload_file, path, size)
    loop = asyncio.get_running_loop()

    async with (
        aiohttp.ClientSession() as session,
        WeChatPay(
            MCHID,
            config["serial"],
            keys["merchant"],
            {config["key_id"]: keys["wechatpay"].public_key()},
            base_url=urls["sink"],
        ) as wxpay,
    ):

        async def plain(sha256: str) -> int:
            form = aiohttp.FormData()
            form.add_field(
                "meta",
                json.dumps({"filename": "upload.mp4", "sha256": sha256}),
                content_type="application/json",
            )
            with path.open("rb") as file:
                form.add_field("file", file, filename="upload.mp4", content_type="video/mp4")
                async with session.post(urls["sink"] + "/plain-upload", data=form) as response:
                    answer = await response.json()
            assert answer["size"] == size
            return size

        async def plain_upload() -> int:
            return await plain("0" * 64)

        async def plain_upload_with_sha256() -> int:
            # What a hand-written WeChat Pay upload must do: hash the file first.
            return await plain(await loop.run_in_executor(None, _hash_file, path))

        async def library_path() -> int:
            response = await wxpay.v3.merchant.media.video_upload.post(file=path, timeout=120)
            assert response.json()["size"] == size  # type: ignore[typeddict-item]
            return size

        block = hashlib.sha256(b"iterator").digest() * (MIB // 32)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // MIB):
                yield block
            yield block[: size % MIB]

        async def library_iterator() -> int:
            response = await wxpay.v3.merchant.media.video_upload.post(
                file=chunks(), filename="upload.mp4", timeout=120
            )
            assert response.json()["size"] == size  # type: ignore[typeddict-item]
            return size

        await plain_upload()  # warm-up: connections and page cache
        await library_path()
        results = await _measure(
            {
                "aiohttp upload": plain_upload,
                "aiohttp upload + sha256 pass": plain_upload_with_sha256,
                "wxpay post(file=path)": library_path,
                "wxpay post(file=async iterator)": library_iterator,
            },
            rounds,
        )
    path.unlink()
    return results


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--download-mib", type=int, default=1024, help="bill size (default 1024)")
    parser.add_argument("--upload-mib", type=int, default=200, help="upload size (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (default 3)")
    arguments, others = parser.parse_known_args()
    sections = [argument for argument in others if not argument.startswith("-")]
    if sections and "files" not in sections:
        print("files: not selected")
        return
    merchant, wechatpay = generate_private_key(), generate_private_key()
    keys = {"merchant": merchant, "wechatpay": wechatpay}
    config = {
        "serial": secrets.token_hex(20).upper(),
        "key_id": "PUB_KEY_ID_01" + "".join(secrets.choice("0123456789") for _ in range(26)),
        "merchant_public_key": _pem_public(merchant.public_key()),
        "wechatpay_private_key": _pem_private(wechatpay),
        "bill_day": _bill_day(),
        "bill_size": arguments.download_mib * MIB,
        "upload_size": arguments.upload_mib * MIB,
    }
    started = time.perf_counter()
    root = os.environ.get("BENCH_FILES_DIR")  # where saved files go (default: the temp dir)
    with (
        serve_in_subprocess(config) as urls,
        tempfile.TemporaryDirectory(dir=root) as directory,
    ):
        work = Path(directory)
        downloads = asyncio.run(_downloads(urls, config, keys, arguments.rounds, work))
        uploads = asyncio.run(_uploads(urls, config, keys, arguments.rounds, work))
    elapsed = time.perf_counter() - started

    def row(
        name: str,
        results: dict[str, dict[str, float]],
        baseline: str | None,
        hashing: str | None = None,
    ) -> tuple[str, str]:
        result = results[name]
        ratio = (
            ""
            if baseline is None
            else f"{result['mib_per_s'] / results[baseline]['mib_per_s']:.2f}x"
        )
        if hashing is not None:
            ratio += f" ({result['mib_per_s'] / results[hashing]['mib_per_s']:.2f}x)"
        return (
            name,
            f"{result['mib_per_s']:7,.0f} MiB/s {ratio:>14}  peak RSS +{result['peak_rss_growth_mib']:5.1f} MiB"
            f"  client CPU {result['client_cpu_s_per_gib']:.2f} s/GiB",
        )

    rows = [(f"download {arguments.download_mib} MiB bill", "")]
    rows += [
        row("aiohttp stream", downloads, None),
        row("wxpay.download stream", downloads, "aiohttp stream"),
        row("wxpay.bills.trade stream (SHA-1)", downloads, "aiohttp stream"),
        row("aiohttp to file", downloads, None),
        row("aiohttp + sha1 to file", downloads, "aiohttp to file"),
        row(
            "wxpay.bills.trade save (SHA-1)", downloads, "aiohttp to file", "aiohttp + sha1 to file"
        ),
        (f"upload {arguments.upload_mib} MiB", ""),
        row("aiohttp upload", uploads, None),
        row("aiohttp upload + sha256 pass", uploads, "aiohttp upload"),
        row("wxpay post(file=path)", uploads, "aiohttp upload", "aiohttp upload + sha256 pass"),
        row(
            "wxpay post(file=async iterator)",
            uploads,
            "aiohttp upload",
            "aiohttp upload + sha256 pass",
        ),
        ("", "ratio: to the first aiohttp row of its block (in brackets: to the one that hashes)"),
        ("", "targets: >= 0.8x; peak RSS growth < 64 MiB"),
        ("files written to", root or tempfile.gettempdir()),
        ("client peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"),
        ("whole run", f"{elapsed:.0f} s, {arguments.rounds} rounds per case, medians"),
    ]
    report(
        "files",
        rows,
        {
            "download_bytes": config["bill_size"],
            "upload_bytes": config["upload_size"],
            "rounds": arguments.rounds,
            "files_written_to": root or tempfile.gettempdir(),
            "client_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "downloads": downloads,
            "uploads": uploads,
            "targets": {"throughput_ratio": 0.8, "peak_rss_growth_mib": 64},
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(_serve())
    else:
        main()
