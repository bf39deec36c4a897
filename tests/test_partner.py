"""Service-provider (partner) calls against the fake: orders for a sub-merchant, queries with
``sp_mchid`` and ``sub_mchid``, close, refunds with ``sub_mchid``, partner notifications, and
the password-exempt pre-sign flow in partner form, end to end, verified by the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from wechatpay_chain import ApiError, Notification, WeChatPay
from wechatpay_chain.testing import FakeWeChatPay

SP_APPID = "wx8888888888888888"
SUB_APPID = "wxd678efh567hg6999"
SUB_MCHID = "1900000109"
SP_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
SUB_OPENID = "oUpF8uMEb4qRXf22hE3X68TekukE"


class Webhook:
    """The sub-merchant's notify_url: a real aiohttp app that verifies what arrives."""

    def __init__(self, wxpay: WeChatPay) -> None:
        self.wxpay = wxpay
        self.received: list[Notification] = []
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await self.wxpay.notifications.from_aiohttp(request))
        self.arrived.set()
        return web.Response(status=204)

    async def __aenter__(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/notify", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/notify"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def next(self) -> Notification:
        await asyncio.wait_for(self.arrived.wait(), 10)
        self.arrived.clear()
        return self.received[-1]


@pytest_asyncio.fixture
async def provider(wechatpay_server: FakeWeChatPay) -> AsyncIterator[WeChatPay]:
    async with wechatpay_server.client() as wxpay:
        yield wxpay


def partner_order(
    fake: FakeWeChatPay, out_trade_no: str, notify_url: str = "https://sp.example/n", **extra: Any
) -> Any:  # the body of the four partner order endpoints
    return {
        "sp_appid": SP_APPID,
        "sp_mchid": fake.merchant.mchid,
        "sub_appid": SUB_APPID,
        "sub_mchid": SUB_MCHID,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "amount": {"total": 100, "currency": "CNY"},
        **extra,
    }


@pytest.mark.parametrize(
    ("kind", "answer_field", "extra"),
    [
        ("jsapi", "prepay_id", {"payer": {"sub_openid": SUB_OPENID}}),
        ("app", "prepay_id", {}),
        ("native", "code_url", {}),
        ("h5", "h5_url", {"scene_info": {"payer_client_ip": "14.23.150.211"}}),
    ],
)
async def test_partner_orders_of_each_kind(
    wechatpay_server: FakeWeChatPay,
    provider: WeChatPay,
    kind: str,
    answer_field: str,
    extra: dict[str, Any],
) -> None:
    body = partner_order(wechatpay_server, f"p-{kind}", **extra)
    answer = await provider["v3/pay/partner/transactions/" + kind].post(json=body)
    assert answer.json()[answer_field]
    assert wechatpay_server.requests[-1].json()["sub_mchid"] == SUB_MCHID


async def test_a_partner_order_is_queried_closed_and_refused_for_another_sub_merchant(
    wechatpay_server: FakeWeChatPay, provider: WeChatPay
) -> None:
    sp_mchid = wechatpay_server.merchant.mchid
    await provider.v3.pay.partner.transactions.native.post(
        json=partner_order(wechatpay_server, "p-q")
    )
    node = provider["v3/pay/partner/transactions/out-trade-no/{out_trade_no}"]
    found = await node.get(
        out_trade_no="p-q", params={"sp_mchid": sp_mchid, "sub_mchid": SUB_MCHID}
    )
    document = found.json()
    assert (document["sp_mchid"], document["sub_mchid"], document["sub_appid"]) == (
        sp_mchid,
        SUB_MCHID,
        SUB_APPID,
    )
    assert document["trade_state"] == "NOTPAY"
    with pytest.raises(ApiError) as other:  # another sub-merchant does not see it
        await node.get(out_trade_no="p-q", params={"sp_mchid": sp_mchid, "sub_mchid": "1900000110"})
    assert other.value.status == 404
    with pytest.raises(ApiError) as direct:  # nor does the direct-merchant query
        await provider["v3/pay/transactions/out-trade-no/{out_trade_no}"].get(
            out_trade_no="p-q", params={"mchid": sp_mchid}
        )
    assert direct.value.status == 404
    closed = await provider["v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close"].post(
        out_trade_no="p-q", json={"sp_mchid": sp_mchid, "sub_mchid": SUB_MCHID}
    )
    assert closed.status == 204
    again = await node.get(
        out_trade_no="p-q", params={"sp_mchid": sp_mchid, "sub_mchid": SUB_MCHID}
    )
    assert again.json()["trade_state"] == "CLOSED"


async def test_a_partner_payment_and_refund_notify_the_sub_merchant_in_partner_form(
    wechatpay_server: FakeWeChatPay, provider: WeChatPay
) -> None:
    sp_mchid = wechatpay_server.merchant.mchid
    async with Webhook(provider) as webhook:
        await provider.v3.pay.partner.transactions.jsapi.post(
            json=partner_order(wechatpay_server, "p-n", webhook.url, payer={"sp_openid": SP_OPENID})
        )
        wechatpay_server.pay("p-n", openid=SUB_OPENID)
        paid = await webhook.next()
        resource = paid.resource
        assert paid.event_type == "TRANSACTION.SUCCESS"
        assert (resource["sp_mchid"], resource["sub_mchid"]) == (sp_mchid, SUB_MCHID)
        assert resource["payer"] == {"sp_openid": SP_OPENID, "sub_openid": SUB_OPENID}
        by_id = await provider["v3/pay/partner/transactions/id/{transaction_id}"].get(
            transaction_id=resource["transaction_id"],
            params={"sp_mchid": sp_mchid, "sub_mchid": SUB_MCHID},
        )
        assert by_id.json()["trade_state"] == "SUCCESS"

        refund: Any = {  # sent whole, and without sub_mchid
            "sub_mchid": SUB_MCHID,
            "out_trade_no": "p-n",
            "out_refund_no": "pr-1",
            "notify_url": webhook.url,
            "amount": {"refund": 40, "total": 100, "currency": "CNY"},
        }
        with pytest.raises(ApiError):  # a sub-merchant's order needs its sub_mchid
            await provider["v3/refund/domestic/refunds"].post(
                json={k: v for k, v in refund.items() if k != "sub_mchid"}
            )
        answer = await provider.v3.refund.domestic.refunds.post(json=refund)
        assert answer.json()["status"] == "SUCCESS"
        refunded = await webhook.next()
        assert refunded.event_type == "REFUND.SUCCESS"
        assert (refunded.resource["sp_mchid"], refunded.resource["sub_mchid"]) == (
            sp_mchid,
            SUB_MCHID,
        )
        queried = await provider["v3/refund/domestic/refunds/{out_refund_no}"].get(
            out_refund_no="pr-1", params={"sub_mchid": SUB_MCHID}
        )
        assert queried.json()["amount"]["refund"] == 40


async def test_the_seeds_pre_sign_flow_in_partner_form_end_to_end(
    wechatpay_server: FakeWeChatPay, provider: WeChatPay
) -> None:
    async with Webhook(provider) as webhook:
        order = await provider.v3.pay.partner.transactions.jsapi.post(
            json=partner_order(
                wechatpay_server, "p-c", webhook.url, payer={"sub_openid": SUB_OPENID}
            )
        )
        pre_sign = await provider.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign.post(
            json={
                "appid": SP_APPID,
                "sub_appid": SUB_APPID,
                "sub_mchid": SUB_MCHID,
                "service_id": 12345,
                "out_contract_code": "pc-1",
                "notify_url": webhook.url,
                "contract_display_account": "QQ公仔会员",
                "prepay_id": order.json()["prepay_id"],
            }
        )
        assert pre_sign.json()["out_contract_code"] == "pc-1"
        wechatpay_server.pay("p-c", openid=SUB_OPENID)
        assert (await webhook.next()).event_type == "TRANSACTION.SUCCESS"
        wechatpay_server.sign_contract("pc-1", openid=SUB_OPENID)
        signed = await webhook.next()
    assert signed.event_type == "ENTRUST.SIGN"
    assert (
        signed.resource["sub_mchid"],
        signed.resource["sub_appid"],
        signed.resource["sub_openid"],
    ) == (SUB_MCHID, SUB_APPID, SUB_OPENID)
    assert signed.resource["contract_state"] == "SIGNED"
