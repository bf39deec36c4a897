"""The fake server's APIv2 over real loopback HTTP, spoken with plain aiohttp and the pure
``apiv2`` functions in the order the client's pipeline calls them (the chain integration is
tested with the client)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from wechatpay_chain import apiv2
from wechatpay_chain.endpoints import endpoint_facts
from wechatpay_chain.errors import ApiError, DecryptionError, VerificationError
from wechatpay_chain.notifications import Notifications, v2_failure, v2_success
from wechatpay_chain.signing import new_nonce
from wechatpay_chain.testing import FakeWeChatPay
from wechatpay_chain.verifying import Verifier

APPID = "wxd678efh567hg6787"


class Receiver:
    """The merchant's notify_url: a real aiohttp app verifying with Notifications.parse_v2."""

    def __init__(self, apiv2_key: str) -> None:
        self.notifications = Notifications(Verifier({}), None, apiv2_key=apiv2_key)
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        try:
            fields = self.notifications.parse_v2(await request.read())
        except (VerificationError, DecryptionError):
            return v2_failure("签名失败").to_aiohttp()
        self.received.append(fields)
        return v2_success().to_aiohttp()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeWeChatPay]:
    async with FakeWeChatPay() as server:
        yield server


@pytest_asyncio.fixture
async def receiver(fake: FakeWeChatPay) -> AsyncIterator[Receiver]:
    receiver = Receiver(fake.apiv2_key)
    app = web.Application()
    app.router.add_post("/notify", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/notify"
    yield receiver
    await runner.cleanup()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def exchange(
    session: aiohttp.ClientSession,
    fake: FakeWeChatPay,
    path: str,
    fields: Mapping[str, object],
    *,
    sign_type: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    facts = endpoint_facts("POST", "v2/" + path)
    assert facts.known
    body, used = apiv2.prepare_request(
        fields,
        mchid=fake.merchant.mchid,
        apiv2_key=key or fake.apiv2_key,
        sign_type=sign_type,
        nonce=new_nonce,
        sign_types=facts.v2_sign_types,
        nonce_field=facts.v2_nonce,
    )
    async with session.post(
        f"{fake.url}/{path}", data=body, headers={"Content-Type": apiv2.CONTENT_TYPE}
    ) as answer:
        raw = await answer.read()
        status, headers = answer.status, dict(answer.headers)
    return apiv2.check_answer(
        raw,
        apiv2_key=fake.apiv2_key,
        sign_type=used,
        signed=not facts.unsigned,
        status=status,
        headers=headers,
    )


def _order(fake: FakeWeChatPay, out_trade_no: str, **extra: object) -> dict[str, object]:
    return {
        "appid": APPID,
        "mch_id": fake.merchant.mchid,
        "body": "腾讯充值中心-QQ会员充值",
        "out_trade_no": out_trade_no,
        "total_fee": 888,
        "spbill_create_ip": "123.12.12.123",
        **extra,
    }


async def _delivered(fake: FakeWeChatPay, count: int) -> None:
    for delivery in fake.v2.deliveries[:count]:
        await asyncio.wait_for(delivery.done.wait(), 5)
    assert len(fake.v2.deliveries) == count
    assert all(delivery.acknowledged for delivery in fake.v2.deliveries)


@pytest.mark.parametrize("sign_type", [None, "HMAC-SHA256"])
async def test_unifiedorder_pay_notify_query_close(
    fake: FakeWeChatPay, receiver: Receiver, session: aiohttp.ClientSession, sign_type: str | None
) -> None:
    fields = _order(fake, "T1", notify_url=receiver.url, trade_type="NATIVE")
    answer = await exchange(session, fake, "pay/unifiedorder", fields, sign_type=sign_type)
    assert answer["code_url"].startswith("weixin://")
    assert len(answer["sign"]) == (64 if sign_type else 32)
    fake.v2.pay("T1")
    await _delivered(fake, 1)
    assert receiver.received[0]["out_trade_no"] == "T1"
    assert receiver.received[0]["total_fee"] == "888"
    assert receiver.received[0].get("sign_type") == sign_type
    query = await exchange(
        session,
        fake,
        "pay/orderquery",
        {"mch_id": fake.merchant.mchid, "appid": APPID, "out_trade_no": "T1"},
    )
    assert query["trade_state"] == "SUCCESS"
    with pytest.raises(ApiError) as raised:
        await exchange(
            session,
            fake,
            "pay/closeorder",
            {"mch_id": fake.merchant.mchid, "appid": APPID, "out_trade_no": "T1"},
        )
    assert raised.value.code == "ORDERPAID"


async def test_micropay_userpaying_then_success(
    fake: FakeWeChatPay, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ApiError) as raised:
        await exchange(
            session, fake, "pay/micropay", _order(fake, "M1", auth_code="134567890123456789")
        )
    assert raised.value.code == "USERPAYING"
    assert raised.value.detail["result_code"] == "FAIL"
    query = {"mch_id": fake.merchant.mchid, "appid": APPID, "out_trade_no": "M1"}
    states = [
        (await exchange(session, fake, "pay/orderquery", query))["trade_state"] for _ in range(2)
    ]
    assert states == ["USERPAYING", "SUCCESS"]
    reversed_ = await exchange(session, fake, "secapi/pay/reverse", query)
    assert reversed_["recall"] == "N"
    assert (await exchange(session, fake, "pay/orderquery", query))["trade_state"] == "REVOKED"


async def test_a_bad_sign_is_refused_by_the_fake(
    fake: FakeWeChatPay, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ApiError) as raised:
        await exchange(
            session,
            fake,
            "pay/orderquery",
            {"mch_id": fake.merchant.mchid, "out_trade_no": "X"},
            key="0" * 32,
        )
    assert (raised.value.code, raised.value.message) == ("FAIL", "签名错误")
    with pytest.raises(ApiError) as raised:
        await exchange(
            session, fake, "pay/orderquery", {"mch_id": fake.merchant.mchid, "out_trade_no": "X"}
        )
    assert raised.value.code == "ORDERNOTEXIST"
    assert fake.requests[-1].path == "/pay/orderquery"


async def test_refund_notification_and_query(
    fake: FakeWeChatPay, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await exchange(
        session,
        fake,
        "pay/unifiedorder",
        _order(fake, "R1", notify_url=receiver.url, trade_type="JSAPI", openid="o1"),
    )
    fake.v2.pay("R1")
    refund = {
        "appid": APPID,
        "mch_id": fake.merchant.mchid,
        "out_trade_no": "R1",
        "out_refund_no": "RF1",
        "total_fee": 888,
        "refund_fee": 300,
        "notify_url": receiver.url,
    }
    answer = await exchange(session, fake, "secapi/pay/refund", refund)
    assert answer["refund_fee"] == "300"
    await _delivered(fake, 2)
    decrypted = receiver.received[1]["req_info"]
    assert (decrypted["out_refund_no"], decrypted["refund_status"]) == ("RF1", "SUCCESS")
    with pytest.raises(ApiError) as raised:
        await exchange(
            session,
            fake,
            "secapi/pay/refund",
            {**refund, "out_refund_no": "RF2", "refund_fee": 600},
        )
    assert raised.value.code == "PARAM_ERROR"
    query = await exchange(
        session,
        fake,
        "pay/refundquery",
        {"appid": APPID, "mch_id": fake.merchant.mchid, "out_trade_no": "R1"},
    )
    assert (query["refund_count"], query["out_refund_no_0"], query["refund_status_0"]) == (
        "1",
        "RF1",
        "SUCCESS",
    )


async def test_downloadbill_csv_gzip_and_no_bill(
    fake: FakeWeChatPay, session: aiohttp.ClientSession
) -> None:
    facts = endpoint_facts("POST", "v2/pay/downloadbill")
    assert facts.file_answer
    bill = {
        "appid": APPID,
        "mch_id": fake.merchant.mchid,
        "bill_date": "20991231",
        "bill_type": "ALL",
    }
    with pytest.raises(ApiError) as raised:
        await exchange(session, fake, "pay/downloadbill", bill)
    assert raised.value.code == "20002"
    await exchange(
        session,
        fake,
        "pay/unifiedorder",
        _order(fake, "B1", notify_url="http://example.invalid/", trade_type="NATIVE"),
    )
    fake.v2.pay("B1")
    for tar_type in (None, "GZIP"):
        today = fake.v2.orders["B1"].time_end[:8]
        body, _ = apiv2.prepare_request(
            {**bill, "bill_date": today, "tar_type": tar_type},
            mchid=fake.merchant.mchid,
            apiv2_key=fake.apiv2_key,
            sign_type=None,
            nonce=new_nonce,
            sign_types=facts.v2_sign_types,
        )
        async with session.post(f"{fake.url}/pay/downloadbill", data=body) as answer:
            raw = await answer.read()
        assert not apiv2.is_xml(raw[:64])
        text = (gzip.decompress(raw) if tar_type else raw).decode()
        assert text.startswith("交易时间,")
        assert "`B1," in text


async def test_transfers_to_balance_answer_unsigned(
    fake: FakeWeChatPay, session: aiohttp.ClientSession
) -> None:
    transfer = {
        "mch_appid": APPID,
        "mchid": fake.merchant.mchid,
        "partner_trade_no": "P1",
        "openid": "o1",
        "check_name": "NO_CHECK",
        "amount": 100,
        "desc": "理赔",
        "spbill_create_ip": "192.168.0.1",
    }
    answer = await exchange(session, fake, "mmpaymkttransfers/promotion/transfers", transfer)
    assert "sign" not in answer
    assert answer["payment_no"]
    info = await exchange(
        session,
        fake,
        "mmpaymkttransfers/gettransferinfo",
        {"appid": APPID, "mch_id": fake.merchant.mchid, "partner_trade_no": "P1"},
    )
    assert (info["status"], info["payment_amount"]) == ("SUCCESS", "100")


async def test_papay_sign_deduct_terminate(
    fake: FakeWeChatPay, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    page = {
        "appid": APPID,
        "mch_id": fake.merchant.mchid,
        "plan_id": "12535",
        "contract_code": "C1",
        "request_serial": "1000",
        "contract_display_account": "微信代扣",
        "notify_url": receiver.url,
        "version": "1.0",
        "timestamp": str(int(fake.clock())),
    }
    url = apiv2.signed_url(fake.url, "v2/papay/entrustweb", page, fake.apiv2_key)
    async with session.get(url) as answer:
        assert answer.status == 200
    tampered = url.replace("plan_id=12535", "plan_id=12536")
    async with session.get(tampered) as answer:
        assert answer.status == 400
    contract = fake.v2.sign_contract("C1", openid="o9")
    await _delivered(fake, 1)
    assert receiver.received[0]["change_type"] == "ADD"
    assert receiver.received[0]["contract_id"] == contract["contract_id"]
    query = {
        "appid": APPID,
        "mch_id": fake.merchant.mchid,
        "contract_id": contract["contract_id"],
        "version": "1.0",
    }
    assert (await exchange(session, fake, "papay/querycontract", query))["contract_state"] == "0"
    deduct = _order(
        fake, "D1", notify_url=receiver.url, trade_type="PAP", contract_id=contract["contract_id"]
    )
    await exchange(session, fake, "pay/pappayapply", deduct)
    await _delivered(fake, 2)
    assert (receiver.received[1]["out_trade_no"], receiver.received[1]["contract_id"]) == (
        "D1",
        contract["contract_id"],
    )
    await exchange(
        session, fake, "papay/deletecontract", {**query, "contract_termination_remark": "用户解约"}
    )
    await _delivered(fake, 3)
    assert receiver.received[2]["change_type"] == "DELETE"
    assert (await exchange(session, fake, "papay/querycontract", query))["contract_state"] == "1"
    with pytest.raises(ApiError) as raised:
        await exchange(session, fake, "pay/pappayapply", {**deduct, "out_trade_no": "D2"})
    assert raised.value.code == "CONTRACT_ERROR"


async def test_the_fake_has_its_own_random_apiv2_key() -> None:
    first, second = FakeWeChatPay(), FakeWeChatPay(apiv2_key="k" * 32)
    assert len(first.apiv2_key) == 32
    assert first.apiv2_key != FakeWeChatPay().apiv2_key
    assert second.apiv2_key == "k" * 32
