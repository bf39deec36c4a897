"""End to end: signed and verified requests against the fake server in another process.

The library (in each of its ``sign_in_thread`` settings) is measured next to a minimal
hand-written client (:class:`Baseline`), next to aiohttp with no per-request cryptography
(:class:`Floor`), and with two variants of its signing middleware that were tried and not
shipped: one signature per request handed to an executor (:class:`ExecutorSigning`), and
inline signing behind a per-turn budget of the loop (:class:`BudgetedSigning`). All in the
same run, taking turns.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

import aiohttp
import attrs
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from wechatpay_chain import SigningMiddleware, WeChatPay
from wechatpay_chain.signing import Signer

MCHID = "1900000109"
#: An open order, queried: a 200 answer with a JSON body to verify.
QUERIED = "BENCH0000000000000000000000001"
#: An order closed again and again: a signed JSON request body, a 204 answer.
CLOSED = "BENCH0000000000000000000000002"
TICK = 0.001
MAX_TICKS = 120_000
RUN_TIMEOUT = 60.0

Call = Callable[[int], Awaitable[None]]


# -- the baseline: no library code ------------------------------------------------------------

_PKCS1, _SHA256 = padding.PKCS1v15(), hashes.SHA256()
_ANSWER_HEADERS = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
)


@attrs.define
class Baseline:
    """What a careful developer writes by hand: sign inline, send, verify inline."""

    base_url: str
    mchid: str
    serial: str
    key: rsa.RSAPrivateKey
    public_key_id: str
    public_key: rsa.RSAPublicKey
    session: aiohttp.ClientSession

    def sign(self, method: str, target: str, body: bytes) -> dict[str, str]:
        timestamp, nonce = int(time.time()), secrets.token_hex(16)
        message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(self.key.sign(message, _PKCS1, _SHA256)).decode()
        headers = {
            "Authorization": f'WECHATPAY2-SHA256-RSA2048 mchid="{self.mchid}",'
            f'nonce_str="{nonce}",timestamp="{timestamp}",serial_no="{self.serial}",'
            f'signature="{signature}"',
            "Accept": "application/json",
            "User-Agent": "hand-written-baseline/1.0",
        }
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def request(self, method: str, target: str, document: Any = None) -> bytes:
        body = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        headers = self.sign(method, target, body)
        url = URL(self.base_url + target, encoded=True)
        async with self.session.request(
            method, url, data=body if body else None, headers=headers
        ) as response:
            received = await response.read()
        answer = response.headers
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{method} {target}: HTTP {response.status}: {received[:200]!r}")
        if not all(answer.get(name) for name in _ANSWER_HEADERS):
            raise RuntimeError("unsigned answer")
        if answer["Wechatpay-Serial"] != self.public_key_id:
            raise RuntimeError("unknown Wechatpay-Serial")
        if abs(int(answer["Wechatpay-Timestamp"]) - time.time()) > 300:
            raise RuntimeError("Wechatpay-Timestamp outside the 5-minute window")
        signed = f"{answer['Wechatpay-Timestamp']}\n{answer['Wechatpay-Nonce']}\n".encode()
        signature_bytes = base64.b64decode(answer["Wechatpay-Signature"])
        self.public_key.verify(signature_bytes, signed + received + b"\n", _PKCS1, _SHA256)
        return received


@attrs.define
class Floor:
    """No cryptography per request: each request's headers signed once beforehand (the
    server accepts them for five minutes), answers not verified. What aiohttp and the loop
    cost on their own."""

    baseline: Baseline
    signed: dict[tuple[str, str], dict[str, str]] = attrs.field(factory=dict)

    async def request(self, method: str, target: str, document: Any = None) -> bytes:
        body = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        headers = self.signed.get((method, target))
        if headers is None:
            headers = self.signed[method, target] = self.baseline.sign(method, target, body)
        url = URL(self.baseline.base_url + target, encoded=True)
        async with self.baseline.session.request(
            method, url, data=body if body else None, headers=headers
        ) as response:
            received = await response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{method} {target}: HTTP {response.status}: {received[:200]!r}")
        return received


def baseline_call(client: Baseline | Floor) -> Call:
    query = f"/v3/pay/transactions/out-trade-no/{QUERIED}?mchid={MCHID}"
    close = f"/v3/pay/transactions/out-trade-no/{CLOSED}/close"

    async def call(index: int) -> None:
        if index % 2:
            await client.request("GET", query)
        else:
            await client.request("POST", close, {"mchid": MCHID})

    return call


# -- the library, and variants of its signing middleware -------------------------------------


@attrs.define(eq=False)
class ExecutorSigning:
    """A variant of :class:`~wechatpay_chain.SigningMiddleware` (benchmark only): each
    request's signature is handed to ``executor`` on its own (``None``: asyncio's default
    thread pool), where the library's worker signs whatever waits as one batch."""

    signer: Signer
    executor: Executor | None

    def stop(self) -> None:
        """Called by ``WeChatPay.close()``; no thread of its own to end."""

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        body = b"" if isinstance(request.body, bytes) else await request.body.as_bytes()
        loop = asyncio.get_running_loop()
        request.headers["Authorization"] = await loop.run_in_executor(
            self.executor, self.signer.authorization, request.method, request.url.raw_path_qs, body
        )
        return await handler(request)


def replace_signing(client: WeChatPay, signing: ExecutorSigning | BudgetedSigning) -> None:
    """BENCHMARK ONLY: swap the client's signing middleware through a private attribute.

    ``Transport`` passes ``(retry, self.signing, self.verifying)`` to aiohttp, built on
    first use; replacing ``signing`` before the first call changes nothing else. Fails
    loudly if that changes.
    """
    transport = client._transport
    if not isinstance(getattr(transport, "signing", None), SigningMiddleware):
        raise RuntimeError("the client's Transport no longer keeps its SigningMiddleware")
    transport.signing = signing  # type: ignore[assignment]


async def create_orders(client: WeChatPay) -> None:
    """The two orders the calls below query and close, created on the server once."""
    for out_trade_no in (QUERIED, CLOSED):
        await client.v3.pay.transactions.native.post(
            json={
                "appid": "wxd678efh567hg6787",
                "mchid": MCHID,
                "description": "benchmark",
                "out_trade_no": out_trade_no,
                "notify_url": "https://127.0.0.1/notify",
                "amount": {"total": 1},
            }
        )


def library_call(client: WeChatPay) -> Call:
    async def call(index: int) -> None:
        # The chain is built on every call, as an application writes it.
        if index % 2:
            await client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
                out_trade_no=QUERIED, params={"mchid": MCHID}
            )
        else:
            await client.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
                out_trade_no=CLOSED, json={"mchid": MCHID}
            )

    return call


# -- running one sample ----------------------------------------------------------------------


@attrs.frozen
class Sample:
    per_second: float
    cpu_per_request: float
    lag_p50: float
    lag_p99: float
    #: CPU of the event loop's own thread: what a spare core could not take off it.
    loop_cpu_per_request: float = 0.0
    requests: int = 0
    server_cpu: float = 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _ticker(lateness: list[float], done: asyncio.Event) -> None:
    """Asks to wake every millisecond and records how late each wake-up is."""
    while not done.is_set() and len(lateness) < MAX_TICKS:
        due = time.perf_counter() + TICK
        await asyncio.sleep(TICK)
        lateness.append(time.perf_counter() - due)


async def run_sample(
    call: Call, concurrency: int, total: int, server_cpu: Callable[[], float] = lambda: 0.0
) -> Sample:
    """``total`` calls from ``concurrency`` workers, after one warm-up call per worker;
    ``server_cpu`` reads the server's CPU seconds, before and after."""
    await asyncio.wait_for(
        asyncio.gather(*(call(index) for index in range(concurrency))), RUN_TIMEOUT
    )
    indexes = iter(range(total))

    async def worker() -> None:
        for index in indexes:
            await call(index)

    lateness: list[float] = []
    done = asyncio.Event()
    ticker = asyncio.create_task(_ticker(lateness, done))
    await asyncio.sleep(0)
    server, cpu, wall = server_cpu(), time.process_time(), time.perf_counter()
    loop_cpu = time.thread_time()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), RUN_TIMEOUT)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        loop_cpu = time.thread_time() - loop_cpu
        server = server_cpu() - server
    finally:
        done.set()
        await ticker
    return Sample(
        per_second=total / wall,
        cpu_per_request=cpu / total,
        lag_p50=percentile(lateness, 0.50),
        lag_p99=percentile(lateness, 0.99),
        loop_cpu_per_request=loop_cpu / total,
        requests=total,
        server_cpu=server,
    )


async def run_turns(
    calls: dict[str, Call], total: int, block: int, server_cpu: Callable[[], float] = lambda: 0.0
) -> dict[str, Sample]:
    """Concurrency 1, the cases taking turns: ``block`` calls of each, in order and then in
    the reverse order, until each has made ``total``. Every case then sees the same moments
    of a shared machine, within a fraction of a second of the others, where samples run one
    after the other are seconds apart (and drift apart by several hundredths).

    The server's CPU cannot be told apart at this grain (its clock ticks are 10 ms): each
    case is given the round's, per request, pooled over all cases.
    """
    names = list(calls)
    for name in names:  # one warm-up call each: a connection in every pool
        await asyncio.wait_for(calls[name](0), RUN_TIMEOUT)
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    loop_cpu = dict.fromkeys(names, 0.0)
    lateness: dict[str, list[float]] = {name: [] for name in names}
    current = [names[0]]
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set() and sum(map(len, lateness.values())) < MAX_TICKS:
            running, due = current[0], time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            lateness[running].append(time.perf_counter() - due)

    async def turn(call: Call, start: int) -> None:
        for index in range(start, start + block):
            await call(index)

    ticking = asyncio.create_task(ticker())
    server = server_cpu()
    try:
        for number, start in enumerate(range(0, total, block)):
            for name in names if number % 2 == 0 else names[::-1]:
                current[0] = name
                started, used, used_here = (
                    time.perf_counter(),
                    time.process_time(),
                    time.thread_time(),
                )
                await asyncio.wait_for(turn(calls[name], start), RUN_TIMEOUT)
                wall[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - used
                loop_cpu[name] += time.thread_time() - used_here
        server = server_cpu() - server
    finally:
        done.set()
        await ticking
    made = len(range(0, total, block)) * block
    return {
        name: Sample(
            per_second=made / wall[name],
            cpu_per_request=cpu[name] / made,
            lag_p50=percentile(lateness[name], 0.50),
            lag_p99=percentile(lateness[name], 0.99),
            loop_cpu_per_request=loop_cpu[name] / made,
            requests=made,
            server_cpu=server / len(names),
        )
        for name in names
    }


def median_sample(samples: list[Sample]) -> Sample:
    """Medians of each measure; the server's CPU pooled (its clock ticks are coarse)."""
    return Sample(
        per_second=statistics.median(sample.per_second for sample in samples),
        cpu_per_request=statistics.median(sample.cpu_per_request for sample in samples),
        lag_p50=statistics.median(sample.lag_p50 for sample in samples),
        lag_p99=statistics.median(sample.lag_p99 for sample in samples),
        loop_cpu_per_request=statistics.median(sample.loop_cpu_per_request for sample in samples),
        requests=sum(sample.requests for sample in samples),
        server_cpu=sum(sample.server_cpu for sample in samples),
    )


@attrs.define(eq=False)
class LoopBudget:
    """Benchmark only: lets request steps run on the loop until ``budget`` seconds of this
    turn of the loop are spent, then queues them (first come, first served) for later
    turns, so that timers and other tasks get a turn every ``budget`` or so."""

    budget: float = 0.0005
    window_start: float | None = None
    waiters: deque[asyncio.Future[None]] = attrs.field(factory=deque)
    release: int = 4

    async def turn(self) -> None:
        now = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self.window_start is None:
            self.window_start = now
            loop.call_soon(self._close_window, loop)
            if not self.waiters:
                return
        elif not self.waiters and now - self.window_start < self.budget:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        await waiter

    def _close_window(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.window_start is not None
        spent = time.perf_counter() - self.window_start
        # Additive increase, multiplicative decrease of the steps let through per turn.
        self.release = max(1, self.release // 2) if spent > self.budget else self.release + 1
        self.window_start = None
        released = 0
        while self.waiters and released < self.release:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                released += 1
        if self.waiters:  # the next turn closes its window too, even if no new step comes
            self.window_start = time.perf_counter()
            loop.call_soon(self._close_window, loop)


def gate_verifying(client: WeChatPay, gate: LoopBudget) -> None:
    """BENCHMARK ONLY: an answer waits for its turn of the loop before it is verified."""
    verifying = client._transport.verifying

    async def gated(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        async def answered(sent: ClientRequest) -> ClientResponse:
            response = await handler(sent)
            await gate.turn()
            return response

        return await verifying(request, answered)

    client._transport.verifying = gated  # type: ignore[assignment]


@attrs.define(eq=False)
class BudgetedSigning:
    """Benchmark only: the shipped middleware's inline signing, behind a :class:`LoopBudget`
    (see also :func:`gate_verifying`)."""

    signer: Signer
    gate: LoopBudget

    def stop(self) -> None:
        """Called by ``WeChatPay.close()``; no thread of its own to end."""

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        body = b"" if isinstance(request.body, bytes) else await request.body.as_bytes()
        await self.gate.turn()
        request.headers["Authorization"] = self.signer.authorization(
            request.method, request.url.raw_path_qs, body
        )
        return await handler(request)
