"""Sensitive fields: ``wxpay.encrypt`` (RSA-OAEP for WeChat Pay) and ``wxpay.decrypt`` (from
WeChat Pay), PROTOCOL.md section 5, round-tripped through the fake server's
``POST /v3/security/echo``, which decrypts with its WeChat Pay key and answers encrypted for
the merchant."""

from __future__ import annotations

import base64
import copy
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain import WeChatPay
from wechatpay_chain.crypto import rsa_oaep_encrypt
from wechatpay_chain.errors import ApiError, ConfigError, DecryptionError
from wechatpay_chain.keys import load_public_key
from wechatpay_chain.testing import FakeWeChatPay

DATA = Path(__file__).parent / "data"
#: The official vector's WeChat Pay public key: an RSA-2048 key the fake server does not hold.
OTHER_PUBLIC_KEY = load_public_key(DATA / "wechatpay_public_key.pem")
CERT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
SECRET = "张三 13800138000"
#: What WeChat Pay uses (PROTOCOL.md section 5): OAEP with SHA-1 and MGF1-SHA-1, no label.
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]


async def _echo(wxpay: WeChatPay, ciphertext: str) -> dict[str, Any]:
    response = await wxpay.v3.security.echo.post(
        json={"echo_message": "hello", "encrypted_echo_message": ciphertext}
    )
    document: dict[str, Any] = dict(response.json())
    return document


# -- the round trip ------------------------------------------------------------------------------


async def test_round_trip_through_the_echo_api(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    ciphertext = wechatpay_client.encrypt(SECRET)

    answer = await _echo(wechatpay_client, ciphertext)

    assert answer["echo_message"] == "hello"
    assert answer["encrypted_echo_message"] != ciphertext  # encrypted again, for the merchant
    assert wechatpay_client.decrypt(answer["encrypted_echo_message"]) == SECRET
    [request] = wechatpay_server.requests
    assert request.headers["Wechatpay-Serial"] == wechatpay_server.public_key_id
    assert request.json()["encrypted_echo_message"] == ciphertext
    # standard Base64 of one RSA-2048 block
    assert len(base64.b64decode(ciphertext, validate=True)) == 256


async def test_the_ciphertext_is_for_the_wechatpay_key_only(
    wechatpay_client: WeChatPay, wechatpay_keys: Keys
) -> None:
    merchant_key, wechatpay_key = wechatpay_keys
    ciphertext = wechatpay_client.encrypt(SECRET)

    assert wechatpay_key.decrypt(base64.b64decode(ciphertext), OAEP) == SECRET.encode()
    with pytest.raises(ValueError, match="Decryption failed"):
        merchant_key.decrypt(base64.b64decode(ciphertext), OAEP)


async def test_oaep_is_randomised(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    first = wechatpay_client.encrypt(SECRET)
    second = wechatpay_client.encrypt(SECRET)

    assert first != second
    for ciphertext in (first, second):
        answer = await _echo(wechatpay_client, ciphertext)
        assert wechatpay_client.decrypt(answer["encrypted_echo_message"]) == SECRET
    assert len(wechatpay_server.requests) == 2


@pytest.mark.parametrize(
    "text",
    ["a" * 214, "中" * 71 + "a", "", "😀" * 53 + "ab"],
    ids=["214-ascii", "214-chinese", "empty", "214-emoji"],
)
async def test_up_to_214_bytes_encrypt_and_round_trip(
    wechatpay_client: WeChatPay, text: str
) -> None:
    assert len(text.encode()) <= 214

    answer = await _echo(wechatpay_client, wechatpay_client.encrypt(text))

    assert wechatpay_client.decrypt(answer["encrypted_echo_message"]) == text


@pytest.mark.parametrize(
    "text",
    ["a" * 215, "中" * 72, "中" * 71 + "ab", "x" * 10_000],
    ids=["215-ascii", "216-chinese", "215-chinese", "10000"],
)
async def test_over_214_bytes_raise_value_error_before_anything_is_sent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, text: str
) -> None:
    with pytest.raises(ValueError, match="214") as caught:
        await wechatpay_client.v3.security.echo.post(
            json={"echo_message": "hello", "encrypted_echo_message": wechatpay_client.encrypt(text)}
        )

    assert str(len(text.encode())) in str(caught.value)
    assert wechatpay_server.requests == []


# -- the wrong key --------------------------------------------------------------------------------


async def test_ciphertext_for_another_key_is_refused_by_wechatpay(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    ciphertext = rsa_oaep_encrypt(OTHER_PUBLIC_KEY, SECRET)

    with pytest.raises(ApiError) as caught:
        await _echo(wechatpay_client, ciphertext)

    assert caught.value.status == 400
    assert caught.value.code == "PARAM_ERROR"
    assert caught.value.message == "平台私钥解密失败"
    assert len(wechatpay_server.requests) == 1


async def test_a_client_holding_a_wrong_key_under_the_right_id_is_refused(
    wechatpay_server: FakeWeChatPay,
) -> None:
    async with wechatpay_server.client(
        public_keys={wechatpay_server.public_key_id: OTHER_PUBLIC_KEY}
    ) as wxpay:
        with pytest.raises(ApiError) as caught:
            await _echo(wxpay, wxpay.encrypt(SECRET))

    assert (caught.value.status, caught.value.code) == (400, "PARAM_ERROR")


@pytest.mark.parametrize(
    "ciphertext",
    [
        "",
        "not Base64 at all!",
        "密文",
        base64.b64encode(b"\x00" * 256).decode(),
        base64.b64encode(secrets.token_bytes(256)).decode(),
        base64.b64encode(secrets.token_bytes(10)).decode(),
    ],
    ids=["empty", "not-base64", "non-ascii", "zeros", "random-256", "short"],
)
def test_decrypting_garbage_raises_decryption_error(
    wechatpay_server: FakeWeChatPay, ciphertext: str
) -> None:
    wxpay = wechatpay_server.client()

    with pytest.raises(DecryptionError):
        wxpay.decrypt(ciphertext)


def test_decrypting_a_ciphertext_for_another_key_raises_decryption_error(
    wechatpay_server: FakeWeChatPay,
) -> None:
    wxpay = wechatpay_server.client()
    for_wechatpay = wxpay.encrypt(SECRET)  # for WeChat Pay's key, not the merchant's

    with pytest.raises(DecryptionError) as caught:
        wxpay.decrypt(for_wechatpay)

    assert SECRET not in str(caught.value)


def test_decrypting_a_plaintext_that_is_not_utf8_raises_decryption_error(
    wechatpay_server: FakeWeChatPay,
) -> None:
    sealed = wechatpay_server.merchant.public_key.encrypt(b"\xff\xfe\xfd", OAEP)
    wxpay = wechatpay_server.client()

    with pytest.raises(DecryptionError):
        wxpay.decrypt(base64.b64encode(sealed).decode())


@pytest.mark.parametrize("public_keys", [{}, None], ids=["empty", "none"])
def test_encrypt_needs_a_wechatpay_public_key(
    wechatpay_server: FakeWeChatPay, public_keys: dict[str, Any] | None
) -> None:
    wxpay = wechatpay_server.client(public_keys=public_keys)

    with pytest.raises(ConfigError, match="public_keys"):
        wxpay.encrypt(SECRET)


# -- two WeChat Pay keys: the encryption key and Wechatpay-Serial always agree --------------------


@pytest.mark.parametrize("public_key_id_first", [True, False], ids=["id-first", "cert-first"])
async def test_with_two_keys_encrypt_uses_the_key_named_in_wechatpay_serial(
    wechatpay_server: FakeWeChatPay, public_key_id_first: bool
) -> None:
    keys: list[tuple[str, Any]] = [
        (wechatpay_server.public_key_id, wechatpay_server.public_key_pem),
        (CERT_SERIAL, OTHER_PUBLIC_KEY),
    ]
    if not public_key_id_first:
        keys.reverse()
    async with wechatpay_server.client(public_keys=dict(keys)) as wxpay:
        for _ in range(3):
            answer = await _echo(wxpay, wxpay.encrypt(SECRET))
            assert wxpay.decrypt(answer["encrypted_echo_message"]) == SECRET

    assert len(wechatpay_server.requests) == 3
    assert {request.headers["Wechatpay-Serial"] for request in wechatpay_server.requests} == {
        wechatpay_server.public_key_id
    }


# -- the caller's document -----------------------------------------------------------------------


async def test_the_callers_json_is_not_mutated(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    document: dict[str, Any] = {
        "echo_message": "hello",
        "encrypted_echo_message": wechatpay_client.encrypt(SECRET),
        "extra": {"names": ["张三", "李四"], "amount": {"total": 1}},
    }
    snapshot = copy.deepcopy(document)
    extra = document["extra"]

    response = await wechatpay_client.v3.security.echo.post(json=document)  # type: ignore[arg-type]

    assert document == snapshot
    assert document["extra"] is extra
    assert wechatpay_client.decrypt(response.json()["encrypted_echo_message"]) == SECRET
    assert wechatpay_server.requests[-1].json() == snapshot
