"""APIv2 (XML) through the chain, against the fake over real loopback HTTP and HTTPS with a
client certificate: what was sent (checked by an independent implementation written here),
what was verified, and what is refused before anything is sent."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import (
    ApiError,
    ConfigError,
    MissingSignError,
    SignatureMismatchError,
    UnsafeXmlError,
    WeChatPay,
)
from wechatpay_chain.testing import FakeWeChatPay

APPID = "wx2421b1c4370ec43b"
CHINA = datetime.timezone(datetime.timedelta(hours=8))
Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]


def plain_sign(fields: dict[str, str], key: str, sign_type: str = "MD5") -> str:
    """PROTOCOL-V2 section 2, written plainly: non-empty fields but sign, sorted by name,
    joined as k=v with &, then &key=KEY; MD5 or HMAC-SHA256 keyed with the key; upper case."""
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign" and v != "")
    text += f"&key={key}"
    if sign_type == "MD5":
        return hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324 - the protocol's
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def plain_fields(body: bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ElementTree.fromstring(body)}  # noqa: S314


def order(out_trade_no: str, **extra: str | int) -> Any:  # a v2 body for several endpoints
    return {
        "appid": APPID,
        "body": "腾讯充值中心-QQ会员充值",
        "out_trade_no": out_trade_no,
        "total_fee": 888,
        "spbill_create_ip": "123.12.12.123",
        "notify_url": "https://shop.example/wxpay/v2",
        "trade_type": "NATIVE",
        **extra,
    }


@pytest_asyncio.fixture
async def fake(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    merchant_key, wechatpay_key = wechatpay_keys
    async with FakeWeChatPay(
        merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key
    ) as server:
        yield server


@pytest_asyncio.fixture
async def tls_fake(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    merchant_key, wechatpay_key = wechatpay_keys
    async with FakeWeChatPay(
        merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key, tls=True
    ) as server:
        yield server


# -- calls, and what reached the fake ---------------------------------------------------------


async def test_unifiedorder_is_signed_md5_with_a_nonce_and_its_answer_verified(
    fake: FakeWeChatPay,
) -> None:
    fields = order("v2-1")
    async with fake.client() as wxpay:
        answer = await wxpay.v2.pay.unifiedorder.post(xml=fields)
    assert fields == order("v2-1")  # the caller's dict is not changed
    document = answer.xml()
    assert document["result_code"] == "SUCCESS"
    assert document["code_url"].startswith("weixin://wxpay/bizpayurl")
    (sent,) = fake.requests
    assert sent.target == "/pay/unifiedorder"  # the v2/ is not in the URL
    assert "Authorization" not in sent.headers
    received = plain_fields(sent.body)
    assert received["nonce_str"]
    assert "mch_id" not in received  # never filled in
    assert received["sign"] == plain_sign(received, fake.apiv2_key)  # independent check
    assert plain_fields(answer.body)["sign"] == plain_sign(
        plain_fields(answer.body), fake.apiv2_key
    )


async def test_the_three_spellings_reach_the_same_endpoint(fake: FakeWeChatPay) -> None:
    async with fake.client() as wxpay:
        await wxpay.v2.pay.unifiedorder.post(xml=order("s-1"))
        await wxpay["v2/pay/unifiedorder"].post(xml=order("s-2"))
        await wxpay.chain("v2/pay/unifiedorder").post(xml=order("s-3"))
    assert [r.target for r in fake.requests] == ["/pay/unifiedorder"] * 3


@pytest.mark.parametrize("how", ["field", "option"])
async def test_hmac_sha256_by_the_field_or_the_client_option(fake: FakeWeChatPay, how: str) -> None:
    fields = order("h-1", sign_type="HMAC-SHA256") if how == "field" else order("h-1")
    options = {} if how == "field" else {"apiv2_sign_type": "HMAC-SHA256"}
    async with fake.client(**options) as wxpay:
        answer = await wxpay.v2.pay.unifiedorder.post(xml=fields)
    received = plain_fields(fake.requests[0].body)
    assert received["sign_type"] == "HMAC-SHA256"
    assert received["sign"] == plain_sign(received, fake.apiv2_key, "HMAC-SHA256")
    answered = plain_fields(answer.body)
    assert answered["sign"] == plain_sign(answered, fake.apiv2_key, "HMAC-SHA256")


async def test_micropay_answers_userpaying_then_the_query_finds_it_paid(
    fake: FakeWeChatPay,
) -> None:
    async with fake.client() as wxpay:
        with pytest.raises(ApiError) as paying:
            await wxpay.v2.pay.micropay.post(xml=order("m-1", auth_code="134567890123456789"))
        assert paying.value.code == "USERPAYING"
        assert paying.value.detail["result_code"] == "FAIL"
        states = []
        for _ in range(5):  # the cashier polls, a bounded number of times
            answer = await wxpay.v2.pay.orderquery.post(xml={"appid": APPID, "out_trade_no": "m-1"})
            states.append(answer.xml()["trade_state"])
            if states[-1] == "SUCCESS":
                break
    assert states == ["USERPAYING", "SUCCESS"]


async def test_a_result_code_fail_is_an_api_error_with_every_field(fake: FakeWeChatPay) -> None:
    async with fake.client() as wxpay:
        with pytest.raises(ApiError) as raised:
            await wxpay.v2.pay.orderquery.post(xml={"appid": APPID, "out_trade_no": "none"})
    error = raised.value
    assert error.status == 200
    assert error.code == "ORDERNOTEXIST"
    assert error.message == "此交易订单号不存在"
    assert error.detail["err_code"] == "ORDERNOTEXIST"


# -- refused before anything is sent -----------------------------------------------------------


async def test_bad_v2_calls_are_refused_before_sending(fake: FakeWeChatPay) -> None:
    async with fake.client(apiv2_key=None) as keyless:
        with pytest.raises(ConfigError, match="apiv2_key"):
            await keyless.v2.pay.orderquery.post(xml={"appid": APPID, "out_trade_no": "x"})
    async with fake.client() as wxpay:
        with pytest.raises(TypeError, match="xml="):
            await wxpay["v2/pay/orderquery"].post(json={"appid": APPID})
        with pytest.raises(TypeError):
            await wxpay.v2.pay.orderquery.post(xml={"appid": APPID, "out_trade_no": True})
        with pytest.raises(ConfigError, match="mch_id"):
            await wxpay.v2.pay.orderquery.post(
                xml={"appid": APPID, "mch_id": "1230000109", "out_trade_no": "x"}
            )
        with pytest.raises(ConfigError, match="client_cert"):
            await wxpay.v2.secapi.pay.refund.post(xml={"appid": APPID, "out_trade_no": "x"})
        with pytest.raises(TypeError, match="xml="):
            await wxpay["v3/pay/transactions/native"].post(xml={"a": "b"})
    assert fake.requests == []


# -- hostile answers ---------------------------------------------------------------------------


async def hostile_v2(answer: bytes) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/pay/orderquery", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def signed_xml(fields: dict[str, str], key: str, sign_type: str = "MD5") -> bytes:
    fields = {**fields, "sign": plain_sign(fields, key, sign_type)}
    return ("<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items()) + "</xml>").encode()


SUCCESS = {"return_code": "SUCCESS", "result_code": "SUCCESS", "trade_state": "SUCCESS"}


@pytest.mark.parametrize(
    ("answer", "error", "options"),
    [
        (signed_xml(SUCCESS, "wrong-key"), SignatureMismatchError, {}),
        (
            # MD5-signed, to an HMAC-SHA256 request.
            signed_xml(SUCCESS, "K" * 32),
            SignatureMismatchError,
            {"apiv2_sign_type": "HMAC-SHA256"},
        ),
        (
            b"<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code></xml>",
            MissingSignError,
            {},
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e "x">]><xml><a>&e;</a></xml>',
            UnsafeXmlError,
            {},
        ),
        (b"<html>bad gateway</html", ApiError, {}),
    ],
)
async def test_a_forged_or_unsafe_v2_answer_is_refused(
    answer: bytes,
    error: type[Exception],
    options: dict[str, Any],
    wechatpay_keys: Keys,
) -> None:
    runner, url = await hostile_v2(answer)
    try:
        async with WeChatPay(
            "1900000109",
            "ABC123",
            wechatpay_keys[0],
            base_url=url,
            apiv2_key="K" * 32,
            **options,
        ) as wxpay:
            with pytest.raises(error) as raised:
                await wxpay.v2.pay.orderquery.post(xml={"appid": APPID, "out_trade_no": "o"})
        if error is ApiError:
            assert raised.value.body == answer  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()


# -- mTLS --------------------------------------------------------------------------------------


async def test_a_certificate_endpoint_over_https_presents_the_client_certificate(
    tls_fake: FakeWeChatPay,
) -> None:
    assert tls_fake.url.startswith("https://")
    async with tls_fake.client() as wxpay:
        await wxpay.v2.pay.unifiedorder.post(xml=order("t-1"))
        tls_fake.v2.pay("t-1")
        refund = await wxpay.v2.secapi.pay.refund.post(
            xml={
                "appid": APPID,
                "out_trade_no": "t-1",
                "out_refund_no": "r-1",
                "total_fee": 888,
                "refund_fee": 888,
            }
        )
    assert refund.xml()["result_code"] == "SUCCESS"
    assert tls_fake.client_certificate is not None
    assert tls_fake.v2.presented[-1] == tls_fake.client_certificate.serial


async def test_the_fake_refuses_a_certificate_endpoint_without_the_certificate(
    tls_fake: FakeWeChatPay,
) -> None:
    assert tls_fake.ca is not None
    body = signed_xml(
        {"appid": APPID, "mch_id": "1900000109", "nonce_str": "n", "out_trade_no": "t"},
        tls_fake.apiv2_key,
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            tls_fake.url + "/secapi/pay/refund", data=body, ssl=tls_fake.ca.client_context()
        ) as answer,
    ):
        text = await answer.text()
    assert "证书错误" in text
    assert tls_fake.v2.presented == [None]


async def test_a_v2_only_merchant_needs_only_mchid_the_apiv2_key_and_the_p12(
    tls_fake: FakeWeChatPay,
) -> None:
    assert tls_fake.ca is not None
    assert tls_fake.client_certificate is not None
    p12 = tls_fake.client_certificate.pkcs12("1900000109")  # the password WeChat Pay uses
    wxpay = WeChatPay(
        "1900000109",
        apiv2_key=tls_fake.apiv2_key,
        client_cert=p12,
        base_url=tls_fake.url,
        ssl_context=tls_fake.ca.client_context(),
    )
    async with wxpay:
        with pytest.raises(ApiError, match="ORDERNOTEXIST"):
            await wxpay.v2.secapi.pay.reverse.post(xml={"appid": APPID, "out_trade_no": "none"})
    assert tls_fake.v2.presented == [tls_fake.client_certificate.serial]
    with pytest.raises(ConfigError, match="password") as wrong:
        WeChatPay("1900000109", apiv2_key="k", client_cert=p12, client_cert_password="nope")
    assert "nope" not in str(wrong.value)


async def test_two_merchants_share_one_ssl_context_which_is_never_changed(
    tls_fake: FakeWeChatPay, wechatpay_keys: Keys
) -> None:
    assert tls_fake.ca is not None
    assert tls_fake.client_certificate is not None
    shared = tls_fake.ca.client_context()
    before = shared.get_ca_certs(binary_form=True)
    other = tls_fake.ca.client("1900000110")
    clients = [
        tls_fake.client(ssl_context=shared),
        WeChatPay(
            "1900000110",
            apiv2_key="k" * 32,
            client_cert=other.cert_pem + other.key_pem,
            base_url=tls_fake.url,
            ssl_context=shared,
        ),
    ]
    async with clients[0] as first, clients[1] as second:
        await first.v2.pay.unifiedorder.post(xml=order("two-1"))
        with pytest.raises(ApiError):  # another merchant's key: the fake refuses the sign
            await second.v2.pay.unifiedorder.post(xml=order("two-2"))
    assert shared.get_ca_certs(binary_form=True) == before
    assert shared.verify_mode == ssl.CERT_REQUIRED
    assert shared.get_ciphers() != []  # still a working context


# -- bills ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tar_type", [None, "GZIP"])
async def test_the_v2_trade_bill_streams_as_rows_and_saves_whole(
    fake: FakeWeChatPay, tar_type: str | None, tmp_path: Path
) -> None:
    async with fake.client() as wxpay:
        await wxpay.v2.pay.unifiedorder.post(xml=order("b-1"))
        fake.v2.pay("b-1")
        today = datetime.datetime.now(CHINA).date()
        async with wxpay.bills.trade_v2(APPID, today, tar_type=tar_type) as bill:
            rows = [row async for row in bill.rows()]
        assert [row["商户订单号"] for row in rows] == ["b-1"]
        assert bill.summary == {"总交易单数": "1", "应结订单总金额": "8.88"}
        target = tmp_path / "bill.csv"
        async with wxpay.bills.trade_v2(APPID, today, tar_type=tar_type) as bill:
            await bill.save(target)
    assert target.read_bytes() == fake.v2.bill_text()
    sent = plain_fields(fake.requests[-1].body)
    assert sent["mch_id"] == "1900000109"
    assert sent["bill_date"] == today.strftime("%Y%m%d")


async def test_a_v2_bill_error_is_an_api_error_and_leaves_no_file(
    fake: FakeWeChatPay, tmp_path: Path
) -> None:
    target = tmp_path / "bill.csv"
    async with fake.client() as wxpay:
        with pytest.raises(ApiError) as raised:
            async with wxpay.bills.trade_v2(APPID, "2026-01-01") as bill:
                await bill.save(target)
    assert raised.value.code == "20002"
    assert raised.value.message == "No Bill Exist"
    assert not target.exists()


async def test_the_v2_fund_flow_bill_needs_the_certificate_and_comes_over_tls(
    tls_fake: FakeWeChatPay, fake: FakeWeChatPay
) -> None:
    async with fake.client() as plain:
        with pytest.raises(ConfigError, match="client_cert"):
            await plain.bills.fundflow_v2(APPID, "2026-01-01")
    async with tls_fake.client() as wxpay:
        await wxpay.v2.pay.unifiedorder.post(xml=order("f-1"))
        tls_fake.v2.pay("f-1")
        today = datetime.datetime.now(CHINA).date()
        async with wxpay.bills.fundflow_v2(APPID, today, tar_type="GZIP") as bill:
            rows = [row async for row in bill.rows()]
    assert [row["收支金额（元）"] for row in rows] == ["8.88"]
    sent = plain_fields(tls_fake.requests[-1].body)
    assert sent["sign_type"] == "HMAC-SHA256"
    assert sent["sign"] == plain_sign(sent, tls_fake.apiv2_key, "HMAC-SHA256")
    assert tls_fake.client_certificate is not None
    assert tls_fake.v2.presented[-1] == tls_fake.client_certificate.serial


# -- pay-sign, pages, notifications ----------------------------------------------------------------


async def test_v2_pay_parameters_and_the_signed_entrustweb_page(fake: FakeWeChatPay) -> None:
    async with fake.client() as wxpay:
        jsapi = wxpay.payments.jsapi_v2(APPID, "wx201410272009395522657a690389285100")
        assert jsapi["paySign"] == plain_sign(
            {k: v for k, v in jsapi.items() if k != "paySign"}, fake.apiv2_key
        )
        app = wxpay.payments.app_v2(APPID, "wx2014", sign_type="HMAC-SHA256")
        assert app["sign"] == plain_sign(app, fake.apiv2_key, "HMAC-SHA256")
        url = wxpay.payments.v2_url(
            "v2/papay/entrustweb",
            {
                "appid": APPID,
                "mch_id": "1900000109",
                "plan_id": "12535",
                "contract_code": "100000",
                "request_serial": 1000,
                "contract_display_account": "微信代扣",
                "notify_url": "https://shop.example/papay",
                "version": "1.0",
                "timestamp": 1414488825,
            },
        )
    assert url.startswith("https://api.mch.weixin.qq.com/papay/entrustweb?")
    # The fake's page accepts the signed URL, as WeChat Pay's would.
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.url + url.removeprefix("https://api.mch.weixin.qq.com")) as page,
    ):
        assert page.status == 200
    with pytest.raises(ConfigError, match="apiv2_key"):
        fake.client(apiv2_key=None).payments.jsapi_v2(APPID, "wx1")


async def test_a_v2_pay_notification_from_the_fake_is_verified_by_the_client(
    fake: FakeWeChatPay,
) -> None:
    received: list[bytes] = []

    async def webhook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(body=b"<xml><return_code>SUCCESS</return_code></xml>")

    app = web.Application()
    app.router.add_post("/v2notify", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    notify_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2notify"
    try:
        async with fake.client() as wxpay:
            await wxpay.v2.pay.unifiedorder.post(xml=order("n-1", notify_url=notify_url))
            fake.v2.pay("n-1")
            for _ in range(100):  # delivered in the background: wait, bounded
                if received:
                    break
                await asyncio.sleep(0.02)
            notification = wxpay.notifications.parse_v2(received[0])
        assert notification["out_trade_no"] == "n-1"
        assert notification["result_code"] == "SUCCESS"
        forged = received[0].replace(b"888", b"1")
        with pytest.raises(SignatureMismatchError):
            wxpay.notifications.parse_v2(forged)
    finally:
        await runner.cleanup()
