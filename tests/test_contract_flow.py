"""The password-exempt contract (免密支付) end to end: order, pre-sign, payment, signing,
query, termination, with the notifications received by a real aiohttp app.

This is the flow the project started from (PROTOCOL.md section 14), driven through the
public client against the fake server over loopback.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import ApiError, Notification, WeChatPay, WeChatPayError
from wechatpay_chain.notifications import failure, success
from wechatpay_chain.testing import FakeWeChatPay

if TYPE_CHECKING:
    # Names for type checkers only: the generated stubs (docs/chain.md, "Types").
    from wechatpay_chain.endpoints.schemas import (
        V3PasswordExemptContractContractsQsPreEntrustSignPayRedirectSignPostBody as PreSign,
    )

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
PRE_SIGN = "v3/password-exempt-contract/contracts/qs/pre-entrust-sign/pay-redirect-sign"
CONTRACT = "v3/password-exempt-contract/contracts/service-id/{service_id}/out-contract-code/{out_contract_code}"
SERVICE_ID = 12535
TWO_HOURS = 2 * 60 * 60


class Receiver:
    """A merchant's webhook endpoint: verifies, records, acknowledges."""

    def __init__(self, wxpay: WeChatPay) -> None:
        self.wxpay = wxpay
        self.received: list[Notification] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        try:
            notification = await self.wxpay.notifications.from_aiohttp(request)
        except WeChatPayError as error:
            return failure(str(error), status=401).to_aiohttp()
        self.received.append(notification)
        return success().to_aiohttp()

    def of_type(self, event_type: str) -> list[Notification]:
        return [
            notification for notification in self.received if notification.event_type == event_type
        ]


class Clock:
    """A server time a test can move forward (the client shares it)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_780_000_000.0)


@pytest_asyncio.fixture
async def server(wechatpay_keys: Keys, clock: Clock) -> AsyncIterator[FakeWeChatPay]:
    merchant_key, wechatpay_key = wechatpay_keys
    async with FakeWeChatPay(
        merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key, clock=clock
    ) as fake:
        fake.notification_time_scale = 0.0001
        yield fake


@pytest_asyncio.fixture
async def wxpay(server: FakeWeChatPay) -> AsyncIterator[WeChatPay]:
    async with server.client() as client:
        yield client


@pytest_asyncio.fixture
async def receiver(wxpay: WeChatPay) -> AsyncIterator[Receiver]:
    endpoint = Receiver(wxpay)
    app = web.Application()
    app.router.add_post("/notify/{kind}", endpoint.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        endpoint.url = f"http://127.0.0.1:{sock.getsockname()[1]}/notify"
        yield endpoint
    finally:
        await runner.cleanup()
        sock.close()


async def jsapi_order(
    wxpay: WeChatPay, server: FakeWeChatPay, receiver: Receiver, number: str
) -> str:
    response = await wxpay.v3.pay.transactions.jsapi.post(
        json={
            "appid": "wxd678efh567hg6787",
            "mchid": server.merchant.mchid,
            "description": "会员月卡",
            "out_trade_no": number,
            "notify_url": f"{receiver.url}/pay",
            "amount": {"total": 990, "currency": "CNY"},
            "payer": {"openid": "o-user-1"},
        }
    )
    prepay_id: str = response.json()["prepay_id"]
    return prepay_id


def pre_sign_body(receiver: Receiver, prepay_id: str, code: str) -> PreSign:
    return {
        "appid": "wxd678efh567hg6787",
        "sub_appid": "wxd678efh567hg6999",
        "sub_mchid": "1900000110",
        "service_id": SERVICE_ID,
        "out_contract_code": code,
        "notify_url": f"{receiver.url}/entrust",
        "contract_display_account": "微信代扣用户A",
        "prepay_id": prepay_id,
        "openid": "o-user-1",
        "sub_openid": "o-sub-user-1",
    }


async def test_from_order_to_termination(
    server: FakeWeChatPay, wxpay: WeChatPay, receiver: Receiver
) -> None:
    prepay_id = await jsapi_order(wxpay, server, receiver, "order-1")
    pre_signed = (
        await wxpay.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign.post(
            json=pre_sign_body(receiver, prepay_id, "contract-1")
        )
    )
    assert pre_signed.json() == {
        "mchid": server.merchant.mchid,
        "service_id": SERVICE_ID,
        "out_contract_code": "contract-1",
    }

    # The user pays, then accepts the contract offered after payment.
    server.pay("order-1", openid="o-user-1")
    await server.deliveries[-1].wait(timeout=5)
    contract = server.sign_contract("contract-1")
    signed_delivery = await server.deliveries[-1].wait(timeout=5)
    assert signed_delivery.delivered
    assert [attempt.status for attempt in signed_delivery.attempts] == [204]

    [paid] = receiver.of_type("TRANSACTION.SUCCESS")
    assert paid.resource["out_trade_no"] == "order-1"
    assert paid.resource["trade_state"] == "SUCCESS"
    [signed] = receiver.of_type("ENTRUST.SIGN")
    assert signed.original_type == "entrust"
    assert signed.resource["contract_state"] == "SIGNED"
    assert signed.resource["contract_id"] == contract["contract_id"]
    assert signed.resource["out_contract_code"] == "contract-1"
    assert signed.resource["sub_mchid"] == "1900000110"

    node = wxpay[CONTRACT]
    queried = await node.get(service_id=SERVICE_ID, out_contract_code="contract-1")
    assert queried.json()["contract_state"] == "SIGNED"
    assert queried.json()["contract_id"] == contract["contract_id"]
    assert queried.json()["contract_display_account"] == "微信代扣用户A"

    contracts = wxpay.v3.passwordExemptContract.contracts
    by_code = contracts.serviceId._service_id_.outContractCode._out_contract_code_
    terminated = await by_code.terminate.post(
        service_id=SERVICE_ID,
        out_contract_code="contract-1",
        json={"contract_termination_remark": "用户申请解约"},
    )
    assert terminated.json() == {
        "mchid": server.merchant.mchid,
        "service_id": SERVICE_ID,
        "out_contract_code": "contract-1",
    }
    await server.deliveries[-1].wait(timeout=5)
    [ended] = receiver.of_type("ENTRUST.TERMINATE")
    assert ended.resource["contract_state"] == "TERMINATED"
    assert (
        ended.resource["contract_terminate_info"]["contract_termination_remark"] == "用户申请解约"
    )

    queried = await node.get(service_id=SERVICE_ID, out_contract_code="contract-1")
    assert queried.json()["contract_state"] == "TERMINATED"
    with pytest.raises(ApiError) as again:
        await node.terminate.post(
            service_id=SERVICE_ID,
            out_contract_code="contract-1",
            json={"contract_termination_remark": "again"},
        )
    assert (again.value.status, again.value.code) == (400, "INVALID_REQUEST")


async def test_mini_program_pre_sign_is_signed_without_a_payment(
    server: FakeWeChatPay, wxpay: WeChatPay, receiver: Receiver
) -> None:
    answer = await wxpay.v3.passwordExemptContract.contracts.normal.preEntrustSign.miniProgram.post(
        json={
            "appid": "wxd678efh567hg6787",
            "service_id": SERVICE_ID,
            "out_contract_code": "mini-1",
            "notify_url": f"{receiver.url}/entrust",
            "contract_display_account": "微信代扣用户B",
            "openid": "o-user-2",
        }
    )
    assert answer.json()["pre_entrustweb_id"]
    server.sign_contract("mini-1")
    await server.deliveries[-1].wait(timeout=5)
    [signed] = receiver.of_type("ENTRUST.SIGN")
    assert signed.resource["openid"] == "o-user-2"


async def test_pre_sign_refusals_use_wechat_pays_error_shape(
    server: FakeWeChatPay, wxpay: WeChatPay, receiver: Receiver, clock: Clock
) -> None:
    node = wxpay[PRE_SIGN]
    with pytest.raises(ApiError) as unknown:
        await node.post(json=pre_sign_body(receiver, "wx-not-an-order", "c-unknown"))
    assert (unknown.value.status, unknown.value.code) == (400, "PARAM_ERROR")
    assert unknown.value.detail["field"] == "/prepay_id"

    prepay_id = await jsapi_order(wxpay, server, receiver, "order-2")
    await node.post(json=pre_sign_body(receiver, prepay_id, "c-dup"))
    with pytest.raises(ApiError) as duplicate:
        await node.post(json=pre_sign_body(receiver, prepay_id, "c-dup"))
    assert (duplicate.value.status, duplicate.value.code) == (400, "INVALID_REQUEST")
    assert "c-dup" in (duplicate.value.message or "")

    missing = pre_sign_body(receiver, prepay_id, "c-missing")
    del missing["contract_display_account"]  # type: ignore[misc]
    with pytest.raises(ApiError) as incomplete:
        await node.post(json=missing)
    assert incomplete.value.detail["field"] == "/contract_display_account"

    # A prepay_id lives two hours: the same order no longer opens a pre-sign after that.
    clock.now += TWO_HOURS + 1
    with pytest.raises(ApiError) as expired:
        await node.post(json=pre_sign_body(receiver, prepay_id, "c-late"))
    assert expired.value.detail["field"] == "/prepay_id"
    assert "失效" in (expired.value.message or "")
    assert set(server.contracts.pre_signs) == {"c-dup"}


async def test_the_user_cannot_sign_before_paying_or_after_the_session(
    server: FakeWeChatPay, wxpay: WeChatPay, receiver: Receiver, clock: Clock
) -> None:
    prepay_id = await jsapi_order(wxpay, server, receiver, "order-3")
    await wxpay[PRE_SIGN].post(json=pre_sign_body(receiver, prepay_id, "c-3"))
    with pytest.raises(ValueError, match="pay the pre-signed order first"):
        server.sign_contract("c-3")
    server.pay("order-3")
    clock.now += TWO_HOURS + 1
    with pytest.raises(ValueError, match="expired"):
        server.sign_contract("c-3")
    with pytest.raises(ApiError) as never_signed:
        await wxpay[CONTRACT].get(service_id=SERVICE_ID, out_contract_code="c-3")
    assert (never_signed.value.status, never_signed.value.code) == (404, "RESOURCE_NOT_EXISTS")
    assert receiver.of_type("ENTRUST.SIGN") == []
