"""The client end to end against the fake server: configuration, headers, bodies, errors,
verification, concurrency and session ownership."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import (
    ApiError,
    ConfigError,
    ConnectError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    RequestTimeoutError,
    Response,
    SignatureMismatchError,
    TimestampSkewError,
    TransportError,
    UnknownSerialError,
    VerificationError,
    WeChatPay,
    WeChatPayError,
)
from wechatpay_chain.testing import FakeWeChatPay, Fault, generate_private_key

DATA = Path(__file__).parent / "data"


# Any: extra fields go in as the test needs them, described or not.
def native_order(server: FakeWeChatPay, out_trade_no: str = "order-1", **extra: Any) -> Any:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": server.merchant.mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": "https://merchant.example/notify",
        "amount": {"total": 100, "currency": "CNY"},
        **extra,
    }


async def query(wxpay: WeChatPay, server: FakeWeChatPay, out_trade_no: str = "order-1") -> Response:
    return await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no=out_trade_no, params={"mchid": server.merchant.mchid}
    )


# -- what is sent ------------------------------------------------------------------------------


async def test_request_carries_the_documented_headers(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    headers = wechatpay_server.requests[-1].headers
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("wechatpay-chain/")
    assert f"aiohttp/{aiohttp.__version__}" in headers["User-Agent"]
    assert "Python/" in headers["User-Agent"]
    assert headers["Wechatpay-Serial"] == wechatpay_server.public_key_id
    authorization = headers["Authorization"]
    assert authorization.startswith(
        f'WECHATPAY2-SHA256-RSA2048 mchid="{wechatpay_server.merchant.mchid}",'
    )
    assert f'serial_no="{wechatpay_server.merchant.serial}"' in authorization


async def test_json_body_is_serialised_once_compact_utf8_and_signed_as_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    order = native_order(wechatpay_server, attach='备注 "quoted"')
    snapshot = copy.deepcopy(order)
    response = await wechatpay_client.v3.pay.transactions.native.post(json=order)
    sent = wechatpay_server.requests[-1].body
    assert sent == json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode()
    assert "形象店".encode() in sent  # not \\u escapes
    assert response.status == 200  # the server verified the signature over these bytes
    assert order == snapshot  # the caller's dict is untouched


async def test_user_headers_are_added_without_mutating_them(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    extra = {"X-Trace": "t-1", "Accept-Language": "zh-CN"}
    snapshot = dict(extra)
    await wechatpay_client.v3.pay.transactions.native.post(
        json=native_order(wechatpay_server), headers=extra
    )
    assert wechatpay_server.requests[-1].headers["X-Trace"] == "t-1"
    assert wechatpay_server.requests[-1].headers["Accept-Language"] == "zh-CN"
    assert extra == snapshot


async def test_raw_data_body_is_signed_as_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    raw = '{"appid": "x",   "spaced": true}'
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.native.post(data=raw)
    assert caught.value.code == "PARAM_ERROR"  # the body was read, so the signature held
    assert wechatpay_server.requests[-1].body == raw.encode()


async def test_post_without_body_signs_the_empty_body(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.native.post()
    assert caught.value.code == "PARAM_ERROR"
    assert wechatpay_server.requests[-1].body == b""


async def test_body_arguments_are_checked_before_sending(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(TypeError, match="not both"):
        await wechatpay_client.v3.x.post(json={}, data=b"{}")  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="GET request carries no body"):
        await wechatpay_client.v3.x.request("GET", json={"a": 1})  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="data= takes bytes or str"):
        await wechatpay_client.v3.x.post(data=123)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        await wechatpay_client.v3.x.post(json={"not serialisable": object()})  # type: ignore[attr-defined]
    assert wechatpay_server.requests == []


# -- what comes back ---------------------------------------------------------------------------


async def test_response_is_verified_and_complete(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    response = await wechatpay_client.v3.pay.transactions.native.post(
        json=native_order(wechatpay_server)
    )
    assert response.status == 200
    assert response.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert response.text == response.body.decode()
    assert response.request_id is not None
    assert response.request_id.endswith("-0")
    assert (
        response.headers["wechatpay-serial"] == wechatpay_server.public_key_id
    )  # case-insensitive
    assert (response.method, response.target) == ("POST", "/v3/pay/transactions/native")
    closed = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
        out_trade_no="order-1", json={"mchid": wechatpay_server.merchant.mchid}
    )
    assert (closed.status, closed.body, closed.json()) == (204, b"", None)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "PARAM_ERROR"),
        (401, "SIGN_ERROR"),
        (403, "NO_AUTH"),
        (404, "ORDER_NOT_EXIST"),
        (429, "FREQUENCY_LIMITED"),
        (500, "SYSTEM_ERROR"),
    ],
)
async def test_non_2xx_raises_api_error_with_everything_needed(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, status: int, code: str
) -> None:
    wechatpay_server.inject(Fault.error(status, code, f"message for {code}"))
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    error = caught.value
    assert isinstance(error, WeChatPayError)
    assert (error.status, error.code, error.message) == (status, code, f"message for {code}")
    assert error.request_id is not None
    assert error.request_id == error.headers["request-id"]
    assert json.loads(error.body) == {"code": code, "message": f"message for {code}"}
    assert str(error) == f"HTTP {status} {code}: message for {code} (Request-ID {error.request_id})"


async def test_api_error_keeps_the_detail(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.jsapi.post(json=native_order(wechatpay_server))
    assert caught.value.status == 400
    assert caught.value.detail == {
        "field": "/payer/openid",
        "issue": "JSAPI下单 payer.openid 为必填参数",
        "location": "body",
    }


async def test_html_error_body_still_raises_a_clean_api_error(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    # every attempt of the (retried) query meets the proxy's page
    wechatpay_server.inject(Fault.raw(502, page), times=3)
    with pytest.raises(ApiError) as caught:
        await query(wechatpay_client, wechatpay_server)
    assert len(wechatpay_server.requests) == 3
    error = caught.value
    assert (error.status, error.code, error.message, error.detail, error.request_id) == (
        502,
        None,
        None,
        None,
        None,
    )
    assert error.body == page
    assert error.headers["Content-Type"].startswith("text/html")
    assert str(error) == f"HTTP 502: a non-JSON body of {len(page)} bytes"


async def test_a_wrong_merchant_key_is_answered_sign_error_with_what_the_server_verified(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(private_key=generate_private_key()) as wxpay:
        with pytest.raises(ApiError) as caught:
            await wxpay.v3.pay.transactions.id._transaction_id_.get(
                transaction_id="42", params={"mchid": "1"}
            )
    error = caught.value
    assert (error.status, error.code) == (401, "SIGN_ERROR")
    assert error.detail["sign_information"]["url"] == "/v3/pay/transactions/id/42?mchid=1"
    assert error.detail["sign_information"]["method"] == "GET"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.tamper_body(), SignatureMismatchError),
        (Fault.probe(), ProbeSignatureError),
        (Fault.wrong_serial(), UnknownSerialError),
        # 5 s past the 300 s window: stamped and checked in whole wall-clock seconds, which
        # can tick in between (the exact boundary is tested with a fixed clock elsewhere).
        (Fault.stale_timestamp(305), TimestampSkewError),
        (Fault.stale_timestamp(-305), TimestampSkewError),
        (Fault.unsigned(), MissingSignatureHeaderError),
    ],
)
async def test_unverifiable_answers_raise_and_hand_back_nothing(
    wechatpay_server: FakeWeChatPay,
    wechatpay_client: WeChatPay,
    fault: Fault,
    error_type: type[Exception],
) -> None:
    await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    wechatpay_server.inject(fault)
    with pytest.raises(error_type) as caught:
        await query(wechatpay_client, wechatpay_server)
    assert isinstance(caught.value, VerificationError)
    assert caught.value.request_id is not None
    # the client is still usable: the failed answer's connection was released, not leaked
    assert (await query(wechatpay_client, wechatpay_server)).status == 200


async def test_probe_error_says_it_was_a_probe(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.probe())
    with pytest.raises(ProbeSignatureError, match="probe"):
        await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))


async def test_tampered_empty_204_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    wechatpay_server.inject(Fault.tamper_body())
    with pytest.raises(SignatureMismatchError):
        await wechatpay_client["v3/pay/transactions/out-trade-no/{out_trade_no}/close"].post(
            out_trade_no="order-1", json={"mchid": wechatpay_server.merchant.mchid}
        )


async def test_non_2xx_answers_are_not_verified(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    # An error is an error whatever its signature: the probe must not mask the ApiError.
    wechatpay_server.inject(
        Fault.raw(503, b'{"code":"SERVICE_UNAVAILABLE","message":"busy"}', "application/json")
    )
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
            out_trade_no="order-1", params={"mchid": wechatpay_server.merchant.mchid}, retry="never"
        )
    assert caught.value.code == "SERVICE_UNAVAILABLE"


# -- clocks ------------------------------------------------------------------------------------


async def test_injected_clock_signs_requests(wechatpay_server: FakeWeChatPay) -> None:
    ahead = wechatpay_server.clock() + 305  # past the 300 s window even if a second ticks
    async with wechatpay_server.client(clock=lambda: ahead) as wxpay:
        with pytest.raises(ApiError) as caught:
            await wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    assert caught.value.code == "SIGN_ERROR"
    assert "5分钟" in (caught.value.message or "")


async def test_injected_clock_verifies_responses(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    # A server and client sharing a fixed clock in 2024 work together: the client accepts
    # the server's 2024 timestamps because its own clock says 2024 too.
    then = 1722850421.0
    merchant_key, wechatpay_key = wechatpay_keys
    async with (
        FakeWeChatPay(
            merchant_private_key=merchant_key,
            wechatpay_private_key=wechatpay_key,
            clock=lambda: then,
        ) as server,
        server.client() as wxpay,
    ):
        response = await wxpay.v3.pay.transactions.native.post(json=native_order(server))
    assert response.headers["Wechatpay-Timestamp"] == "1722850421"
    assert server.requests[-1].headers["Authorization"].count('timestamp="1722850421"') == 1


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("mchid", 1900000109, "mchid"),
        ("mchid", "", "mchid"),
        ("serial", "not hex!", "serial"),
        (
            "apiv3_key",
            "short",
            "apiv3_key: expected the 32-byte APIv3 key as str or bytes; got 5 bytes",
        ),
        ("apiv3_key", 12345, "apiv3_key"),
        ("private_key", b"garbage", "private_key"),
        ("private_key", "no-such-file.pem", "no file at 'no-such-file.pem'"),
        ("public_keys", {"PUB_KEY_ID_1": b"garbage"}, "public_keys"),
        ("base_url", "ftp://example.com", "base_url"),
        ("base_url", "https://api.mch.weixin.qq.com/?x=1", "base_url"),
        ("timeout", 0, "timeout"),
    ],
)
async def test_bad_configuration_raises_before_any_request(
    wechatpay_server: FakeWeChatPay, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        wechatpay_server.client(**{option: value})
    assert wechatpay_server.requests == []


def test_construction_needs_no_running_loop_and_does_no_io() -> None:
    key = generate_private_key()
    wxpay = WeChatPay("1900000109", "ABCDEF", key, base_url="http://127.0.0.1:9")
    assert repr(wxpay) == "<WeChatPay mchid='1900000109' base_url='http://127.0.0.1:9'>"


async def test_secrets_stay_out_of_reprs(wechatpay_server: FakeWeChatPay) -> None:
    apiv3_key = "SECRETapiv3keySECRETapiv3key1234"
    pem = wechatpay_server.merchant.private_key_pem
    assert pem is not None
    async with wechatpay_server.client(apiv3_key=apiv3_key) as wxpay:
        response = await wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
        authorization = wechatpay_server.requests[-1].headers["Authorization"]
        shown = " ".join(
            [
                repr(wxpay),
                str(vars(wxpay).keys()),
                repr(response),
                repr(wxpay.middlewares),
                repr(wechatpay_server.merchant),
            ]
        )
    signature = authorization.rsplit('signature="', 1)[1][:-1]
    for secret in (apiv3_key, signature, pem.decode().splitlines()[1]):
        assert secret not in shown


async def test_official_test_merchant_key_in_every_form(vectors: dict[str, Any]) -> None:
    merchant = vectors["merchant"]
    pkcs1 = (DATA / "merchant_key_pkcs1.pem").read_bytes()
    loaded = serialization.load_pem_private_key(pkcs1, password=None)
    der = loaded.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    async with FakeWeChatPay(
        mchid=merchant["mchid"],
        serial=merchant["serial"],
        merchant_public_key=DATA / "merchant_public_key.pem",
    ) as server:
        for key in (
            str(DATA / "merchant_key_pkcs8.pem"),
            DATA / "merchant_key_pkcs1.pem",
            pkcs1,
            pkcs1.decode(),
            der,
            loaded,
        ):
            async with server.client(private_key=key) as wxpay:
                assert (
                    await wxpay.v3.pay.transactions.native.post(json=native_order(server))
                ).status == 200


# -- transport ---------------------------------------------------------------------------------


async def test_timeout_per_call_and_per_client(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client(timeout=0.2) as wxpay:
        wechatpay_server.inject(Fault.delay(1.0))
        with pytest.raises(RequestTimeoutError) as caught:
            await wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
        assert isinstance(caught.value, TimeoutError)
        wechatpay_server.inject(Fault.delay(0.4))
        response = await wxpay.v3.pay.transactions.native.post(
            json=native_order(wechatpay_server), timeout=5
        )
        assert response.status == 200


async def test_nothing_listening_raises_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WeChatPay(
        "1900000109", "ABCDEF", generate_private_key(), base_url=f"http://127.0.0.1:{port}"
    ) as wxpay:
        with pytest.raises(ConnectError, match="cannot connect"):
            await wxpay.v3.pay.transactions.native.post(json={})  # type: ignore[typeddict-item]


async def test_dropped_connection_raises_transport_error_for_a_write(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.drop())
    with pytest.raises(TransportError):
        await wechatpay_client.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    assert len(wechatpay_server.requests) == 1  # a payment is never resent on its own


async def test_200_concurrent_requests_all_signed_and_verified(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    orders = [native_order(wechatpay_server, f"order-{n}") for n in range(200)]
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(wechatpay_client.v3.pay.transactions.native.post(json=order) for order in orders)
        ),
        30,
    )
    assert [response.status for response in responses] == [200] * 200
    assert len({response.json()["code_url"] for response in responses}) == 200
    nonces = {
        request.headers["Authorization"].split('nonce_str="')[1][:32]
        for request in wechatpay_server.requests
    }
    assert len(nonces) == 200
    assert set(wechatpay_server.state.orders) == {order["out_trade_no"] for order in orders}


# -- sessions ----------------------------------------------------------------------------------


async def test_a_session_the_user_owns_is_used_and_left_open(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with wechatpay_server.client(session=session) as wxpay:
            assert (
                await wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
            ).status == 200
        assert not session.closed
        async with session.get(wechatpay_server.url + "/v3/unsigned") as raw:
            assert raw.status == 401  # the user's own requests stay theirs: not signed by us


async def test_middlewares_on_a_session_of_your_own(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    async with aiohttp.ClientSession(
        middlewares=wechatpay_client.middlewares, headers={"Accept": "application/json"}
    ) as session:
        url = wechatpay_server.url + "/v3/pay/transactions/native"
        async with session.post(url, json=native_order(wechatpay_server)) as answer:
            assert answer.status == 200
            assert (await answer.json())["code_url"].startswith("weixin://")
        wechatpay_server.inject(Fault.tamper_body())
        with pytest.raises(SignatureMismatchError):
            async with session.post(url, json=native_order(wechatpay_server, "order-2")):
                pass


async def test_closed_client_refuses_to_send(wechatpay_server: FakeWeChatPay) -> None:
    wxpay = wechatpay_server.client()
    await wxpay.close()
    with pytest.raises(RuntimeError, match="closed"):
        await query(wxpay, wechatpay_server)
    await wxpay.close()  # closing twice is harmless


async def test_session_opens_lazily_and_closes(wechatpay_server: FakeWeChatPay) -> None:
    wxpay = wechatpay_server.client()
    try:
        await wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server))
    finally:
        await wxpay.close()
    assert len(wechatpay_server.requests) == 1


async def test_signing_in_a_worker_thread_signs_the_same_way(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(sign_in_thread=True) as wxpay:
        responses = await asyncio.gather(
            *(
                wxpay.v3.pay.transactions.native.post(json=native_order(wechatpay_server, f"t-{n}"))
                for n in range(20)
            )
        )
    assert [response.status for response in responses] == [200] * 20  # the server verified each
