"""The fake WeChat Pay server (wechatpay_chain.testing.FakeWeChatPay), as its users rely on it.

Everything goes over real loopback HTTP. Authentication is exercised with a raw aiohttp
client signed by hand with ``Signer``, to show that any WeChat Pay client can be pointed at
the server; the rest goes through the ``WeChatPay`` client of the package's pytest plugin.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDictProxy
from yarl import URL

from wechatpay_chain import WeChatPay
from wechatpay_chain.client import USER_AGENT
from wechatpay_chain.errors import (
    ApiError,
    ConfigError,
    ConnectError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    RequestTimeoutError,
    SignatureMismatchError,
    TimestampSkewError,
    TransportError,
    UnknownSerialError,
    VerificationError,
)
from wechatpay_chain.signing import Signer, request_message, rsa_sign
from wechatpay_chain.testing import ApiFailure, FakeWeChatPay, Fault, RecordedRequest, Reply
from wechatpay_chain.verifying import Verifier

if TYPE_CHECKING:
    # Names for type checkers only: the generated stubs (docs/chain.md, "Types").
    from wechatpay_chain.endpoints.schemas import V3RefundDomesticRefundsPostBody

DATA = Path(__file__).parent / "data"
SCHEME = "WECHATPAY2-SHA256-RSA2048"
APPID = "wxd678efh567hg6787"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
NATIVE = "/v3/pay/transactions/native"
#: A fixed "now" for the servers whose clock a test controls.
NOW = 1_750_000_000

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]


# -- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# Any: a body for several order endpoints (native, jsapi, app), extra fields included.
def _order(mchid: str, out_trade_no: str, **extra: Any) -> Any:
    return {
        "appid": APPID,
        "mchid": mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": "https://merchant.example/notify/pay",
        "amount": {"total": 100, "currency": "CNY"},
        **extra,
    }


def _encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _auth_parameters(authorization: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', authorization.partition(" ")[2]))


async def _send_raw(
    http: aiohttp.ClientSession,
    server: FakeWeChatPay,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    signer: Signer | None = None,
    signed_body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> tuple[RawAnswer, str]:
    """Send ``method target`` with a plain aiohttp session; returns the answer and the
    Authorization value sent ("" when unsigned). ``signed_body`` signs other bytes than sent."""
    send: dict[str, str] = {"Accept": "application/json", "User-Agent": "raw-aiohttp/1.0 (test)"}
    if body:
        send["Content-Type"] = "application/json"
    authorization = ""
    if signer is not None:
        authorization = signer.authorization(
            method, target, body if signed_body is None else signed_body
        )
        send["Authorization"] = authorization
    send.update(headers or {})
    for name in skip:
        send.pop(name, None)
    async with http.request(
        method,
        URL(server.url + target, encoded=True),
        data=body if method != "GET" else None,
        headers=send,
        skip_auto_headers=skip,
    ) as answer:
        return RawAnswer(answer.status, answer.headers, await answer.read()), authorization


def _assert_sign_error(answer: RawAnswer) -> dict[str, Any]:
    assert answer.status == 401, answer.body
    document: dict[str, Any] = answer.json()
    assert document["code"] == "SIGN_ERROR"
    assert isinstance(document["message"], str)
    assert document["message"]
    return document


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session: no signing, no verifying."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def signer(wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys) -> Signer:
    """Signs as the merchant the ``wechatpay_server`` fixture knows."""
    merchant = wechatpay_server.merchant
    return Signer(merchant.mchid, merchant.serial, wechatpay_keys[0])


@pytest_asyncio.fixture
async def fixed_clock_server(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    """A started server whose clock reads ``NOW`` forever."""
    async with FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0],
        wechatpay_private_key=wechatpay_keys[1],
        clock=lambda: NOW,
    ) as server:
        yield server


# -- 1. authentication, with a raw aiohttp client ------------------------------------------


async def test_signed_request_is_accepted_and_the_answer_is_signed(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession
) -> None:
    body = _encode(_order(wechatpay_server.merchant.mchid, "raw-1"))
    answer, _ = await _send_raw(http, wechatpay_server, "POST", NATIVE, body=body, signer=signer)

    assert answer.status == 200, answer.body
    assert answer.json()["code_url"].startswith("weixin://")
    headers = answer.headers
    assert headers["Wechatpay-Serial"] == wechatpay_server.public_key_id
    assert headers["Wechatpay-Signature-Type"] == SCHEME
    assert headers["Wechatpay-Timestamp"].isdigit()
    assert abs(int(headers["Wechatpay-Timestamp"]) - time.time()) < 60
    assert headers["Wechatpay-Nonce"]
    assert headers["Wechatpay-Signature"]
    assert headers["Request-ID"]
    # Any client holding the server's public key can verify the raw bytes received.
    Verifier({wechatpay_server.public_key_id: wechatpay_server.public_key_pem}).verify(
        headers, answer.body
    )
    # ...and the signature covers the body: one changed byte and it no longer verifies.
    with pytest.raises(SignatureMismatchError):
        Verifier({wechatpay_server.public_key_id: wechatpay_server.public_key_pem}).verify(
            headers, answer.body.replace(b"weixin", b"weixim")
        )
    assert "raw-1" in wechatpay_server.state.orders


async def test_signed_get_with_a_query_is_accepted(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await _send_raw(
        http, wechatpay_server, "POST", NATIVE, body=_encode(_order(mchid, "raw-q")), signer=signer
    )
    target = f"/v3/pay/transactions/out-trade-no/raw-q?mchid={mchid}"
    answer, _ = await _send_raw(http, wechatpay_server, "GET", target, signer=signer)

    assert answer.status == 200, answer.body
    assert answer.json()["out_trade_no"] == "raw-q"
    Verifier({wechatpay_server.public_key_id: wechatpay_server.public_key_pem}).verify(
        answer.headers, answer.body
    )


async def test_signature_by_another_key_is_a_sign_error_echoing_what_was_verified(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    merchant = wechatpay_server.merchant
    impostor = Signer(merchant.mchid, merchant.serial, wechatpay_keys[1])  # not the merchant's key
    target = f"/v3/pay/transactions/out-trade-no/T%201?mchid={merchant.mchid}&x=a%2Fb"
    answer, authorization = await _send_raw(http, wechatpay_server, "GET", target, signer=impostor)

    document = _assert_sign_error(answer)
    parameters = _auth_parameters(authorization)
    timestamp, nonce = int(parameters["timestamp"]), parameters["nonce_str"]
    information = document["detail"]["sign_information"]
    assert information["method"] == "GET"
    assert information["url"] == target
    assert information["sign_message_length"] == len(
        request_message("GET", target, timestamp, nonce, b"")
    )
    # The shape of WeChat Pay's own echo (PROTOCOL.md 1.2): nonce abridged, empty body line.
    assert (
        information["truncated_sign_message"] == f"GET\n{target}\n{timestamp}\n{nonce[:4]}...\n\n"
    )


async def test_signature_over_another_body_than_sent_is_a_sign_error(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession
) -> None:
    mchid = wechatpay_server.merchant.mchid
    sent = _encode(_order(mchid, "raw-2"))
    signed = json.dumps(
        _order(mchid, "raw-2"), ensure_ascii=False
    ).encode()  # same data, other bytes
    target = NATIVE + "?note=x"
    answer, authorization = await _send_raw(
        http, wechatpay_server, "POST", target, body=sent, signer=signer, signed_body=signed
    )

    document = _assert_sign_error(answer)
    information = document["detail"]["sign_information"]
    parameters = _auth_parameters(authorization)
    timestamp, nonce = int(parameters["timestamp"]), parameters["nonce_str"]
    assert information["method"] == "POST"
    assert information["url"] == target
    # The server computes the message over the bytes it received, not the ones signed.
    assert information["sign_message_length"] == len(
        request_message("POST", target, timestamp, nonce, sent)
    )
    assert information["truncated_sign_message"].startswith(
        f"POST\n{target}\n{timestamp}\n{nonce[:4]}...\n"
    )
    assert wechatpay_server.state.orders == {}


async def test_wrong_merchant_serial_is_a_sign_error(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    wrong = Signer(
        wechatpay_server.merchant.mchid,
        "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
        wechatpay_keys[0],
    )
    assert wrong.serial != wechatpay_server.merchant.serial
    answer, _ = await _send_raw(http, wechatpay_server, "GET", "/v3/custom", signer=wrong)
    assert "序列号" in _assert_sign_error(answer)["message"]


async def test_merchant_serial_is_compared_case_insensitively(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    merchant = wechatpay_server.merchant
    lower = Signer(merchant.mchid, merchant.serial.lower(), wechatpay_keys[0])
    answer, _ = await _send_raw(
        http, wechatpay_server, "GET", "/v3/pay/transactions/id/1?mchid=1", signer=lower
    )
    # Authentication passed; the route itself answers.
    assert answer.status == 400
    assert answer.json()["code"] == "PARAM_ERROR"


async def test_wrong_mchid_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    other = Signer("1230000109", wechatpay_server.merchant.serial, wechatpay_keys[0])
    assert other.mchid != wechatpay_server.merchant.mchid
    answer, _ = await _send_raw(http, wechatpay_server, "GET", "/v3/custom", signer=other)
    _assert_sign_error(answer)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer abc", id="other-scheme"),
        pytest.param(SCHEME, id="no-parameters"),
        pytest.param(f"{SCHEME} mchid=1900000109,nonce_str=abc", id="unquoted-and-incomplete"),
        pytest.param(
            f'{SCHEME} mchid="1900000109",nonce_str="abc",timestamp="{int(time.time())}",serial_no="AB"',
            id="no-signature",
        ),
    ],
)
async def test_missing_or_malformed_authorization_is_a_sign_error(
    wechatpay_server: FakeWeChatPay, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer, _ = await _send_raw(http, wechatpay_server, "GET", "/v3/custom", headers=headers)
    _assert_sign_error(answer)


async def test_signature_that_is_not_base64_is_a_sign_error(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession
) -> None:
    good = signer.authorization("GET", "/v3/custom")
    broken = re.sub(r'signature="[^"]*"', 'signature="not*base64"', good)
    answer, _ = await _send_raw(
        http, wechatpay_server, "GET", "/v3/custom", headers={"Authorization": broken}
    )
    assert _assert_sign_error(answer)["detail"]["sign_information"]["url"] == "/v3/custom"


async def test_authorization_parameters_in_any_order_are_accepted(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    # The PHP and axios SDKs send mchid,serial_no,timestamp,nonce_str,signature (PROTOCOL.md 1.1).
    merchant = wechatpay_server.merchant
    body = _encode(_order(merchant.mchid, "php-order"))
    timestamp, nonce = int(time.time()), "593BEC0C930BF1AFEB40B4A08C8FB242"
    signature = rsa_sign(wechatpay_keys[0], request_message("POST", NATIVE, timestamp, nonce, body))
    authorization = (
        f'{SCHEME} mchid="{merchant.mchid}",serial_no="{merchant.serial}",timestamp="{timestamp}",'
        f'nonce_str="{nonce}",signature="{signature}"'
    )
    answer, _ = await _send_raw(
        http, wechatpay_server, "POST", NATIVE, body=body, headers={"Authorization": authorization}
    )
    assert answer.status == 200, answer.body
    assert "php-order" in wechatpay_server.state.orders


async def test_request_naming_an_unknown_wechatpay_serial_is_a_param_error(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession
) -> None:
    answer, _ = await _send_raw(
        http,
        wechatpay_server,
        "GET",
        "/v3/custom",
        signer=signer,
        headers={"Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000"},
    )
    assert answer.status == 400
    assert answer.json()["code"] == "PARAM_ERROR"


async def test_server_with_a_lower_case_certificate_serial_accepts_its_own_client(
    wechatpay_keys: Keys,
) -> None:
    """A platform-certificate serial is hexadecimal and case-insensitive (the client's
    ``PublicKeyStore`` upper-cases it, and the server compares the merchant serial
    case-insensitively); the server must accept its own ``client()`` whatever the case.
    """
    serial = "5157f09efdc096de15ebe81a47057a7232f1b8e1"
    async with (
        FakeWeChatPay(
            merchant_private_key=wechatpay_keys[0],
            wechatpay_private_key=wechatpay_keys[1],
            public_key_id=serial,
        ) as server,
        server.client() as wxpay,
    ):
        response = await wxpay.v3.pay.transactions.native.post(
            json=_order(server.merchant.mchid, "cert-serial")
        )
        assert response.json()["code_url"].startswith("weixin://")


@pytest.mark.parametrize("offset", [-301, 301])
async def test_timestamp_more_than_five_minutes_off_is_a_sign_error(
    fixed_clock_server: FakeWeChatPay,
    wechatpay_keys: Keys,
    http: aiohttp.ClientSession,
    offset: int,
) -> None:
    merchant = fixed_clock_server.merchant
    skewed = Signer(merchant.mchid, merchant.serial, wechatpay_keys[0], clock=lambda: NOW + offset)
    body = _encode(_order(merchant.mchid, "skewed"))
    answer, _ = await _send_raw(http, fixed_clock_server, "POST", NATIVE, body=body, signer=skewed)
    assert "5分钟" in _assert_sign_error(answer)["message"]
    assert fixed_clock_server.state.orders == {}


@pytest.mark.parametrize("offset", [-300, 300])
async def test_timestamp_exactly_five_minutes_off_is_accepted(
    fixed_clock_server: FakeWeChatPay,
    wechatpay_keys: Keys,
    http: aiohttp.ClientSession,
    offset: int,
) -> None:
    merchant = fixed_clock_server.merchant
    skewed = Signer(merchant.mchid, merchant.serial, wechatpay_keys[0], clock=lambda: NOW + offset)
    body = _encode(_order(merchant.mchid, "on-the-edge"))
    answer, _ = await _send_raw(http, fixed_clock_server, "POST", NATIVE, body=body, signer=skewed)
    assert answer.status == 200, answer.body
    assert answer.headers["Wechatpay-Timestamp"] == str(NOW)  # the server's own clock
    verifier = Verifier(
        {fixed_clock_server.public_key_id: fixed_clock_server.public_key_pem}, clock=lambda: NOW
    )
    verifier.verify(answer.headers, answer.body)


@pytest.mark.parametrize("header", ["Accept", "User-Agent"])
async def test_missing_accept_or_user_agent_is_an_invalid_request(
    wechatpay_server: FakeWeChatPay, signer: Signer, http: aiohttp.ClientSession, header: str
) -> None:
    body = _encode(_order(wechatpay_server.merchant.mchid, "no-header"))
    answer, _ = await _send_raw(
        http, wechatpay_server, "POST", NATIVE, body=body, signer=signer, skip=(header,)
    )

    assert header not in wechatpay_server.requests[-1].headers
    assert answer.status == 400
    assert answer.json()["code"] == "INVALID_REQUEST"
    assert wechatpay_server.state.orders == {}


async def test_server_knowing_only_the_merchant_public_key(
    vectors: dict[str, Any], wechatpay_keys: Keys, http: aiohttp.ClientSession
) -> None:
    merchant = vectors["merchant"]
    mchid, serial = merchant["mchid"], merchant["serial"]
    private_key = DATA / merchant["private_key_pkcs8"]
    async with FakeWeChatPay(
        mchid=mchid,
        serial=serial,
        merchant_public_key=DATA / merchant["public_key"],
        wechatpay_private_key=wechatpay_keys[1],
    ) as server:
        assert server.merchant.mchid == mchid
        assert server.merchant.serial == serial
        assert server.merchant.private_key_pem is None

        official = Signer(mchid, serial, private_key)
        answer, _ = await _send_raw(
            http, server, "POST", NATIVE, body=_encode(_order(mchid, "official-1")), signer=official
        )
        assert answer.status == 200, answer.body
        Verifier({server.public_key_id: server.public_key_pem}).verify(answer.headers, answer.body)

        # It really verifies with that public key: another key with the same mchid and serial fails.
        impostor = Signer(mchid, serial, wechatpay_keys[0])
        answer, _ = await _send_raw(
            http, server, "POST", NATIVE, body=_encode(_order(mchid, "x")), signer=impostor
        )
        _assert_sign_error(answer)

        with pytest.raises(ConfigError, match="private_key"):
            server.client()
        async with server.client(private_key=private_key) as wxpay:
            response = await wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
                out_trade_no="official-1", params={"mchid": mchid}
            )
        assert response.json()["trade_state"] == "NOTPAY"
        assert response.json()["mchid"] == mchid


# -- 2. routing ----------------------------------------------------------------------------


async def test_unknown_path_is_404_with_code_and_message(wechatpay_client: WeChatPay) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.no.such.thing.get()  # type: ignore[attr-defined]
    error = caught.value
    assert error.status == 404
    document = json.loads(error.body)
    assert isinstance(document["code"], str)
    assert document["code"]
    assert isinstance(document["message"], str)
    assert document["message"]
    assert error.code == document["code"]
    assert error.request_id


async def test_known_path_with_wrong_method_is_405(wechatpay_client: WeChatPay) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.native.get()  # type: ignore[attr-defined]
    assert caught.value.status == 405
    assert caught.value.code


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-handler", "async-handler"])
async def test_custom_route_gets_decoded_placeholders_and_its_reply_is_verified(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, asynchronous: bool
) -> None:
    seen: list[tuple[RecordedRequest, dict[str, str]]] = []

    def handle(request: RecordedRequest, values: Mapping[str, str]) -> Reply:
        seen.append((request, dict(values)))
        return Reply(
            200, {"thing_id": values["thing_id"], "state": "READY"}, headers={"X-Custom": "yes"}
        )

    async def handle_async(request: RecordedRequest, values: Mapping[str, str]) -> Reply:
        return handle(request, values)

    wechatpay_server.route("GET", "/v3/custom/{thing_id}", handle_async if asynchronous else handle)
    response = await wechatpay_client["v3/custom/{thing_id}"].get(thing_id="a b/c")

    assert response.status == 200
    assert response.json() == {"thing_id": "a b/c", "state": "READY"}
    assert response.headers["X-Custom"] == "yes"
    assert response.headers["Wechatpay-Serial"] == wechatpay_server.public_key_id
    assert response.target == "/v3/custom/a%20b%2Fc"
    [(request, values)] = seen
    assert values == {"thing_id": "a b/c"}
    assert request.target == "/v3/custom/a%20b%2Fc"
    assert request.path == "/v3/custom/a b/c"


async def test_custom_route_with_several_placeholders_and_no_leading_slash(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    def handle(_request: RecordedRequest, values: Mapping[str, str]) -> Reply:
        return Reply(200, dict(values))

    wechatpay_server.route("post", "v3/things/{kind}/items/{item_id}", handle)
    response = await wechatpay_client.v3.things._kind_.items._item_id_.post(  # type: ignore[attr-defined]
        kind="书", item_id=7, json={}
    )
    assert response.json() == {"kind": "书", "item_id": "7"}


async def test_custom_route_with_a_literal_needing_percent_encoding(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    """The template is written as the client writes the path; its literal text must match
    the same way its placeholders do (they are decoded), not only in encoded form."""

    def handle(_request: RecordedRequest, values: Mapping[str, str]) -> Reply:
        return Reply(200, dict(values))

    wechatpay_server.route("GET", "/v3/custom/商品/{item_id}", handle)
    response = await wechatpay_client["v3/custom/商品/{item_id}"].get(item_id="7")
    assert wechatpay_server.requests[-1].path == "/v3/custom/商品/7"
    assert response.json() == {"item_id": "7"}


async def test_custom_route_raising_api_failure_reaches_the_client_as_api_error(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    def refuse(_request: RecordedRequest, _values: Mapping[str, str]) -> Reply:
        raise ApiFailure(403, "NO_AUTH", "商户无权限", {"field": "mchid"})

    wechatpay_server.route("POST", "/v3/custom/refuse", refuse)
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.custom.refuse.post(json={"a": 1})  # type: ignore[attr-defined]
    error = caught.value
    assert error.status == 403
    assert error.code == "NO_AUTH"
    assert error.message == "商户无权限"
    assert error.detail == {"field": "mchid"}


async def test_custom_routes_take_precedence_over_built_in_ones(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    def handle(_request: RecordedRequest, _values: Mapping[str, str]) -> Reply:
        return Reply(200, {"code_url": "weixin://custom"})

    wechatpay_server.route("POST", NATIVE, handle)
    mchid = wechatpay_server.merchant.mchid
    response = await wechatpay_client.v3.pay.transactions.native.post(
        json=_order(mchid, "overridden")
    )
    assert response.json() == {"code_url": "weixin://custom"}
    assert wechatpay_server.state.orders == {}
    # Only that method is taken over: the built-in query still answers.
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
            out_trade_no="overridden", params={"mchid": mchid}
        )
    assert caught.value.code == "ORDER_NOT_EXIST"


async def test_the_latest_custom_route_wins(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    def first(_request: RecordedRequest, _values: Mapping[str, str]) -> Reply:
        return Reply(200, {"by": "first"})

    def second(_request: RecordedRequest, _values: Mapping[str, str]) -> Reply:
        return Reply(200, {"by": "second"})

    wechatpay_server.route("GET", "/v3/custom/x", first)
    wechatpay_server.route("GET", "/v3/custom/x", second)
    assert (await wechatpay_client.v3.custom.x.get()).json() == {"by": "second"}  # type: ignore[attr-defined]


# -- 3. recorded requests ------------------------------------------------------------------


async def test_requests_are_recorded_as_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    order = _order(mchid, "rec-1")
    await wechatpay_client.v3.pay.transactions.native.post(json=order)
    with pytest.raises(ApiError):
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
            out_trade_no="单 1", params={"mchid": mchid, "note": "a b&c"}
        )

    post, get = wechatpay_server.requests
    assert post.method == "POST"
    assert post.target == NATIVE
    assert post.path == NATIVE
    assert len(post.query) == 0
    assert post.body == _encode(order)
    assert post.json() == order
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Authorization"].startswith(SCHEME + " ")
    assert post.headers["User-Agent"] == USER_AGENT
    assert post.headers["Wechatpay-Serial"] == wechatpay_server.public_key_id

    assert get.method == "GET"
    assert (
        get.target
        == f"/v3/pay/transactions/out-trade-no/%E5%8D%95%201?mchid={mchid}&note=a%20b%26c"
    )
    assert get.path == "/v3/pay/transactions/out-trade-no/单 1"
    assert dict(get.query) == {"mchid": mchid, "note": "a b&c"}
    assert get.body == b""
    assert get.json() is None
    assert get.headers["Accept"] == "application/json"


async def test_requests_failing_authentication_are_recorded_too(
    wechatpay_server: FakeWeChatPay, http: aiohttp.ClientSession
) -> None:
    body = b'{"hello":"world"}'
    answer, _ = await _send_raw(
        http, wechatpay_server, "POST", "/v3/custom?k=v%20w", body=body, headers={"X-Trace": "t-1"}
    )
    assert answer.status == 401

    [recorded] = wechatpay_server.requests
    assert recorded.method == "POST"
    assert recorded.target == "/v3/custom?k=v%20w"
    assert recorded.path == "/v3/custom"
    assert recorded.query["k"] == "v w"
    assert recorded.headers["x-trace"] == "t-1"  # headers are case-insensitive
    assert "Authorization" not in recorded.headers
    assert recorded.body == body
    assert recorded.json() == {"hello": "world"}


# -- 4. faults through the WeChatPay client ------------------------------------------------


async def _create_native(
    client: WeChatPay, server: FakeWeChatPay, out_trade_no: str
) -> dict[str, Any]:
    response = await client.v3.pay.transactions.native.post(
        json=_order(server.merchant.mchid, out_trade_no)
    )
    document: dict[str, Any] = dict(response.json())
    return document


async def test_fault_error_is_a_signed_api_error_and_the_request_is_not_processed(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.error(429, "FREQUENCY_LIMITED", "请求频率超过限制"))
    with pytest.raises(ApiError) as caught:
        await _create_native(wechatpay_client, wechatpay_server, "f-429")
    error = caught.value
    assert error.status == 429
    assert error.code == "FREQUENCY_LIMITED"
    assert error.message == "请求频率超过限制"
    assert error.headers["Wechatpay-Serial"] == wechatpay_server.public_key_id
    assert wechatpay_server.state.orders == {}


async def test_fault_error_message_defaults_to_the_code(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"))
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.custom.get(retry="never")  # type: ignore[attr-defined]
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        500,
        "SYSTEM_ERROR",
        "SYSTEM_ERROR",
    )


async def test_fault_raw_keeps_a_non_json_body(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    wechatpay_server.inject(Fault.raw(502, page))
    with pytest.raises(ApiError) as caught:
        await _create_native(wechatpay_client, wechatpay_server, "f-502")
    error = caught.value
    assert error.status == 502
    assert error.code is None
    assert error.message is None
    assert error.body == page
    assert error.headers["Content-Type"].startswith("text/html")
    assert "Wechatpay-Signature" not in error.headers
    assert wechatpay_server.state.orders == {}


async def test_fault_delay_beyond_the_timeout_is_a_request_timeout(
    wechatpay_server: FakeWeChatPay,
) -> None:
    wechatpay_server.inject(Fault.delay(0.5))
    async with wechatpay_server.client(timeout=0.1) as wxpay:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            await wxpay.v3.custom.get(retry="never")  # type: ignore[attr-defined]
        assert time.monotonic() - started < 0.45  # gave up at the timeout, not after the delay


async def test_fault_delay_within_the_timeout_succeeds(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.delay(0.05))
    started = time.monotonic()
    document = await _create_native(wechatpay_client, wechatpay_server, "f-delay")
    assert time.monotonic() - started >= 0.05
    assert document["code_url"].startswith("weixin://")


async def test_fault_drop_on_a_post_is_a_transport_error(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "f-warm")  # a pooled connection exists
    wechatpay_server.inject(Fault.drop())
    with pytest.raises(TransportError) as caught:
        await _create_native(wechatpay_client, wechatpay_server, "f-drop")
    assert not isinstance(caught.value, (ConnectError, RequestTimeoutError))
    assert "f-drop" not in wechatpay_server.state.orders
    assert len(wechatpay_server.requests) == 2  # the POST was not resent
    # The client recovers on the next call.
    assert (await _create_native(wechatpay_client, wechatpay_server, "f-after"))["code_url"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(Fault.tamper_body(), SignatureMismatchError, id="tamper_body"),
        pytest.param(Fault.wrong_serial(), UnknownSerialError, id="wrong_serial"),
        pytest.param(Fault.stale_timestamp(600), TimestampSkewError, id="stale_timestamp"),
        pytest.param(Fault.stale_timestamp(-600), TimestampSkewError, id="future_timestamp"),
        pytest.param(Fault.probe(), ProbeSignatureError, id="probe"),
        pytest.param(Fault.unsigned(), MissingSignatureHeaderError, id="unsigned"),
    ],
)
async def test_verification_faults_raise_and_return_nothing(
    wechatpay_server: FakeWeChatPay,
    wechatpay_client: WeChatPay,
    fault: Fault,
    expected: type[VerificationError],
) -> None:
    wechatpay_server.inject(fault)
    with pytest.raises(VerificationError) as caught:
        await _create_native(wechatpay_client, wechatpay_server, "f-verify")
    assert caught.type is expected
    assert caught.value.request_id  # the Request-ID is kept for support
    # The server did process the order; only the answer was spoilt. The next one is clean.
    assert "f-verify" in wechatpay_server.state.orders
    assert (await _create_native(wechatpay_client, wechatpay_server, "f-verify"))["code_url"]


async def test_tamper_body_on_a_204_close_is_a_signature_mismatch(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await _create_native(wechatpay_client, wechatpay_server, "f-close")
    close = "/v3/pay/transactions/out-trade-no/f-close/close"
    wechatpay_server.inject(Fault.tamper_body(), path=close)
    with pytest.raises(SignatureMismatchError) as caught:
        await wechatpay_client[close].post(json={"mchid": mchid})
    assert caught.type is SignatureMismatchError
    assert wechatpay_server.state.orders["f-close"].trade_state == "CLOSED"


async def test_inject_times_affects_exactly_that_many_requests(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), times=2)
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            await _create_native(wechatpay_client, wechatpay_server, "f-times")
        assert caught.value.status == 500
    assert (await _create_native(wechatpay_client, wechatpay_server, "f-times"))["code_url"]
    assert (await _create_native(wechatpay_client, wechatpay_server, "f-times"))["code_url"]


def test_inject_refuses_fewer_than_one_time(wechatpay_keys: Keys) -> None:
    server = FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0], wechatpay_private_key=wechatpay_keys[1]
    )
    with pytest.raises(ValueError, match="times"):
        server.inject(Fault.drop(), times=0)


async def test_inject_by_path_affects_only_that_path(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    wechatpay_server.inject(Fault.error(503, "SERVICE_UNAVAILABLE"), path=NATIVE)
    with pytest.raises(ApiError) as caught:  # another path is untouched
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
            out_trade_no="none", params={"mchid": mchid}
        )
    assert caught.value.code == "ORDER_NOT_EXIST"
    response = await wechatpay_client.v3.pay.transactions.app.post(json=_order(mchid, "f-app"))
    assert response.json()["prepay_id"].startswith("wx")
    with pytest.raises(ApiError) as caught:
        await _create_native(wechatpay_client, wechatpay_server, "f-path")
    assert caught.value.status == 503
    assert (await _create_native(wechatpay_client, wechatpay_server, "f-path"))["code_url"]


async def test_inject_by_method_affects_only_that_method(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"), method="get")
    await _create_native(wechatpay_client, wechatpay_server, "f-method")  # a POST: untouched
    query = wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_
    with pytest.raises(ApiError) as caught:
        await query.get(out_trade_no="f-method", params={"mchid": mchid}, retry="never")
    assert caught.value.status == 500
    assert (await query.get(out_trade_no="f-method", params={"mchid": mchid})).json()[
        "trade_state"
    ] == "NOTPAY"


async def test_faults_are_not_consumed_by_requests_failing_authentication(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, http: aiohttp.ClientSession
) -> None:
    wechatpay_server.inject(Fault.error(500, "SYSTEM_ERROR"))
    unsigned, _ = await _send_raw(http, wechatpay_server, "GET", "/v3/custom")
    assert unsigned.status == 401
    no_accept, _ = await _send_raw(http, wechatpay_server, "GET", "/v3/custom", skip=("Accept",))
    assert no_accept.status == 400
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.custom.get(retry="never")  # type: ignore[attr-defined]
    assert caught.value.code == "SYSTEM_ERROR"


# -- 5. state: orders, refunds, pre-sign ---------------------------------------------------


async def test_order_kinds_answer_their_documented_shapes(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    transactions = wechatpay_client.v3.pay.transactions
    native = await transactions.native.post(json=_order(mchid, "k-native"))
    assert set(native.json()) == {"code_url"}
    assert native.json()["code_url"].startswith("weixin://")
    jsapi = await transactions.jsapi.post(json=_order(mchid, "k-jsapi", payer={"openid": OPENID}))
    assert set(jsapi.json()) == {"prepay_id"}
    app = await transactions.app.post(json=_order(mchid, "k-app"))
    assert set(app.json()) == {"prepay_id"}
    assert jsapi.json()["prepay_id"] != app.json()["prepay_id"]
    h5 = await transactions.h5.post(
        json=_order(
            mchid, "k-h5", scene_info={"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}
        )
    )
    assert set(h5.json()) == {"h5_url"}
    assert h5.json()["h5_url"].startswith("https://")
    trade_types = {key: order.trade_type for key, order in wechatpay_server.state.orders.items()}
    assert trade_types == {"k-native": "NATIVE", "k-jsapi": "JSAPI", "k-app": "APP", "k-h5": "MWEB"}


async def test_jsapi_without_payer_openid_is_a_param_error(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.jsapi.post(
            json=_order(wechatpay_server.merchant.mchid, "no-payer")
        )
    assert caught.value.status == 400
    assert caught.value.code == "PARAM_ERROR"
    assert caught.value.detail["field"] == "/payer/openid"
    assert wechatpay_server.state.orders == {}


async def test_resending_an_order_is_idempotent_but_changing_it_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    native = wechatpay_client.v3.pay.transactions.native
    first = await native.post(json=_order(mchid, "same"))
    again = await native.post(json=_order(mchid, "same"))
    assert again.json() == first.json()
    changed = _order(mchid, "same")
    changed["amount"]["total"] = 200
    with pytest.raises(ApiError) as caught:
        await native.post(json=changed)
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    assert wechatpay_server.state.orders["same"].request["amount"]["total"] == 100


async def test_query_without_mchid_is_a_param_error(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "q-1")
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(out_trade_no="q-1")
    assert caught.value.status == 400
    assert caught.value.code == "PARAM_ERROR"
    assert caught.value.detail["location"] == "query"


async def test_query_of_an_unknown_order_is_order_not_exist(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    transactions = wechatpay_client.v3.pay.transactions
    for call in (
        transactions.outTradeNo._out_trade_no_.get(out_trade_no="nope", params={"mchid": mchid}),
        transactions.id._transaction_id_.get(
            transaction_id="4200000000000000000000000000", params={"mchid": mchid}
        ),
    ):
        with pytest.raises(ApiError) as caught:
            await call
        assert caught.value.status == 404
        assert caught.value.code == "ORDER_NOT_EXIST"


async def test_paid_order_queried_by_transaction_id(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await _create_native(wechatpay_client, wechatpay_server, "paid-1")
    paid = wechatpay_server.pay("paid-1", openid="o-payer-1")
    transaction_id = paid["transaction_id"]

    response = await wechatpay_client.v3.pay.transactions.id._transaction_id_.get(
        transaction_id=transaction_id, params={"mchid": mchid}
    )
    # Any: the description's answer to this query lacks payer and amount.payer_total.
    document: Any = response.json()
    assert document == paid
    assert document["trade_state"] == "SUCCESS"
    assert document["out_trade_no"] == "paid-1"
    assert document["transaction_id"] == transaction_id
    assert document["payer"] == {"openid": "o-payer-1"}
    assert document["amount"]["total"] == 100
    assert document["amount"]["payer_total"] == 100
    by_number = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="paid-1", params={"mchid": mchid}
    )
    assert by_number.json() == document


async def test_pay_refuses_unknown_and_already_paid_orders(wechatpay_keys: Keys) -> None:
    server = FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0], wechatpay_private_key=wechatpay_keys[1]
    )
    with pytest.raises(KeyError):
        server.pay("unknown")
    server.state.create_order("native", _order(server.merchant.mchid, "twice"))
    server.pay("twice")
    with pytest.raises(ValueError, match="SUCCESS"):
        server.pay("twice")
    await server.stop()  # stop() also ends the notifications pay() sent


async def test_close_answers_204_and_the_order_is_closed(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await _create_native(wechatpay_client, wechatpay_server, "c-1")
    closed = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
        out_trade_no="c-1", json={"mchid": mchid}
    )
    assert closed.status == 204
    assert closed.body == b""
    assert closed.json() is None
    query = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="c-1", params={"mchid": mchid}
    )
    assert query.json()["trade_state"] == "CLOSED"


async def test_closing_a_paid_order_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    mchid = wechatpay_server.merchant.mchid
    await _create_native(wechatpay_client, wechatpay_server, "c-paid")
    wechatpay_server.pay("c-paid")
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
            out_trade_no="c-paid", json={"mchid": mchid}
        )
    assert caught.value.status == 400
    assert caught.value.code == "ORDERPAID"
    assert wechatpay_server.state.orders["c-paid"].trade_state == "SUCCESS"


def _refund(
    out_trade_no: str, out_refund_no: str, refund: int, total: int = 100
) -> V3RefundDomesticRefundsPostBody:
    return {
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "reason": "商品已售完",
        "amount": {"refund": refund, "total": total, "currency": "CNY"},
    }


async def test_refund_of_a_paid_order_and_its_query(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "r-1")
    paid = wechatpay_server.pay("r-1")
    refund = await wechatpay_client.v3.refund.domestic.refunds.post(json=_refund("r-1", "rf-1", 30))
    document = refund.json()
    assert document["status"] == "SUCCESS"
    assert document["out_refund_no"] == "rf-1"
    assert document["out_trade_no"] == "r-1"
    assert document["transaction_id"] == paid["transaction_id"]
    assert document["amount"]["refund"] == 30
    assert document["amount"]["total"] == 100

    queried = await wechatpay_client.v3.refund.domestic.refunds._out_refund_no_.get(
        out_refund_no="rf-1"
    )
    assert queried.json() == document
    again = await wechatpay_client.v3.refund.domestic.refunds.post(json=_refund("r-1", "rf-1", 30))
    assert again.json() == document  # same out_refund_no, same parameters: the same refund
    mchid = wechatpay_server.merchant.mchid
    order = await wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="r-1", params={"mchid": mchid}
    )
    assert order.json()["trade_state"] == "REFUND"


async def test_refund_by_transaction_id(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "r-tx")
    transaction_id = wechatpay_server.pay("r-tx")["transaction_id"]
    body = _refund("r-tx", "rf-tx", 100)
    del body["out_trade_no"]
    body["transaction_id"] = transaction_id
    response = await wechatpay_client.v3.refund.domestic.refunds.post(json=body)
    assert response.json()["out_trade_no"] == "r-tx"


async def test_refund_of_an_unpaid_order_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "r-unpaid")
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.refund.domestic.refunds.post(
            json=_refund("r-unpaid", "rf-unpaid", 10)
        )
    assert caught.value.status == 400
    assert wechatpay_server.state.refunds == {}
    with pytest.raises(ApiError) as caught:
        await wechatpay_client.v3.refund.domestic.refunds._out_refund_no_.get(
            out_refund_no="rf-unpaid"
        )
    assert caught.value.status == 404


async def test_over_refund_is_not_enough(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    await _create_native(wechatpay_client, wechatpay_server, "r-over")
    wechatpay_server.pay("r-over")
    refunds = wechatpay_client.v3.refund.domestic.refunds
    with pytest.raises(ApiError) as caught:
        await refunds.post(json=_refund("r-over", "rf-over-0", 101))
    assert (caught.value.status, caught.value.code) == (403, "NOT_ENOUGH")
    await refunds.post(json=_refund("r-over", "rf-over-1", 60))
    with pytest.raises(ApiError) as caught:  # 60 + 60 > 100
        await refunds.post(json=_refund("r-over", "rf-over-2", 60))
    assert (caught.value.status, caught.value.code) == (403, "NOT_ENOUGH")
    assert (await refunds.post(json=_refund("r-over", "rf-over-3", 40))).json()[
        "status"
    ] == "SUCCESS"


# Required fields of the pre-sign endpoints (OAPI docs/v3/password-exempt-contract/...).
PRE_SIGN_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("normal", "pay-redirect-sign"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
        "openid",
    ),
    ("normal", "mini-program"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "openid",
    ),
    ("ecommerce", "pay-redirect-sign"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
        "openid",
    ),
    ("ecommerce", "mini-program"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "openid",
    ),
    ("service-provider", "pay-redirect-sign"): (
        "sp_appid",
        "sub_mchid",
        "sub_appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
    ),
    ("service-provider", "mini-program"): (
        "sp_appid",
        "sub_mchid",
        "sub_appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
    ),
    ("qs", "pay-redirect-sign"): (
        "appid",
        "sub_appid",
        "sub_mchid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
    ),
    ("qs", "mini-program"): (
        "appid",
        "sub_appid",
        "sub_mchid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
    ),
}
PRE_SIGN_VALUES: dict[str, Any] = {
    "appid": APPID,
    "sp_appid": "wx8888888888888888",
    "sub_appid": "wxd678efh567hg6999",
    "sub_mchid": "1900000110",
    "service_id": 12535,
    "out_contract_code": "contract-001",
    "notify_url": "https://merchant.example/notify/entrust",
    "contract_display_account": "微信代扣用户A",
    "prepay_id": "wx201410272009395522657a690389285100",
    "openid": OPENID,
}


# Any: the body of whichever of the pre-sign endpoints the mode and scene name.
def _pre_sign_body(mode: str, scene: str, prepay_id: str = "") -> Any:
    values = {**PRE_SIGN_VALUES, "prepay_id": prepay_id}
    return {name: values[name] for name in PRE_SIGN_REQUIRED[mode, scene]}


async def _prepay_id(client: WeChatPay, server: FakeWeChatPay) -> str:
    """A fresh JSAPI order's prepay_id: the after-payment pre-sign modes need a live one."""
    order = _order(server.merchant.mchid, f"pre-sign-{len(server.state.orders)}")
    order["payer"] = {"openid": OPENID}
    response = await client.v3.pay.transactions.jsapi.post(json=order)
    prepay_id: str = response.json()["prepay_id"]
    return prepay_id


@pytest.mark.parametrize(
    ("mode", "scene"), list(PRE_SIGN_REQUIRED), ids=["/".join(key) for key in PRE_SIGN_REQUIRED]
)
async def test_pre_sign_endpoints_answer_the_contract(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, mode: str, scene: str
) -> None:
    path = f"v3/password-exempt-contract/contracts/{mode}/pre-entrust-sign/{scene}"
    prepay_id = await _prepay_id(wechatpay_client, wechatpay_server)
    response = await wechatpay_client[path].post(json=_pre_sign_body(mode, scene, prepay_id))

    assert response.status == 200
    document = response.json()
    expected = {"mchid", "service_id", "out_contract_code"}
    if mode == "service-provider":
        expected.add("sub_mchid")
        assert document["sub_mchid"] == "1900000110"
    if scene == "mini-program":
        expected |= {"pre_entrustweb_id", "sign_mp_appid", "sign_mp_path"}
        assert document["pre_entrustweb_id"]
        assert document["sign_mp_appid"].startswith("wx")
        assert document["sign_mp_path"]
    assert set(document) == expected
    assert document["mchid"] == wechatpay_server.merchant.mchid
    assert document["service_id"] == 12535
    assert document["out_contract_code"] == "contract-001"
    assert wechatpay_server.contracts.pre_signs["contract-001"].mode == mode
    assert wechatpay_server.contracts.pre_signs["contract-001"].scene == scene


@pytest.mark.parametrize(
    ("mode", "scene"), list(PRE_SIGN_REQUIRED), ids=["/".join(key) for key in PRE_SIGN_REQUIRED]
)
async def test_pre_sign_without_a_required_field_is_a_param_error_naming_it(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, mode: str, scene: str
) -> None:
    node = wechatpay_client.v3.passwordExemptContract.contracts[mode].preEntrustSign[scene]
    prepay_id = await _prepay_id(wechatpay_client, wechatpay_server)
    for name in PRE_SIGN_REQUIRED[mode, scene]:
        body = _pre_sign_body(mode, scene, prepay_id)
        del body[name]
        with pytest.raises(ApiError) as caught:
            await node.post(json=body)
        assert caught.value.status == 400, name
        assert caught.value.code == "PARAM_ERROR", name
        assert caught.value.detail["field"] == f"/{name}"
        assert name in (caught.value.message or "")
    assert wechatpay_server.contracts.pre_signs == {}


async def test_pre_sign_service_id_must_be_a_number(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    prepay_id = await _prepay_id(wechatpay_client, wechatpay_server)
    body = {**_pre_sign_body("qs", "pay-redirect-sign", prepay_id), "service_id": "12535"}
    with pytest.raises(ApiError) as caught:
        await wechatpay_client[
            "v3/password-exempt-contract/contracts/qs/pre-entrust-sign/pay-redirect-sign"
        ].post(json=body)
    assert caught.value.code == "PARAM_ERROR"
    assert caught.value.detail["field"] == "/service_id"


# -- 6. lifecycle --------------------------------------------------------------------------


async def test_after_the_server_stops_its_url_refuses_connections(wechatpay_keys: Keys) -> None:
    async with FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0], wechatpay_private_key=wechatpay_keys[1]
    ) as server:
        url = server.url
        async with server.client() as wxpay:
            await wxpay.v3.pay.transactions.native.post(
                json=_order(server.merchant.mchid, "life-1")
            )
        client = server.client()
    assert client.base_url == url
    async with client:
        with pytest.raises(ConnectError):
            await client.v3.pay.transactions.native.post(
                json=_order(server.merchant.mchid, "life-2")
            )


def test_url_before_start_is_a_runtime_error(wechatpay_keys: Keys) -> None:
    server = FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0], wechatpay_private_key=wechatpay_keys[1]
    )
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


async def test_two_servers_at_once_are_independent(wechatpay_keys: Keys) -> None:
    merchant_key, wechatpay_key = wechatpay_keys
    async with (
        FakeWeChatPay(
            merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key
        ) as first,
        FakeWeChatPay(
            merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key
        ) as second,
    ):
        assert URL(first.url).host == URL(second.url).host == "127.0.0.1"
        assert URL(first.url).port != URL(second.url).port
        assert first.public_key_id != second.public_key_id
        async with first.client() as one, second.client() as two:
            await one.v3.pay.transactions.native.post(
                json=_order(first.merchant.mchid, "only-in-first")
            )
            with pytest.raises(ApiError) as caught:
                await two.v3.pay.transactions.outTradeNo._out_trade_no_.get(
                    out_trade_no="only-in-first", params={"mchid": second.merchant.mchid}
                )
        assert caught.value.code == "ORDER_NOT_EXIST"
        assert len(first.requests) == 1
        assert len(second.requests) == 1
