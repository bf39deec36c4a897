"""SyncWeChatPay against the async client and the popular synchronous SDK's approach
(``requests`` and an RSA signature per call), side by side in one run: each case queries a
signed order from the fake server (in a process of its own) from 1 and 16 threads (or
concurrent tasks), the cases taking turns round by round, medians reported.

Goal (issue "SyncWeChatPay"): the blocking client within 0.9x of the async client's
throughput at 16 threads.

    .venv/bin/python benchmarks/bench_sync.py [--rounds 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from _fake_server import serve_in_subprocess
from _report import report
from cryptography.hazmat.primitives import serialization

from wechatpay_chain import SyncWeChatPay, WeChatPay
from wechatpay_chain.signing import Signer
from wechatpay_chain.testing import generate_private_key
from wechatpay_chain.verifying import Verifier

MCHID = "1900000109"
SERIAL = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
ORDER = "bench-sync-1"
TARGET = f"/v3/pay/transactions/out-trade-no/{ORDER}?mchid={MCHID}"


def _pem(key: Any, private: bool) -> str:
    if private:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return str(data.decode())


def _threads(call: Callable[[], None], threads: int, calls: int) -> float:
    """Seconds for ``calls`` calls of ``call`` spread over ``threads`` threads."""
    each = calls // threads

    def worker() -> None:
        for _ in range(each):
            call()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    arguments = parser.parse_args()
    merchant_key, wechatpay_key = generate_private_key(), generate_private_key()
    config = {
        "mchid": MCHID,
        "serial": SERIAL,
        "merchant_public_key": _pem(merchant_key.public_key(), False),
        "public_key_id": PUBLIC_KEY_ID,
        "wechatpay_private_key": _pem(wechatpay_key, True),
    }
    options: dict[str, Any] = {
        "mchid": MCHID,
        "serial": SERIAL,
        "private_key": merchant_key,
        "public_keys": {PUBLIC_KEY_ID: wechatpay_key.public_key()},
    }
    with serve_in_subprocess(config) as server:
        options["base_url"] = server.url
        blocking = SyncWeChatPay(**options)
        blocking.v3.pay.transactions.native.post(
            json={
                "appid": "wxd678efh567hg6787",
                "mchid": MCHID,
                "description": "bench",
                "out_trade_no": ORDER,
                "notify_url": "https://shop.example/n",
                "amount": {"total": 1},
            }
        )
        node = blocking.v3.pay.transactions.outTradeNo._out_trade_no_

        loop = asyncio.new_event_loop()
        asynchronous = WeChatPay(**options)
        async_node = asynchronous.v3.pay.transactions.outTradeNo._out_trade_no_

        async def tasks(concurrency: int, calls: int) -> None:
            async def one() -> None:
                for _ in range(calls // concurrency):
                    await async_node.get(out_trade_no=ORDER, params={"mchid": MCHID})

            await asyncio.gather(*(one() for _ in range(concurrency)))

        signer = Signer(MCHID, SERIAL, merchant_key)
        verifier = Verifier({PUBLIC_KEY_ID: wechatpay_key.public_key()})
        local = threading.local()

        def by_hand() -> None:
            # The popular synchronous SDK's way: requests, a signature and a check per call.
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            answer = session.get(
                server.url + TARGET,
                headers={
                    "Authorization": signer.authorization("GET", TARGET),
                    "Accept": "application/json",
                    "Wechatpay-Serial": PUBLIC_KEY_ID,
                },
                timeout=10,
            )
            verifier.verify(answer.headers, answer.content)
            answer.json()

        def sync_call() -> None:
            node.get(out_trade_no=ORDER, params={"mchid": MCHID})

        cases: dict[str, Callable[[int, int], float]] = {
            "async WeChatPay (tasks)": lambda c, n: _timed(
                lambda: loop.run_until_complete(tasks(c, n))
            ),
            "SyncWeChatPay (threads)": lambda c, n: _threads(sync_call, c, n),
            "requests + signature per call (threads)": lambda c, n: _threads(by_hand, c, n),
        }
        results: dict[int, dict[str, float]] = {}
        for concurrency in (1, 16):
            calls = arguments.calls - arguments.calls % concurrency
            for case in cases.values():  # warm-up: connections, the loop thread
                case(concurrency, concurrency * 4)
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(arguments.rounds):
                for name, case in cases.items():
                    samples[name].append(calls / case(concurrency, calls))
            results[concurrency] = {n: statistics.median(v) for n, v in samples.items()}
        blocking.close()
        loop.run_until_complete(asynchronous.close())
        loop.close()

    rows: list[tuple[str, str]] = []
    for concurrency, medians in results.items():
        rows.append((f"concurrency {concurrency} (median of {arguments.rounds} rounds)", ""))
        base = medians["async WeChatPay (tasks)"]
        for name, rate in medians.items():
            rows.append((f"  {name}", f"{rate:8,.0f} req/s   {rate / base:5.2f} x async"))
    ratio = results[16]["SyncWeChatPay (threads)"] / results[16]["async WeChatPay (tasks)"]
    rows.append(
        (
            "TARGET: SyncWeChatPay >= 0.9 x async @16",
            f"{ratio:.2f}  {'MET' if ratio >= 0.9 else 'NOT MET'}",
        )
    )
    report("sync", rows, {"requests_per_second": {str(k): v for k, v in results.items()}})


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
