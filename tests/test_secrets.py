"""No secret in any log line, repr or exception message, whatever path a call takes.

Secrets: the merchant private key, the APIv3 key, Authorization header values, decrypted
notification content and a sensitive field's plaintext.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from wechatpay_chain import WeChatPayError
from wechatpay_chain.retries import RetryPolicy
from wechatpay_chain.testing import FakeWeChatPay, Fault, generate_private_key

if TYPE_CHECKING:
    from wechatpay_chain.endpoints.schemas import V3PayTransactionsNativePostBody

APIV3_KEY = "SECRETapiv3KEY-0123456789abcdef!"
PLAINTEXT = "SECRET-PLAINTEXT-张三-110101199003077777"
PAYER = "SECRET-PAYER-oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest_asyncio.fixture
async def wechatpay_server(wechatpay_keys: tuple[Any, Any]) -> AsyncIterator[FakeWeChatPay]:
    """A server that knows the merchant by the recognisable APIv3 key."""
    async with FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0],
        wechatpay_private_key=wechatpay_keys[1],
        apiv3_key=APIV3_KEY,
    ) as server:
        yield server


async def test_no_secret_reaches_logs_reprs_or_errors(
    wechatpay_server: FakeWeChatPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included
    shown: list[str] = []

    def show(*things: Any) -> None:
        for thing in things:
            shown.append(repr(thing))
            shown.append(str(thing))
            if isinstance(thing, BaseException):
                shown.append("".join(traceback.format_exception(thing)))

    policy = RetryPolicy(attempts=2, backoff=0.01, deadline=5)
    async with wechatpay_server.client(retry=policy) as wxpay:
        mchid = wechatpay_server.merchant.mchid
        order: V3PayTransactionsNativePostBody = {
            "appid": "wxd678efh567hg6787",
            "mchid": mchid,
            "description": "secrets",
            "out_trade_no": "s-1",
            "notify_url": "https://merchant.example/notify",
            "amount": {"total": 1},
        }
        # success, a retried read, failures of each kind
        show(
            wxpay,
            wxpay.notifications,
            wxpay.payments,
            await wxpay.v3.pay.transactions.native.post(json=order),
        )
        wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"))
        show(
            await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
                out_trade_no="s-1", params={"mchid": mchid}
            )
        )
        for fault in (
            Fault.error(400, "PARAM_ERROR"),
            Fault.tamper_body(),
            Fault.probe(),
            Fault.drop(),
            Fault.raw(502, b"<html/>"),
        ):
            wechatpay_server.inject(fault)
            try:
                await wxpay.v3.pay.transactions.native.post(json={**order, "out_trade_no": "s-2"})
            except WeChatPayError as error:
                show(error)
        # a wrong merchant key: the server echoes what it verified
        async with wechatpay_server.client(
            apiv3_key=APIV3_KEY, private_key=generate_private_key()
        ) as wrong:
            try:
                await wrong.v3.pay.transactions.native.post(json=order)
            except WeChatPayError as error:
                show(wrong, error)
        # sensitive fields, both ways
        ciphertext = wxpay.encrypt(PLAINTEXT)
        echoed = await wxpay.v3.security.echo.post(
            json={"echo_message": "hi", "encrypted_echo_message": ciphertext}
        )
        show(echoed, wxpay.decrypt(echoed.json()["encrypted_echo_message"]) == PLAINTEXT)
        try:
            wxpay.decrypt(ciphertext)  # for WeChat Pay's key, not ours
        except WeChatPayError as error:
            show(error)
        # notifications: good, and failing verification and decryption
        headers, body = wechatpay_server.build_notification(
            event_type="TRANSACTION.SUCCESS", resource={"payer": {"openid": PAYER}}
        )
        notification = await wxpay.notifications.parse(headers, body)
        assert notification.resource["payer"]["openid"] == PAYER
        show(notification)
        for fault in (Fault.bad_ciphertext(), Fault.tamper_body(), Fault.probe()):
            headers, body = wechatpay_server.build_notification(
                event_type="TRANSACTION.SUCCESS", resource={"payer": {"openid": PAYER}}, fault=fault
            )
            try:
                await wxpay.notifications.parse(headers, body)
            except WeChatPayError as error:
                show(error)
        authorizations = [request.headers["Authorization"] for request in wechatpay_server.requests]
        show(wechatpay_server, wechatpay_server.merchant)

    pem = wechatpay_server.merchant.private_key_pem
    assert pem is not None
    secrets = {APIV3_KEY, PLAINTEXT, PAYER}
    secrets |= {line for line in pem.decode().splitlines() if not line.startswith("-----")}
    secrets |= {authorization.split('signature="')[1][:48] for authorization in authorizations}
    everything = "\n".join([*shown, *(record.getMessage() for record in caplog.records)])
    assert len(caplog.records) >= 8  # the DEBUG logs were there to be read
    leaked = sorted(secret for secret in secrets if secret in everything)
    assert leaked == []
