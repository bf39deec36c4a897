"""Reliability under faults: what is retried, timeouts, failover, logging, a soak run.

A payment client must never hand back unverified data, never resend a write the caller did
not allow to be resent, never hang, and never leak a connection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import (
    ApiError,
    ConnectError,
    ProbeSignatureError,
    RequestTimeoutError,
    Response,
    SignatureMismatchError,
    TransportError,
    UnknownSerialError,
    WeChatPay,
    WeChatPayError,
)
from wechatpay_chain.retries import RetryPolicy
from wechatpay_chain.testing import FakeWeChatPay, Fault

if TYPE_CHECKING:
    # Names for type checkers only: the generated stubs (docs/chain.md, "Types").
    from wechatpay_chain.endpoints.schemas import V3PayTransactionsNativePostBody

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, deadline=5)


def order(server: FakeWeChatPay, number: str) -> V3PayTransactionsNativePostBody:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": server.merchant.mchid,
        "description": "可靠性测试",
        "out_trade_no": number,
        "notify_url": "https://merchant.example/notify",
        "amount": {"total": 1},
    }


async def create(wxpay: WeChatPay, server: FakeWeChatPay, number: str, **options: Any) -> Response:
    return await wxpay.v3.pay.transactions.native.post(json=order(server, number), **options)


async def query(wxpay: WeChatPay, server: FakeWeChatPay, number: str, **options: Any) -> Response:
    return await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no=number, params={"mchid": server.merchant.mchid}, **options
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def attempts_to(server: FakeWeChatPay, path: str) -> int:
    return sum(1 for request in server.requests if request.path == path)


# -- what is retried ---------------------------------------------------------------------------


async def test_a_read_is_retried_through_500_500_200(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        await create(wxpay, wechatpay_server, "r-1")
        wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), times=2)
        response = await query(wxpay, wechatpay_server, "r-1")
    assert response.status == 200
    assert attempts_to(wechatpay_server, "/v3/pay/transactions/out-trade-no/r-1") == 3
    # every attempt was signed afresh: three different nonces
    nonces = {
        request.headers["Authorization"].split('nonce_str="')[1][:32]
        for request in wechatpay_server.requests[1:]
    }
    assert len(nonces) == 3


async def test_a_read_gives_up_after_the_policy_attempts(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        wechatpay_server.inject(Fault.error(503, "SERVICE_UNAVAILABLE"), times=5)
        with pytest.raises(ApiError) as caught:
            await query(wxpay, wechatpay_server, "r-2")
    assert caught.value.status == 503
    assert len(wechatpay_server.requests) == 3


async def test_429_retry_after_is_honoured(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        await create(wxpay, wechatpay_server, "r-3")
        wechatpay_server.inject(Fault.error(429, "FREQUENCY_LIMITED", retry_after=0.3))
        started = time.monotonic()
        response = await query(wxpay, wechatpay_server, "r-3")
    assert response.status == 200
    assert time.monotonic() - started >= 0.3  # the server's word, not the 10 ms backoff


async def test_retry_after_beyond_the_deadline_returns_the_429(
    wechatpay_server: FakeWeChatPay,
) -> None:
    policy = RetryPolicy(attempts=3, backoff=0.01, deadline=1)
    async with wechatpay_server.client(retry=policy) as wxpay:
        wechatpay_server.inject(Fault.error(429, "FREQUENCY_LIMITED", retry_after=60))
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            await query(wxpay, wechatpay_server, "r-4")
    assert caught.value.status == 429
    assert time.monotonic() - started < 1


async def test_a_write_is_not_resent_after_5xx_or_429_by_default(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        for status in (500, 429):
            wechatpay_server.inject(Fault.error(status, "SYSTEM_ERROR"))
            with pytest.raises(ApiError):
                await create(wxpay, wechatpay_server, f"w-{status}")
    assert len(wechatpay_server.requests) == 2


async def test_an_idempotent_write_is_resent_with_identical_bytes(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), times=2)
        response = await create(wxpay, wechatpay_server, "w-idem", retry="idempotent")
    assert response.status == 200
    bodies = {request.body for request in wechatpay_server.requests}
    assert len(wechatpay_server.requests) == 3
    assert len(bodies) == 1  # identical parameters, as WeChat Pay requires for a resend


async def test_202_is_repeated_even_for_a_write(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        wechatpay_server.inject(Fault.error(202, "ACCEPTED", "请使用原参数重复请求一遍"))
        response = await create(wxpay, wechatpay_server, "w-202")
    assert response.status == 200
    assert len(wechatpay_server.requests) == 2


async def test_never_means_one_attempt(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), times=3)
        with pytest.raises(ApiError):
            await query(wxpay, wechatpay_server, "n-1", retry="never")
        with pytest.raises(ValueError, match="retry="):
            await query(wxpay, wechatpay_server, "n-1", retry="always")
    assert len(wechatpay_server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.tamper_body(), SignatureMismatchError),
        (Fault.wrong_serial(), UnknownSerialError),
        (Fault.probe(), ProbeSignatureError),
    ],
)
async def test_unverifiable_answers_are_never_retried(
    wechatpay_server: FakeWeChatPay, fault: Fault, error_type: type[Exception]
) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        await create(wxpay, wechatpay_server, "v-1")
        wechatpay_server.inject(fault)
        with pytest.raises(error_type):
            await query(wxpay, wechatpay_server, "v-1", retry="idempotent")
    # (an unknown serial may also send the client to /v3/certificates, to learn it)
    assert attempts_to(wechatpay_server, "/v3/pay/transactions/out-trade-no/v-1") == 1


# -- timeouts and broken connections -------------------------------------------------------------


async def test_a_slow_read_times_out_per_attempt_and_is_retried(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST, timeout=0.2) as wxpay:
        await create(wxpay, wechatpay_server, "t-1")
        wechatpay_server.inject(Fault.delay(1.0))
        started = time.monotonic()
        response = await query(wxpay, wechatpay_server, "t-1")
    assert response.status == 200
    assert time.monotonic() - started < 0.9


async def test_a_slow_write_times_out_and_is_not_resent(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(retry=FAST, timeout=0.2) as wxpay:
        wechatpay_server.inject(Fault.delay(1.0))
        with pytest.raises(RequestTimeoutError):
            await create(wxpay, wechatpay_server, "t-2")
    assert len(wechatpay_server.requests) == 1


async def test_an_answer_stalled_mid_body_is_an_attempt_timeout_and_a_read_retries(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST, timeout=0.2) as wxpay:
        await create(wxpay, wechatpay_server, "t-3")
        wechatpay_server.inject(Fault.stall_mid_body(3.0), method="GET")
        started = time.monotonic()
        response = await query(wxpay, wechatpay_server, "t-3")
    assert response.json()["out_trade_no"] == "t-3"
    assert time.monotonic() - started < 0.9
    assert attempts_to(wechatpay_server, "/v3/pay/transactions/out-trade-no/t-3") == 2


async def test_an_error_body_that_stalls_is_an_attempt_timeout(
    wechatpay_server: FakeWeChatPay,
) -> None:
    # An error answer's body is read within its attempt: a stalled one times the attempt
    # out, and a read is tried again (the fault stalls one answer only).
    policy = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, deadline=0.3)
    async with wechatpay_server.client(retry=policy, timeout=0.2) as wxpay:
        wechatpay_server.inject(Fault.stall_mid_body(3.0), method="GET")
        started = time.monotonic()
        with pytest.raises(ApiError) as raised:
            await query(wxpay, wechatpay_server, "never-created")
        elapsed = time.monotonic() - started
    assert raised.value.status == 404
    assert elapsed < 0.2 + 0.3
    assert attempts_to(wechatpay_server, "/v3/pay/transactions/out-trade-no/never-created") == 2


async def test_a_short_timeout_started_after_a_long_one_still_fires_on_time(
    wechatpay_server: FakeWeChatPay,
) -> None:
    # All attempts of a client share one timer, set at the earliest deadline: a later,
    # shorter attempt must move it forward.
    async with wechatpay_server.client(retry=FAST) as wxpay:
        await create(wxpay, wechatpay_server, "d-1")
        wechatpay_server.inject(Fault.delay(0.6), times=2, method="GET")
        patient = asyncio.ensure_future(query(wxpay, wechatpay_server, "d-1", timeout=5))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            await query(wxpay, wechatpay_server, "d-1", timeout=0.15, retry="never")
        assert time.monotonic() - started < 0.5
        # The timeout's own cancellation is taken back: to asyncio (its timeouts, task
        # groups) this task was never cancelled.
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):  # Task.cancelling() is new in 3.11
            assert task.cancelling() == 0
        assert (await asyncio.wait_for(patient, 5)).status == 200


async def test_many_attempts_time_out_together_and_the_client_goes_on(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST, timeout=0.2) as wxpay:
        await create(wxpay, wechatpay_server, "d-2")
        wechatpay_server.inject(Fault.delay(1.0), times=20, method="GET")
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(query(wxpay, wechatpay_server, "d-2", retry="never") for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, RequestTimeoutError) for outcome in outcomes)
        assert time.monotonic() - started < 0.9
        # Nothing left behind cancels a later call.
        for _ in range(3):
            assert (await query(wxpay, wechatpay_server, "d-2")).status == 200
            await asyncio.sleep(0.1)


async def test_cancelling_a_call_mid_attempt_is_a_cancellation_not_a_timeout(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(retry=FAST, timeout=0.3) as wxpay:
        await create(wxpay, wechatpay_server, "d-3")
        wechatpay_server.inject(Fault.delay(1.0), method="GET")
        call = asyncio.ensure_future(query(wxpay, wechatpay_server, "d-3"))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # Its deadline was cleared with it: the next call runs its full course.
        assert (await query(wxpay, wechatpay_server, "d-3")).status == 200


@pytest.mark.parametrize("fault", [Fault.reset_mid_body(), Fault.truncated_body()])
async def test_a_cut_answer_raises_transport_error_and_a_read_recovers(
    wechatpay_server: FakeWeChatPay, fault: Fault
) -> None:
    async with wechatpay_server.client(retry=FAST) as wxpay:
        wechatpay_server.inject(fault)
        with pytest.raises(TransportError, match="ClientPayloadError"):
            await create(wxpay, wechatpay_server, "c-1")
        wechatpay_server.inject(fault)
        assert (await query(wxpay, wechatpay_server, "c-1")).status == 200
    assert len(wechatpay_server.requests) == 3  # the write once, the read twice


async def test_nothing_listening_is_retried_then_raises_connect_error() -> None:
    policy = RetryPolicy(attempts=3, backoff=0.01, deadline=5)
    async with FakeWeChatPay() as server:
        url = server.url
    started = time.monotonic()
    async with WeChatPay(
        server.merchant.mchid,
        server.merchant.serial,
        server.merchant.private_key_pem or b"",
        base_url=url,
        retry=policy,
    ) as wxpay:
        with pytest.raises(ConnectError, match="cannot connect"):
            await create(wxpay, server, "x-1")
    assert time.monotonic() - started < 5


# -- failover ------------------------------------------------------------------------------------


async def test_failover_to_the_backup_host_after_connection_failures(
    wechatpay_server: FakeWeChatPay,
) -> None:
    primary = f"http://127.0.0.1:{free_port()}"
    async with wechatpay_server.client(
        base_url=primary, failover_url=wechatpay_server.url, retry=FAST
    ) as wxpay:
        assert wxpay.failover_url == wechatpay_server.url
        response = await create(
            wxpay, wechatpay_server, "f-1"
        )  # a write: nothing reached the primary
    assert response.status == 200
    [received] = wechatpay_server.requests
    assert received.headers["User-Agent"].endswith(" (Retried-V1)")


async def test_failover_is_automatic_only_for_wechat_pays_own_hosts(
    wechatpay_server: FakeWeChatPay,
) -> None:
    key = wechatpay_server.merchant.private_key_pem or b""
    mchid, serial = wechatpay_server.merchant.mchid, wechatpay_server.merchant.serial
    assert WeChatPay(mchid, serial, key).failover_url == "https://api2.mch.weixin.qq.com"
    assert (
        WeChatPay(mchid, serial, key, base_url="https://api.wechatpay.cn").failover_url
        == "https://api2.wechatpay.cn"
    )
    assert WeChatPay(mchid, serial, key, base_url="https://proxy.example").failover_url is None
    assert WeChatPay(mchid, serial, key, failover_url=None).failover_url is None
    assert wechatpay_server.client().failover_url is None


async def test_no_failover_for_a_write_that_may_have_been_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: tuple[Any, Any]
) -> None:
    async with (
        FakeWeChatPay(
            mchid=wechatpay_server.merchant.mchid,
            serial=wechatpay_server.merchant.serial,
            merchant_public_key=wechatpay_server.merchant.public_key,
            wechatpay_private_key=wechatpay_keys[1],
            public_key_id=wechatpay_server.public_key_id,
        ) as primary,
        wechatpay_server.client(
            base_url=primary.url, failover_url=wechatpay_server.url, retry=FAST
        ) as wxpay,
    ):
        primary.inject(Fault.drop())
        with pytest.raises(TransportError):
            await create(wxpay, wechatpay_server, "f-2")
    assert len(primary.requests) == 1
    assert wechatpay_server.requests == []


# -- logging -------------------------------------------------------------------------------------


async def test_each_attempt_is_logged_at_debug_without_secrets(
    wechatpay_server: FakeWeChatPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wechatpay_chain")
    async with wechatpay_server.client(retry=FAST) as wxpay:
        await create(wxpay, wechatpay_server, "l-1")
        wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"))
        response = await query(wxpay, wechatpay_server, "l-1")
    lines = [record.getMessage() for record in caplog.records if record.name == "wechatpay_chain"]
    assert lines[0].startswith("POST /v3/pay/transactions/native -> 200 (Request-ID ")
    assert "attempt 1/3" in lines[1]
    assert " -> 500 " in lines[1]
    assert lines[2].startswith(
        f"GET /v3/pay/transactions/out-trade-no/l-1?mchid={wechatpay_server.merchant.mchid} -> 200"
    )
    assert f"Request-ID {response.request_id}, attempt 2/3" in lines[2]
    authorizations = [request.headers["Authorization"] for request in wechatpay_server.requests]
    for line in lines:
        assert "WECHATPAY2-SHA256-RSA2048" not in line
        assert all(
            authorization.split('signature="')[1][:40] not in line
            for authorization in authorizations
        )


# -- soak ----------------------------------------------------------------------------------------

SOAK_FAULTS = [
    Fault.error(500, "SYSTEM_ERROR"),
    Fault.error(429, "FREQUENCY_LIMITED"),
    Fault.drop(),
    Fault.tamper_body(),
    Fault.probe(),
    Fault.wrong_serial(),
    Fault.reset_mid_body(),
    Fault.truncated_body(),
    Fault.raw(502, b"<html>bad gateway</html>"),
    Fault.delay(1.5),  # beyond the 1 s attempt timeout below
]


async def test_soak_2000_requests_at_concurrency_200_with_10_percent_faults(
    wechatpay_server: FakeWeChatPay,
) -> None:
    rng = random.Random(20261127)  # noqa: S311 - a reproducible fault plan
    total, concurrency = 2000, 200
    plan = [rng.choice(SOAK_FAULTS) if rng.random() < 0.10 else None for _ in range(total)]
    outcomes: dict[str, int] = {}
    policy = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, deadline=10)
    # 1 s per attempt: 200 requests in flight on two cores queue for a few hundred ms.
    async with wechatpay_server.client(retry=policy, timeout=1.0) as wxpay:
        await create(wxpay, wechatpay_server, "soak")
        gate = asyncio.Semaphore(concurrency)

        async def one(number: int) -> None:
            async with gate:
                fault = plan[number]
                if fault is not None:
                    wechatpay_server.inject(fault)
                try:
                    if number % 2:
                        response = await query(wxpay, wechatpay_server, "soak")
                    else:
                        response = await create(wxpay, wechatpay_server, f"soak-{number}")
                except WeChatPayError as error:
                    outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
                else:
                    assert response.status == 200
                    assert response.json()  # verified and complete
                    outcomes["ok"] = outcomes.get("ok", 0) + 1

        await asyncio.wait_for(
            asyncio.gather(*(one(number) for number in range(total))), timeout=60
        )
    assert sum(outcomes.values()) == total
    assert outcomes["ok"] >= total * 0.85, sorted(outcomes.items())
    assert set(outcomes) - {"ok"} <= {
        "ApiError",
        "TransportError",
        "RequestTimeoutError",
        "SignatureMismatchError",
        "ProbeSignatureError",
        "UnknownSerialError",
    }, outcomes
    # the client closed every connection it opened (bounded wait for the server to notice)
    deadline = time.monotonic() + 5
    while wechatpay_server.open_connections and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert wechatpay_server.open_connections == 0


def test_a_closed_client_keeps_no_event_loop_alive(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    # Attempt deadlines keep a timer on the loop; a closed client, still referenced, must
    # not keep that loop (and what hangs from it) alive.
    merchant_key, wechatpay_key = wechatpay_keys
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one_call() -> WeChatPay:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with FakeWeChatPay(
            merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key
        ) as server:
            wxpay = server.client()
            async with wxpay:
                await create(wxpay, server, "l-1")
            return wxpay

    kept = asyncio.run(one_call())
    gc.collect()
    assert loops[0]() is None, "a closed client kept its event loop alive"
    assert kept.mchid  # the client itself is still here
