"""Real webhook apps receiving the fake server's notifications over loopback HTTP.

Two apps with the same logic, one on ``aiohttp.web`` (``from_aiohttp`` / ``to_aiohttp``) and
one on FastAPI under uvicorn (``from_starlette`` / ``to_starlette``): verify and decrypt,
record the notification, answer 204; on a ``WeChatPayError`` answer 4xx/5xx so that WeChat
Pay (here the fake server) sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse

from wechatpay_chain import WeChatPay
from wechatpay_chain.errors import (
    DecryptionError,
    InvalidNotificationError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    SignatureMismatchError,
    TimestampSkewError,
    UnknownSerialError,
    VerificationError,
    WeChatPayError,
)
from wechatpay_chain.notifications import Acknowledgement, Notification, failure, success
from wechatpay_chain.testing import RETRY_SCHEDULE, FakeWeChatPay, Fault

if TYPE_CHECKING:
    # Names for type checkers only: the generated stubs (docs/chain.md, "Types").
    from wechatpay_chain.endpoints.schemas import V3PayTransactionsNativePostBody

#: The whole 24 h resend schedule in about 0.09 s.
TIME_SCALE = 1e-6
#: Upper bound for any delivery in these tests (a whole schedule takes well under a second).
DELIVERY_TIMEOUT = 10.0
APPID = "wxd678efh567hg6787"
RESOURCE: dict[str, Any] = {
    "out_trade_no": "order-20240501-0001",
    "transaction_id": "4200000985202103031441826014",
    "trade_state": "SUCCESS",
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "amount": {"total": 100, "currency": "CNY"},
}


@dataclass
class Receiver:
    """What a merchant's webhook app saw, and how it answers."""

    wxpay: WeChatPay
    kind: str
    url: str = ""
    notifications: list[Notification] = field(default_factory=list)
    errors: list[WeChatPayError] = field(default_factory=list)
    always_fail: bool = False

    async def handle(self, parse: Callable[[], Any]) -> Acknowledgement:
        """The handler both apps share: ``parse`` is ``from_aiohttp`` / ``from_starlette``."""
        if self.always_fail:
            return failure("the database is down", status=500)
        try:
            notification: Notification = await parse()
        except WeChatPayError as error:
            self.errors.append(error)
            # Not proven, or not well-formed: 400; proven but undecryptable: 500.
            status = (
                400 if isinstance(error, (VerificationError, InvalidNotificationError)) else 500
            )
            return failure(str(error), status=status)
        self.notifications.append(notification)
        return success()


@contextlib.asynccontextmanager
async def _serve_aiohttp(receiver: Receiver) -> AsyncIterator[str]:
    async def notify(request: web.Request) -> web.Response:
        answer = await receiver.handle(lambda: receiver.wxpay.notifications.from_aiohttp(request))
        return answer.to_aiohttp()

    app = web.Application()
    app.router.add_post("/notify/pay", notify)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/notify/pay"
    finally:
        await runner.cleanup()
        sock.close()


@contextlib.asynccontextmanager
async def _serve_fastapi(receiver: Receiver) -> AsyncIterator[str]:
    app = FastAPI()

    @app.post("/notify/pay", response_model=None)
    async def notify(request: StarletteRequest) -> StarletteResponse:
        answer = await receiver.handle(lambda: receiver.wxpay.notifications.from_starlette(request))
        return answer.to_starlette()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + 5.0
        while not server.started:
            if task.done():
                task.result()  # serve() failed: raise its error
                raise AssertionError("uvicorn stopped before it started")
            assert loop.time() < deadline, "uvicorn did not start within 5 s"
            await asyncio.sleep(0)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/notify/pay"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5.0)
        sock.close()


SERVERS = {"aiohttp": _serve_aiohttp, "fastapi": _serve_fastapi}


@pytest_asyncio.fixture(params=sorted(SERVERS))
async def receiver(
    request: pytest.FixtureRequest,
    wechatpay_server: FakeWeChatPay,
    wechatpay_client: WeChatPay,
) -> AsyncIterator[Receiver]:
    wechatpay_server.notification_time_scale = TIME_SCALE
    kind: str = request.param
    app = Receiver(wechatpay_client, kind)
    async with SERVERS[kind](app) as url:
        app.url = url
        yield app


@pytest_asyncio.fixture
async def aiohttp_receiver(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> AsyncIterator[Receiver]:
    wechatpay_server.notification_time_scale = TIME_SCALE
    app = Receiver(wechatpay_client, "aiohttp")
    async with _serve_aiohttp(app) as url:
        app.url = url
        yield app


# -- delivery ------------------------------------------------------------------------------------


async def test_a_notification_is_delivered_once_and_acknowledged_with_204(
    wechatpay_server: FakeWeChatPay, receiver: Receiver
) -> None:
    delivery = await wechatpay_server.notify(
        receiver.url, event_type="TRANSACTION.SUCCESS", resource=RESOURCE, summary="支付成功"
    )

    assert delivery.delivered is True
    assert delivery.finished is True
    assert [(a.number, a.status, a.error, a.fault) for a in delivery.attempts] == [
        (1, 204, None, None)
    ]
    assert receiver.errors == []
    [notification] = receiver.notifications
    assert notification.id == delivery.id
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.summary == "支付成功"
    assert notification.resource == RESOURCE
    assert notification.request_id is not None
    assert wechatpay_server.deliveries == [delivery]


FAULTS: list[tuple[Fault, type[WeChatPayError], int]] = [
    (Fault.probe(), ProbeSignatureError, 400),
    (Fault.tamper_body(), SignatureMismatchError, 400),
    (Fault.wrong_key(), SignatureMismatchError, 400),
    (Fault.stale_timestamp(), TimestampSkewError, 400),
    (Fault.wrong_serial(), UnknownSerialError, 400),
    (Fault.unsigned(), MissingSignatureHeaderError, 400),
    (Fault.bad_ciphertext(), DecryptionError, 500),
]


@pytest.mark.parametrize(
    ("fault", "error_type", "status"), FAULTS, ids=[fault.kind for fault, _, _ in FAULTS]
)
async def test_a_spoilt_first_send_is_refused_and_the_resend_accepted(
    wechatpay_server: FakeWeChatPay,
    receiver: Receiver,
    fault: Fault,
    error_type: type[WeChatPayError],
    status: int,
) -> None:
    delivery = await wechatpay_server.notify(
        receiver.url, event_type="TRANSACTION.SUCCESS", resource=RESOURCE, fault=fault
    )

    assert delivery.delivered is True
    first, second = delivery.attempts
    assert (first.number, first.status, first.fault) == (1, status, fault.kind)
    assert (second.number, second.status, second.fault) == (2, 204, None)
    assert first.error is None  # answered, just not with a 2xx
    [error] = receiver.errors
    assert type(error) is error_type
    [notification] = receiver.notifications
    assert notification.id == delivery.id
    assert notification.resource == RESOURCE


async def test_an_app_that_always_fails_gets_the_whole_schedule_then_nothing(
    wechatpay_server: FakeWeChatPay, receiver: Receiver
) -> None:
    receiver.always_fail = True

    delivery = await wechatpay_server.notify(
        receiver.url, event_type="REFUND.SUCCESS", resource={"refund_id": "1"}, wait=False
    )
    await delivery.wait(timeout=DELIVERY_TIMEOUT)

    assert delivery.delivered is False
    assert delivery.finished is True
    assert len(delivery.attempts) == 1 + len(RETRY_SCHEDULE) == 16
    assert [attempt.number for attempt in delivery.attempts] == list(range(1, 17))
    assert {attempt.status for attempt in delivery.attempts} == {500}
    assert receiver.notifications == []


async def test_the_acknowledgements_on_the_wire(
    wechatpay_server: FakeWeChatPay, receiver: Receiver
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=RESOURCE
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(receiver.url, data=body, headers=headers) as answer:
            accepted = (answer.status, await answer.read(), answer.headers.get("Content-Type"))
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
        async with session.post(receiver.url, data=body, headers=headers) as answer:
            refused = (answer.status, await answer.json(), answer.headers.get("Content-Type"))

    assert accepted == (204, b"", None)
    status, document, content_type = refused
    assert status == 400
    assert content_type == "application/json"
    assert document["code"] == "FAIL"
    assert "probe" in document["message"]
    assert [type(error) for error in receiver.errors] == [ProbeSignatureError]
    assert [n.resource for n in receiver.notifications] == [RESOURCE]


async def test_a_non_utf8_header_byte_is_refused_as_unverified(
    wechatpay_server: FakeWeChatPay, receiver: Receiver
) -> None:
    # An attacker's POST with a 0xFF byte in Wechatpay-Nonce (everything else WeChat Pay's
    # own): the app must still get a WeChatPayError to turn into a 4xx, not a crash.
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=RESOURCE
    )
    head = b"".join(
        f"{name}: {value}\r\n".encode()
        for name, value in headers.items()
        if name != "Wechatpay-Nonce"
    )
    port = int(receiver.url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
    try:
        writer.write(
            b"POST /notify/pay HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + head
            + b"Wechatpay-Nonce: "
            + headers["Wechatpay-Nonce"].encode()
            + b"\xff\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
        await writer.wait_closed()

    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b'"code":"FAIL"' in answer
    assert [type(error) for error in receiver.errors] == [SignatureMismatchError]
    assert receiver.notifications == []


# -- notifications the fake server fires by itself ------------------------------------------------


def _order(out_trade_no: str, mchid: str, notify_url: str) -> V3PayTransactionsNativePostBody:
    return {
        "appid": APPID,
        "mchid": mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "amount": {"total": 100, "currency": "CNY"},
    }


async def test_paying_and_refunding_an_order_notify_its_notify_url(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, receiver: Receiver
) -> None:
    mchid = wechatpay_server.merchant.mchid
    out_trade_no = f"webhook-{receiver.kind}-1"
    await wechatpay_client.v3.pay.transactions.native.post(
        json=_order(out_trade_no, mchid, receiver.url)
    )
    assert wechatpay_server.deliveries == []  # ordering notifies nobody

    wechatpay_server.pay(out_trade_no)
    paid = await wechatpay_server.deliveries[-1].wait(timeout=DELIVERY_TIMEOUT)
    queried = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no=out_trade_no, params={"mchid": mchid}
    )

    assert paid.delivered is True
    assert paid.url == receiver.url
    [notification] = receiver.notifications
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.original_type == "transaction"
    transaction = queried.json()
    assert notification.resource["trade_state"] == "SUCCESS" == transaction["trade_state"]
    assert notification.resource["out_trade_no"] == out_trade_no
    assert notification.resource["transaction_id"] == transaction["transaction_id"]
    assert transaction["transaction_id"].startswith("42000")

    refund = await wechatpay_client.v3.refund.domestic.refunds.post(
        json={
            "out_trade_no": out_trade_no,
            "out_refund_no": f"refund-{receiver.kind}-1",
            "notify_url": receiver.url,
            "amount": {"refund": 30, "total": 100, "currency": "CNY"},
        }
    )
    refunded = await wechatpay_server.deliveries[-1].wait(timeout=DELIVERY_TIMEOUT)

    assert refunded is not paid
    assert refunded.delivered is True
    assert len(receiver.notifications) == 2
    refund_notice = receiver.notifications[-1]
    assert refund_notice.event_type == "REFUND.SUCCESS"
    assert refund_notice.original_type == "refund"
    assert refund_notice.resource["refund_id"] == refund.json()["refund_id"]
    assert refund_notice.resource["refund_status"] == "SUCCESS"
    assert refund_notice.resource["transaction_id"] == transaction["transaction_id"]
    assert refund_notice.resource["amount"]["refund"] == 30
    assert receiver.errors == []


async def test_a_refund_without_notify_url_notifies_nobody(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, aiohttp_receiver: Receiver
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await wechatpay_client.v3.pay.transactions.native.post(
        json=_order("quiet-1", mchid, aiohttp_receiver.url)
    )
    wechatpay_server.pay("quiet-1")
    await wechatpay_server.deliveries[-1].wait(timeout=DELIVERY_TIMEOUT)

    await wechatpay_client.v3.refund.domestic.refunds.post(
        json={
            "out_trade_no": "quiet-1",
            "out_refund_no": "quiet-refund-1",
            "amount": {"refund": 100, "total": 100, "currency": "CNY"},
        }
    )

    assert len(wechatpay_server.deliveries) == 1
    assert [n.event_type for n in aiohttp_receiver.notifications] == ["TRANSACTION.SUCCESS"]


# -- only loopback -----------------------------------------------------------------------------------


async def test_a_non_loopback_notify_url_is_never_contacted(
    wechatpay_server: FakeWeChatPay,
) -> None:
    wechatpay_server.notification_time_scale = TIME_SCALE

    delivery = await asyncio.wait_for(
        wechatpay_server.notify(
            "https://merchant.example/notify", event_type="TRANSACTION.SUCCESS", resource=RESOURCE
        ),
        timeout=DELIVERY_TIMEOUT,
    )

    assert delivery.delivered is False
    assert delivery.finished is True
    # One attempt, refused before any connection, DNS lookup or resend.
    assert len(delivery.attempts) == 1, [attempt.error for attempt in delivery.attempts]
    [attempt] = delivery.attempts
    assert attempt.status is None
    assert attempt.error is not None
    assert "not sent" in attempt.error


async def test_an_unspecified_address_is_not_loopback_either(
    wechatpay_server: FakeWeChatPay, aiohttp_receiver: Receiver
) -> None:
    # 0.0.0.0 is not a loopback address (ipaddress says so), yet on Linux a connection to it
    # reaches this machine: if the fake server sent anything, the app below would get it.
    port = aiohttp_receiver.url.split(":")[2]
    url = f"http://0.0.0.0:{port}"

    delivery = await asyncio.wait_for(
        wechatpay_server.notify(url, event_type="TRANSACTION.SUCCESS", resource=RESOURCE),
        timeout=DELIVERY_TIMEOUT,
    )

    assert aiohttp_receiver.notifications == [], "a non-loopback notify_url was contacted"
    assert delivery.delivered is False
    assert len(delivery.attempts) == 1
    assert delivery.attempts[0].error is not None
    assert "not sent" in delivery.attempts[0].error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_hosts_are_delivered_to(
    wechatpay_server: FakeWeChatPay, aiohttp_receiver: Receiver, host: str
) -> None:
    url = aiohttp_receiver.url.replace("127.0.0.1", host)

    delivery = await wechatpay_server.notify(
        url, event_type="TRANSACTION.SUCCESS", resource=RESOURCE, wait=False
    )
    await delivery.wait(timeout=DELIVERY_TIMEOUT)

    assert delivery.delivered is True
    assert [attempt.status for attempt in delivery.attempts] == [204]
    assert [n.resource for n in aiohttp_receiver.notifications] == [RESOURCE]
