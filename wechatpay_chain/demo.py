"""The demo: real signed calls to the built-in fake WeChat Pay server."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from .response import Response
from .testing import FakeWeChatPay

if TYPE_CHECKING:
    # Names for type checkers only (generated stubs): see docs/chain.md, "Types".
    from .endpoints.schemas import (
        V3PasswordExemptContractContractsQsPreEntrustSignPayRedirectSignPostBody as PreSign,
    )
    from .endpoints.schemas import V3PayTransactionsNativePostBody as NativeOrder

__all__ = ["run_demo"]

_PRE_SIGN = "v3/password-exempt-contract/contracts/qs/pre-entrust-sign/pay-redirect-sign"


def _show(say: Callable[[str], None], how: str, response: Response) -> None:
    say(f"\n{how}\n  {response.method} {response.target}")
    say(f"  -> {response.status}, signature verified, Request-ID {response.request_id}")
    if response.body:
        for line in json.dumps(response.json(), ensure_ascii=False, indent=2).splitlines():
            say("     " + line)


async def run_demo(say: Callable[[str], None]) -> int:
    """Run the demo, reporting through ``say``; returns the process exit status."""
    async with FakeWeChatPay() as server, server.client() as wxpay:
        mchid = server.merchant.mchid
        say(f"fake WeChat Pay listening at {server.url}")
        say(
            f"merchant {mchid}, merchant serial {server.merchant.serial}, WeChat Pay key {server.public_key_id}"
        )

        # The clearing institution orders first; the pre-sign names the order's prepay_id.
        # A literal body: the type checker checks it field by field against the description.
        order = await wxpay.v3.pay.transactions.jsapi.post(
            json={
                "appid": "wxd678efh567hg6787",
                "mchid": mchid,
                "description": "Image形象店-深圳腾大-QQ公仔",
                "out_trade_no": f"demo-jsapi-{secrets.token_hex(6)}",
                "notify_url": "https://merchant.example/notify/pay",
                "amount": {"total": 100, "currency": "CNY"},
                "payer": {"openid": "o-user-1"},
            }
        )
        _show(say, "JSAPI order (its prepay_id opens the pre-sign)", order)
        prepay_id = order.json()["prepay_id"]

        def pre_sign(code: str) -> PreSign:
            return {
                "appid": "wxd678efh567hg6787",
                "sub_appid": "wxd678efh567hg6787",
                "sub_mchid": "1900000110",
                "service_id": 12535,
                "out_contract_code": code,
                "notify_url": "https://merchant.example/notify/entrust",
                "contract_display_account": "微信代扣用户A",
                "prepay_id": prepay_id,
                "openid": "o-user-1",
                "sub_openid": "o-sub-user-1",
            }

        response: Response = (
            await wxpay.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign.post(
                json=pre_sign("contract-attribute")
            )
        )
        _show(
            say,
            "password-exempt pre-sign, attribute chain: wxpay.v3.passwordExemptContract...payRedirectSign",
            response,
        )
        response = await wxpay.chain(_PRE_SIGN).post(json=pre_sign("contract-chain"))
        _show(say, f'the same, written wxpay.chain("{_PRE_SIGN}")', response)
        response = await wxpay[_PRE_SIGN].post(json=pre_sign("contract-item"))
        _show(say, f'the same, written wxpay["{_PRE_SIGN}"]', response)

        native = _native_order(mchid)
        response = await wxpay.v3.pay.transactions.native.post(json=native)
        _show(say, "Native order", response)
        response = await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
            out_trade_no=native["out_trade_no"], params={"mchid": mchid}
        )
        _show(say, "query by out_trade_no, through the placeholder ._out_trade_no_", response)
        response = await wxpay["v3/pay/transactions/out-trade-no/{out_trade_no}/close"].post(
            out_trade_no=native["out_trade_no"], json={"mchid": mchid}
        )
        _show(say, "close the order (204, empty body, still signed and verified)", response)
        say(
            f"\n{len(server.requests)} requests, every one signed by the client and verified by the server; "
            "every answer signed by the server and verified by the client."
        )
    return 0


def _native_order(mchid: str) -> NativeOrder:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": f"demo-native-{secrets.token_hex(6)}",
        "notify_url": "https://merchant.example/notify/pay",
        "amount": {"total": 100, "currency": "CNY"},
    }
