"""Client-side pay parameters (``wxpay.payments``): PROTOCOL.md section 12.

JSAPI and mini programs sign ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` with
``package = "prepay_id=..."``; apps sign ``appid\\ntimestamp\\nnoncestr\\nprepayid\\n`` with the
bare prepay_id. Both with the merchant's private key, RSA-SHA256, Base64.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain import WeChatPay
from wechatpay_chain.keys import load_private_key, load_public_key
from wechatpay_chain.testing import FakeWeChatPay

DATA = Path(__file__).parent / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
MERCHANT: dict[str, str] = VECTORS["merchant"]

TIMESTAMP = 1554208460
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
APPID = "wxd678efh567hg6787"
PREPAY_ID = "wx201410272009395522657a690389285100"


def _jsapi_message(appid: str, prepay_id: str) -> bytes:
    return f"{appid}\n{TIMESTAMP}\n{NONCE}\nprepay_id={prepay_id}\n".encode()


def _app_message(appid: str, prepay_id: str) -> bytes:
    return f"{appid}\n{TIMESTAMP}\n{NONCE}\n{prepay_id}\n".encode()


def _verifies(public_key: rsa.RSAPublicKey, signature: str, message: bytes) -> bool:
    try:
        public_key.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


@pytest.fixture
def fixed_client(wechatpay_server: FakeWeChatPay) -> WeChatPay:
    return wechatpay_server.client(clock=lambda: TIMESTAMP, nonce=lambda: NONCE)


def _official_client(key_file: str) -> WeChatPay:
    return WeChatPay(
        MERCHANT["mchid"],
        MERCHANT["serial"],
        DATA / key_file,
        clock=lambda: TIMESTAMP,
        nonce=lambda: NONCE,
    )


# -- JSAPI and mini programs ---------------------------------------------------------------------


def test_jsapi_parameters(wechatpay_server: FakeWeChatPay, fixed_client: WeChatPay) -> None:
    parameters = fixed_client.payments.jsapi(APPID, PREPAY_ID)

    signature = parameters.pop("paySign")
    assert parameters == {
        "appId": APPID,
        "timeStamp": "1554208460",
        "nonceStr": NONCE,
        "package": f"prepay_id={PREPAY_ID}",
        "signType": "RSA",
    }
    assert all(isinstance(value, str) for value in parameters.values())
    public_key = wechatpay_server.merchant.public_key
    assert _verifies(public_key, signature, _jsapi_message(APPID, PREPAY_ID))
    assert _verifies(
        public_key,
        signature,
        b"wxd678efh567hg6787\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n"
        b"prepay_id=wx201410272009395522657a690389285100\n",
    )
    # Not the APP message, nor the JSAPI message without its trailing newline.
    assert not _verifies(public_key, signature, _app_message(APPID, PREPAY_ID))
    assert not _verifies(public_key, signature, _jsapi_message(APPID, PREPAY_ID)[:-1])
    assert wechatpay_server.requests == []  # computed locally


def test_jsapi_key_order(fixed_client: WeChatPay) -> None:
    assert list(fixed_client.payments.jsapi(APPID, PREPAY_ID)) == [
        "appId",
        "timeStamp",
        "nonceStr",
        "package",
        "signType",
        "paySign",
    ]


# -- apps ------------------------------------------------------------------------------------------


def test_app_parameters(wechatpay_server: FakeWeChatPay, fixed_client: WeChatPay) -> None:
    parameters = fixed_client.payments.app(APPID, PREPAY_ID)

    signature = parameters.pop("sign")
    assert parameters == {
        "appid": APPID,
        "partnerid": wechatpay_server.merchant.mchid,
        "prepayid": PREPAY_ID,
        "package": "Sign=WXPay",
        "noncestr": NONCE,
        "timestamp": "1554208460",
    }
    assert parameters["partnerid"] == "1900000109"
    public_key = wechatpay_server.merchant.public_key
    assert _verifies(public_key, signature, _app_message(APPID, PREPAY_ID))
    assert _verifies(
        public_key,
        signature,
        b"wxd678efh567hg6787\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n"
        b"wx201410272009395522657a690389285100\n",
    )
    assert not _verifies(public_key, signature, _jsapi_message(APPID, PREPAY_ID))
    assert wechatpay_server.requests == []


def test_the_two_scenes_sign_different_messages(
    wechatpay_server: FakeWeChatPay, fixed_client: WeChatPay
) -> None:
    jsapi = fixed_client.payments.jsapi(APPID, PREPAY_ID)["paySign"]
    app = fixed_client.payments.app(APPID, PREPAY_ID)["sign"]

    assert jsapi != app


def test_each_call_reads_the_clock_and_a_fresh_nonce(wechatpay_server: FakeWeChatPay) -> None:
    now = [TIMESTAMP]
    nonces = iter(["nonce-one", "nonce-two"])
    wxpay = wechatpay_server.client(clock=lambda: now[0] + 0.9, nonce=lambda: next(nonces))

    first = wxpay.payments.jsapi(APPID, PREPAY_ID)
    now[0] += 60
    second = wxpay.payments.app(APPID, PREPAY_ID)

    assert (first["timeStamp"], first["nonceStr"]) == ("1554208460", "nonce-one")
    assert (second["timestamp"], second["noncestr"]) == ("1554208520", "nonce-two")
    public_key = wechatpay_server.merchant.public_key
    assert _verifies(
        public_key,
        first["paySign"],
        f"{APPID}\n1554208460\nnonce-one\nprepay_id={PREPAY_ID}\n".encode(),
    )
    assert _verifies(
        public_key, second["sign"], f"{APPID}\n1554208520\nnonce-two\n{PREPAY_ID}\n".encode()
    )


# -- the official test merchant key ------------------------------------------------------------------


@pytest.mark.parametrize("scene", ["jsapi", "app"])
def test_the_official_merchant_key_signs_deterministically(scene: str) -> None:
    wxpay = _official_client(MERCHANT["private_key_pkcs8"])
    sign = wxpay.payments.jsapi if scene == "jsapi" else wxpay.payments.app
    field = "paySign" if scene == "jsapi" else "sign"
    message = (_jsapi_message if scene == "jsapi" else _app_message)(APPID, PREPAY_ID)

    first = sign(APPID, PREPAY_ID)
    second = sign(APPID, PREPAY_ID)

    assert first == second
    # RSASSA-PKCS1-v1_5 is deterministic: the very signature computed independently.
    private_key = load_private_key(DATA / MERCHANT["private_key_pkcs8"])
    expected = base64.b64encode(
        private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    assert first[field] == expected
    assert _verifies(load_public_key(DATA / MERCHANT["public_key"]), first[field], message)
    # The same key loaded from its PKCS#1 PEM gives the very same parameters.
    pkcs1 = _official_client(MERCHANT["private_key_pkcs1"])
    assert (pkcs1.payments.jsapi if scene == "jsapi" else pkcs1.payments.app)(
        APPID, PREPAY_ID
    ) == first
    if scene == "app":
        assert first["partnerid"] == MERCHANT["mchid"] == "1900007291"
