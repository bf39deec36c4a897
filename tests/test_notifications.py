"""Webhooks (wechatpay_chain.notifications): verify, then decrypt; PROTOCOL.md sections 2 to 4.

Notifications come from the fake server's ``build_notification`` (signed with its WeChat Pay
key, encrypted with its APIv3 key) or are signed here with that same key through the fake
server's ``WeChatPaySigner``, to reach the parser with envelopes WeChat Pay would never send.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import string
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.responses import Response as StarletteResponse

from wechatpay_chain import WeChatPay
from wechatpay_chain.crypto import aes_gcm_decrypt, aes_gcm_encrypt
from wechatpay_chain.errors import (
    ConfigError,
    DecryptionError,
    InvalidNotificationError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    SignatureMismatchError,
    TimestampSkewError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
    VerificationError,
    WeChatPayError,
)
from wechatpay_chain.notifications import (
    Acknowledgement,
    Notification,
    failure,
    success,
    verify_and_decrypt,
)
from wechatpay_chain.testing import FakeWeChatPay, Fault
from wechatpay_chain.testing.signer import WeChatPaySigner
from wechatpay_chain.verifying import Verifier

DATA = Path(__file__).parent / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
AES_VECTOR: dict[str, str] = VECTORS["aes_256_gcm"]

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]

CHINA = datetime.timezone(datetime.timedelta(hours=8))
FIXED_NOW = 1_700_000_000
PAYER_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
TRANSACTION: dict[str, Any] = {
    "mchid": "1900000109",
    "appid": "wxd678efh567hg6787",
    "out_trade_no": "1217752501201407033233368018",
    "transaction_id": "4200000985202103031441826014",
    "trade_type": "JSAPI",
    "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功",
    "bank_type": "OTHERS",
    "success_time": "2023-11-15T06:13:20+08:00",
    "payer": {"openid": PAYER_OPENID},
    "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
}
NONCE = "fdasflkja484"
SIGNATURE_HEADERS = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
)


# -- helpers -----------------------------------------------------------------------------------


def _verifier(server: FakeWeChatPay) -> Verifier:
    return Verifier({server.public_key_id: server.public_key_pem})


def _apiv3_key(server: FakeWeChatPay) -> bytes:
    return server.apiv3_key.encode()


def _parse(server: FakeWeChatPay, headers: dict[str, str], body: bytes) -> Notification:
    return verify_and_decrypt(
        headers, body, verifier=_verifier(server), apiv3_key=_apiv3_key(server)
    )


def _raises_exactly(
    error_type: type[WeChatPayError], server: FakeWeChatPay, headers: dict[str, str], body: bytes
) -> WeChatPayError:
    """Parse and demand exactly ``error_type``: a subclass or a sibling fails the test, and any
    exception outside WeChatPayError propagates and fails it too."""
    with pytest.raises(WeChatPayError) as caught:
        _parse(server, headers, body)
    assert type(caught.value) is error_type, repr(caught.value)
    return caught.value


def _sign(server: FakeWeChatPay, keys: Keys, body: bytes) -> dict[str, str]:
    """Headers for ``body`` signed with the server's WeChat Pay key, as WeChat Pay signs."""
    return WeChatPaySigner(keys[1], server.public_key_id, server.clock).headers(body)


def _resource(
    server: FakeWeChatPay,
    plaintext: bytes | None = None,
    *,
    associated_data: str | None = "transaction",
    nonce: str = NONCE,
) -> dict[str, Any]:
    if plaintext is None:
        plaintext = json.dumps(TRANSACTION, ensure_ascii=False).encode()
    resource: dict[str, Any] = {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": aes_gcm_encrypt(
            _apiv3_key(server),
            nonce=nonce,
            plaintext=plaintext,
            associated_data=associated_data or "",
        ),
        "nonce": nonce,
    }
    if associated_data is not None:
        resource["associated_data"] = associated_data
    return resource


def _envelope(server: FakeWeChatPay, **resource_options: Any) -> dict[str, Any]:
    return {
        "id": "EV-2018022511223320873",
        "create_time": "2015-05-20T13:29:35+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": _resource(server, **resource_options),
    }


def _dump(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@pytest_asyncio.fixture
async def fixed_clock_server(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    merchant_key, wechatpay_key = wechatpay_keys
    async with FakeWeChatPay(
        merchant_private_key=merchant_key,
        wechatpay_private_key=wechatpay_key,
        clock=lambda: FIXED_NOW,
    ) as server:
        yield server


# -- a good notification -----------------------------------------------------------------------


def test_a_good_notification_is_verified_and_decrypted(wechatpay_server: FakeWeChatPay) -> None:
    before = int(time.time())
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS",
        resource=TRANSACTION,
        summary="支付成功",
        original_type="transaction",
    )
    after = int(time.time())

    notification = _parse(wechatpay_server, headers, body)

    envelope = json.loads(body)
    assert isinstance(notification, Notification)
    assert notification.id == envelope["id"]
    assert notification.id  # a uuid, never empty
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.resource_type == "encrypt-resource"
    assert notification.summary == "支付成功"
    assert notification.original_type == "transaction"
    assert notification.resource == TRANSACTION
    assert notification.raw == envelope
    assert notification.request_id == headers["Request-ID"]
    assert notification.request_id is not None
    assert notification.request_id.endswith("-0")
    created = notification.create_time
    assert created.utcoffset() == datetime.timedelta(hours=8)
    assert before <= created.timestamp() <= after


async def test_create_time_is_the_server_clock_in_china_time(
    fixed_clock_server: FakeWeChatPay,
) -> None:
    headers, body = fixed_clock_server.build_notification(
        event_type="REFUND.SUCCESS", resource={"refund_id": "50000000382019052709732678859"}
    )
    verifier = Verifier(
        {fixed_clock_server.public_key_id: fixed_clock_server.public_key_pem},
        clock=lambda: FIXED_NOW,
    )

    notification = verify_and_decrypt(
        headers, body, verifier=verifier, apiv3_key=_apiv3_key(fixed_clock_server)
    )

    assert notification.create_time == datetime.datetime.fromtimestamp(FIXED_NOW, CHINA)
    assert notification.create_time.tzinfo is not None
    assert notification.create_time.utcoffset() == datetime.timedelta(hours=8)
    assert json.loads(body)["create_time"] == "2023-11-15T06:13:20+08:00"
    # The defaults of build_notification: no summary, original_type "transaction".
    assert notification.summary == ""
    assert notification.original_type == "transaction"
    assert notification.event_type == "REFUND.SUCCESS"


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title], ids=["lower", "upper", "title"])
def test_header_names_in_any_letter_case(
    wechatpay_server: FakeWeChatPay, case: Callable[[str], str]
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    recased = {case(name): value for name, value in headers.items()}

    notification = _parse(wechatpay_server, recased, body)

    assert notification.resource == TRANSACTION
    assert notification.request_id == headers["Request-ID"]


def test_unknown_event_types_and_extra_fields_are_tolerated(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys
) -> None:
    envelope = _envelope(wechatpay_server)
    envelope["event_type"] = "SOMETHING.NEW_NEXT_YEAR"
    envelope["brand_new_field"] = {"nested": [1, 2, 3]}
    envelope["resource"]["brand_new_field"] = "x"
    body = _dump(envelope)

    notification = _parse(wechatpay_server, _sign(wechatpay_server, wechatpay_keys, body), body)

    assert notification.event_type == "SOMETHING.NEW_NEXT_YEAR"
    assert notification.raw == envelope
    assert notification.resource == TRANSACTION
    assert notification.create_time == datetime.datetime(2015, 5, 20, 13, 29, 35, tzinfo=CHINA)


def test_repr_keeps_the_payer_data_out(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    notification = _parse(wechatpay_server, headers, body)

    text = repr(notification)

    assert PAYER_OPENID not in text
    assert TRANSACTION["transaction_id"] not in text
    assert TRANSACTION["out_trade_no"] not in text
    assert json.loads(body)["resource"]["ciphertext"] not in text
    assert notification.id in text
    assert "TRANSACTION.SUCCESS" in text


# -- AES-256-GCM ---------------------------------------------------------------------------------


def test_the_official_aes_gcm_vector_decrypts() -> None:
    plaintext = aes_gcm_decrypt(
        AES_VECTOR["key"].encode(),
        nonce=AES_VECTOR["nonce"],
        ciphertext=AES_VECTOR["ciphertext"],
        associated_data=AES_VECTOR["associated_data"],
    )

    assert plaintext == AES_VECTOR["plaintext"].encode() == b"message"
    # and encryption is its exact inverse
    assert (
        aes_gcm_encrypt(
            AES_VECTOR["key"].encode(),
            nonce=AES_VECTOR["nonce"],
            plaintext=plaintext,
            associated_data=AES_VECTOR["associated_data"],
        )
        == AES_VECTOR["ciphertext"]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"apiv3_key": b"A" * 32},
        {"nonce": "uluk4a9R25RX"},
        {"associated_data": "associatedDatA"},
        {"associated_data": ""},
        {"ciphertext": "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwA="},
        {"ciphertext": "not base64 at all!"},
        {"ciphertext": ""},
        {"nonce": ""},
    ],
    ids=["key", "nonce", "aad", "no-aad", "ciphertext", "not-base64", "empty", "empty-nonce"],
)
def test_the_vector_with_anything_wrong_raises_decryption_error(change: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "apiv3_key": AES_VECTOR["key"].encode(),
        "nonce": AES_VECTOR["nonce"],
        "ciphertext": AES_VECTOR["ciphertext"],
        "associated_data": AES_VECTOR["associated_data"],
        **change,
    }
    key = arguments.pop("apiv3_key")

    with pytest.raises(DecryptionError) as caught:
        aes_gcm_decrypt(key, **arguments)

    assert AES_VECTOR["key"] not in str(caught.value)


# -- what fails, and in which order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.tamper_body(), SignatureMismatchError),
        (Fault.wrong_key(), SignatureMismatchError),
        (Fault.wrong_serial(), UnknownSerialError),
        # 5 s past the window, not 1: the server stamps and this side checks whole seconds
        # of the wall clock, and a second can tick between the two (the boundary itself is
        # tested with a fixed clock in test_verifying.py).
        (Fault.stale_timestamp(305), TimestampSkewError),
        (Fault.stale_timestamp(-305), TimestampSkewError),
        (Fault.probe(), ProbeSignatureError),
        (Fault.unsigned(), MissingSignatureHeaderError),
        (Fault.bad_ciphertext(), DecryptionError),
    ],
    ids=[
        "tamper_body",
        "wrong_key",
        "wrong_serial",
        "stale_timestamp",
        "future_timestamp",
        "probe",
        "unsigned",
        "bad_ciphertext",
    ],
)
def test_each_fault_raises_exactly_its_error(
    wechatpay_server: FakeWeChatPay, fault: Fault, error_type: type[WeChatPayError]
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=fault
    )

    error = _raises_exactly(error_type, wechatpay_server, headers, body)

    if isinstance(error, VerificationError):
        assert error.request_id == headers.get("Request-ID")
    if fault.kind == "probe":
        assert "probe" in str(error).lower()
    assert PAYER_OPENID not in str(error)


def test_stale_timestamp_within_the_window_is_accepted(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=Fault.stale_timestamp(200)
    )

    assert _parse(wechatpay_server, headers, body).resource == TRANSACTION


def test_an_sm2_signature_type_is_unsupported(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"

    error = _raises_exactly(UnsupportedSignatureTypeError, wechatpay_server, headers, body)

    assert "WECHATPAY2-SM2-WITH-SM3" in str(error)


def test_the_window_is_checked_before_the_signature(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=Fault.stale_timestamp(305)
    )
    tampered = body.replace(b'"summary":"', b'"summary":"X', 1)
    assert tampered != body

    _raises_exactly(TimestampSkewError, wechatpay_server, headers, tampered)


def test_missing_headers_are_checked_before_anything_else(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=Fault.wrong_serial()
    )
    headers["Wechatpay-Timestamp"] = "1"  # stale too
    del headers["Wechatpay-Nonce"]

    error = _raises_exactly(MissingSignatureHeaderError, wechatpay_server, headers, body)

    assert "Wechatpay-Nonce" in str(error)


def test_decryption_never_runs_before_verification(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=Fault.bad_ciphertext()
    )
    _raises_exactly(DecryptionError, wechatpay_server, headers, body)  # correctly signed
    tampered = body.replace(b'"summary":"', b'"summary":" ', 1)

    _raises_exactly(SignatureMismatchError, wechatpay_server, headers, tampered)


def test_a_non_utf8_nonce_header_fails_verification(wechatpay_server: FakeWeChatPay) -> None:
    # aiohttp hands a header byte that is not UTF-8 over as a lone surrogate
    # (surrogateescape): b"\xff" arrives as "\udcff". Nothing proves such a message, and
    # the verifier must say so with a VerificationError, not crash while building the
    # message to verify.
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    headers["Wechatpay-Nonce"] += "\udcff"

    _raises_exactly(SignatureMismatchError, wechatpay_server, headers, body)


# -- correctly signed, malformed envelopes ------------------------------------------------------


def _without(document: dict[str, Any], *path: str) -> dict[str, Any]:
    target = document
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return document


def _with(document: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = document
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return document


MALFORMED: dict[str, tuple[Callable[[FakeWeChatPay], bytes], type[WeChatPayError]]] = {
    "not-json": (lambda s: b"this is not JSON", InvalidNotificationError),
    "not-utf8": (lambda s: b"\xff\xfe\x00{garbage", InvalidNotificationError),
    "empty-body": (lambda s: b"", InvalidNotificationError),
    "json-array": (lambda s: _dump([_envelope(s)]), InvalidNotificationError),
    "json-string": (lambda s: b'"TRANSACTION.SUCCESS"', InvalidNotificationError),
    "json-null": (lambda s: b"null", InvalidNotificationError),
    "no-resource": (lambda s: _dump(_without(_envelope(s), "resource")), InvalidNotificationError),
    "resource-string": (
        lambda s: _dump(_with(_envelope(s), "encrypted", "resource")),
        InvalidNotificationError,
    ),
    "resource-list": (
        lambda s: _dump(_with(_envelope(s), [], "resource")),
        InvalidNotificationError,
    ),
    "no-id": (lambda s: _dump(_without(_envelope(s), "id")), InvalidNotificationError),
    "id-empty": (lambda s: _dump(_with(_envelope(s), "", "id")), InvalidNotificationError),
    "id-number": (lambda s: _dump(_with(_envelope(s), 42, "id")), InvalidNotificationError),
    "no-event-type": (
        lambda s: _dump(_without(_envelope(s), "event_type")),
        InvalidNotificationError,
    ),
    "event-type-null": (
        lambda s: _dump(_with(_envelope(s), None, "event_type")),
        InvalidNotificationError,
    ),
    "no-resource-type": (
        lambda s: _dump(_without(_envelope(s), "resource_type")),
        InvalidNotificationError,
    ),
    "no-create-time": (
        lambda s: _dump(_without(_envelope(s), "create_time")),
        InvalidNotificationError,
    ),
    "create-time-text": (
        lambda s: _dump(_with(_envelope(s), "yesterday at noon", "create_time")),
        InvalidNotificationError,
    ),
    "create-time-no-offset": (
        lambda s: _dump(_with(_envelope(s), "2015-05-20T13:29:35", "create_time")),
        InvalidNotificationError,
    ),
    "create-time-number": (
        lambda s: _dump(_with(_envelope(s), 1432099775, "create_time")),
        InvalidNotificationError,
    ),
    "create-time-month-13": (
        lambda s: _dump(_with(_envelope(s), "2015-13-20T13:29:35+08:00", "create_time")),
        InvalidNotificationError,
    ),
    "summary-number": (
        lambda s: _dump(_with(_envelope(s), 7, "summary")),
        InvalidNotificationError,
    ),
    "original-type-list": (
        lambda s: _dump(_with(_envelope(s), ["transaction"], "resource", "original_type")),
        InvalidNotificationError,
    ),
    "aes-128": (
        lambda s: _dump(_with(_envelope(s), "AEAD_AES_128_GCM", "resource", "algorithm")),
        InvalidNotificationError,
    ),
    "no-algorithm": (
        lambda s: _dump(_without(_envelope(s), "resource", "algorithm")),
        InvalidNotificationError,
    ),
    "no-nonce": (
        lambda s: _dump(_without(_envelope(s), "resource", "nonce")),
        InvalidNotificationError,
    ),
    "nonce-empty": (
        lambda s: _dump(_with(_envelope(s), "", "resource", "nonce")),
        InvalidNotificationError,
    ),
    "nonce-number": (
        lambda s: _dump(_with(_envelope(s), 123456789012, "resource", "nonce")),
        InvalidNotificationError,
    ),
    "no-ciphertext": (
        lambda s: _dump(_without(_envelope(s), "resource", "ciphertext")),
        InvalidNotificationError,
    ),
    "ciphertext-object": (
        lambda s: _dump(_with(_envelope(s), {"a": 1}, "resource", "ciphertext")),
        InvalidNotificationError,
    ),
    "associated-data-number": (
        lambda s: _dump(_with(_envelope(s), 1, "resource", "associated_data")),
        InvalidNotificationError,
    ),
    "ciphertext-not-base64": (
        lambda s: _dump(_with(_envelope(s), "%%%not base64%%%", "resource", "ciphertext")),
        DecryptionError,
    ),
    "ciphertext-non-ascii": (
        lambda s: _dump(_with(_envelope(s), "密文", "resource", "ciphertext")),
        DecryptionError,
    ),
    "ciphertext-truncated": (
        lambda s: _dump(
            _with(
                _envelope(s),
                _envelope(s)["resource"]["ciphertext"][:-8],
                "resource",
                "ciphertext",
            )
        ),
        DecryptionError,
    ),
    "nonce-other": (
        lambda s: _dump(_with(_envelope(s), "fdasflkja485", "resource", "nonce")),
        DecryptionError,
    ),
    "nonce-too-short": (
        lambda s: _dump(_with(_envelope(s), "abc", "resource", "nonce")),
        DecryptionError,
    ),
    "nonce-lone-surrogate": (
        # \ud800 is valid JSON but has no UTF-8 form: the nonce cannot be the AES nonce.
        lambda s: json.dumps(
            _with(_envelope(s), "fdasflkja48\ud800", "resource", "nonce")
        ).encode(),
        DecryptionError,
    ),
    "associated-data-other": (
        lambda s: _dump(_with(_envelope(s), "refund", "resource", "associated_data")),
        DecryptionError,
    ),
    "associated-data-absent-but-used": (
        lambda s: _dump(_without(_envelope(s), "resource", "associated_data")),
        DecryptionError,
    ),
    "plaintext-not-json": (
        lambda s: _dump(_envelope(s, plaintext=b"<xml>not json</xml>")),
        DecryptionError,
    ),
    "plaintext-not-utf8": (
        lambda s: _dump(_envelope(s, plaintext=b'{"a":"\xff\xfe"}')),
        DecryptionError,
    ),
    "plaintext-empty": (lambda s: _dump(_envelope(s, plaintext=b"")), DecryptionError),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_signed_envelopes_raise_the_documented_error(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, case: str
) -> None:
    make_body, error_type = MALFORMED[case]
    body = make_body(wechatpay_server)
    headers = _sign(wechatpay_server, wechatpay_keys, body)
    _verifier(wechatpay_server).verify(headers, body)  # signed correctly: no error

    error = _raises_exactly(error_type, wechatpay_server, headers, body)

    assert PAYER_OPENID not in str(error)
    assert wechatpay_server.apiv3_key not in str(error)


@pytest.mark.parametrize("associated_data", [None, ""], ids=["absent", "empty"])
def test_absent_or_empty_associated_data_means_empty_bytes(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, associated_data: str | None
) -> None:
    envelope = _envelope(wechatpay_server, associated_data=associated_data)
    assert ("associated_data" in envelope["resource"]) is (associated_data is not None)
    body = _dump(envelope)

    notification = _parse(wechatpay_server, _sign(wechatpay_server, wechatpay_keys, body), body)

    assert notification.resource == TRANSACTION


def test_summary_and_original_type_are_optional(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys
) -> None:
    envelope = _without(
        _without(_envelope(wechatpay_server), "summary"), "resource", "original_type"
    )
    body = _dump(envelope)

    notification = _parse(wechatpay_server, _sign(wechatpay_server, wechatpay_keys, body), body)

    assert notification.summary == ""
    assert notification.original_type == ""
    assert notification.resource == TRANSACTION


@pytest.mark.parametrize("where", ["envelope", "resource"])
def test_deeply_nested_json_raises_a_documented_error(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, where: str
) -> None:
    # verify_and_decrypt promises InvalidNotificationError or DecryptionError and "nothing
    # else" for a signed but malformed message: JSON nested too deep to parse is one.
    deep = b"[" * 100_000 + b"]" * 100_000
    if where == "envelope":
        body = _dump(_envelope(wechatpay_server))[:-1] + b',"extra":' + deep + b"}"
        expected: type[WeChatPayError] = InvalidNotificationError
    else:
        body = _dump(_envelope(wechatpay_server, plaintext=deep))
        expected = DecryptionError

    _raises_exactly(expected, wechatpay_server, _sign(wechatpay_server, wechatpay_keys, body), body)


# -- fuzz ----------------------------------------------------------------------------------------


def _outcome(
    headers: dict[str, str], body: bytes, verifier: Verifier, key: bytes
) -> Notification | WeChatPayError:
    """A notification or the library's error; anything else propagates and fails the test."""
    try:
        return verify_and_decrypt(headers, body, verifier=verifier, apiv3_key=key)
    except WeChatPayError as error:
        return error


def test_random_single_byte_mutations_never_escape_the_error_hierarchy(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys
) -> None:
    rng = random.Random(20240501)  # noqa: S311 - a reproducible fuzz, not a secret
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, summary="支付成功"
    )
    verifier = _verifier(wechatpay_server)
    key = _apiv3_key(wechatpay_server)
    outcomes: dict[str, int] = {}
    for _ in range(200):
        mutated = bytearray(body)
        mutated[rng.randrange(len(body))] = rng.randrange(256)
        candidate = bytes(mutated)

        # As received: the signature no longer covers the body.
        as_received = _outcome(headers, candidate, verifier, key)
        if candidate == body:
            assert isinstance(as_received, Notification)
        else:
            assert type(as_received) is SignatureMismatchError, candidate

        # Signed again by WeChat Pay's key: the parser itself meets the damage.
        resigned = _outcome(
            _sign(wechatpay_server, wechatpay_keys, candidate), candidate, verifier, key
        )
        assert isinstance(resigned, (Notification, InvalidNotificationError, DecryptionError)), (
            candidate,
            resigned,
        )
        outcomes[type(resigned).__name__] = outcomes.get(type(resigned).__name__, 0) + 1
    # Mutations inside e.g. the id or the summary still give a notification.
    assert outcomes.get("Notification", 0) > 0
    assert outcomes.get("InvalidNotificationError", 0) > 0
    assert outcomes.get("DecryptionError", 0) > 0


def test_random_header_deletions_and_changes_never_escape_the_error_hierarchy(
    wechatpay_server: FakeWeChatPay,
) -> None:
    rng = random.Random(77)  # noqa: S311 - a reproducible fuzz, not a secret
    good_headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    verifier = _verifier(wechatpay_server)
    key = _apiv3_key(wechatpay_server)
    alphabet = string.printable + "中文éÿ"
    outcomes: dict[str, int] = {}
    for _ in range(50):
        headers = dict(good_headers)
        name = rng.choice(sorted(headers))
        action = rng.choice(["delete", "replace", "flip", "blank"])
        if action == "delete":
            del headers[name]
        elif action == "replace":
            headers[name] = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60)))
        elif action == "flip":
            value = headers[name]
            position = rng.randrange(len(value))
            headers[name] = value[:position] + rng.choice(alphabet) + value[position + 1 :]
        else:
            headers[name] = "   "
        outcome = _outcome(headers, body, verifier, key)
        outcomes[type(outcome).__name__] = outcomes.get(type(outcome).__name__, 0) + 1
        if isinstance(outcome, Notification):
            assert outcome.resource == TRANSACTION
            if action in ("delete", "blank"):
                assert name not in SIGNATURE_HEADERS
        else:
            assert isinstance(outcome, VerificationError)  # the body is intact: headers failed
            if action in ("delete", "blank") and name in SIGNATURE_HEADERS:
                assert type(outcome) is MissingSignatureHeaderError
    assert outcomes.get("Notification", 0) > 0
    assert outcomes.get("MissingSignatureHeaderError", 0) > 0


# -- the body must be the raw bytes ----------------------------------------------------------------


def test_a_str_body_is_refused_with_a_type_error(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )

    with pytest.raises(TypeError) as caught:
        verify_and_decrypt(
            headers,
            body.decode(),  # type: ignore[arg-type]
            verifier=_verifier(wechatpay_server),
            apiv3_key=_apiv3_key(wechatpay_server),
        )

    message = str(caught.value)
    assert "raw" in message
    assert "bytes" in message
    assert not isinstance(caught.value, WeChatPayError)


# -- through the client ----------------------------------------------------------------------------


async def test_the_client_parses_with_its_own_keys(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, summary="支付成功"
    )

    notification = await wechatpay_client.notifications.parse(headers, body)

    assert notification.resource == TRANSACTION
    assert notification.summary == "支付成功"
    assert notification.request_id == headers["Request-ID"]
    assert wechatpay_server.requests == []  # parsing is local: nothing was sent


async def test_the_client_parse_fails_like_verify_and_decrypt(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, fault=Fault.probe()
    )

    with pytest.raises(ProbeSignatureError):
        await wechatpay_client.notifications.parse(headers, body)


async def test_a_client_without_an_apiv3_key_cannot_parse(
    wechatpay_server: FakeWeChatPay,
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    async with wechatpay_server.client(apiv3_key=None) as wxpay:
        with pytest.raises(ConfigError) as caught:
            await wxpay.notifications.parse(headers, body)

    assert "apiv3_key" in str(caught.value)


async def test_a_client_with_another_apiv3_key_cannot_decrypt(
    wechatpay_server: FakeWeChatPay,
) -> None:
    other_key = "Z" * 32
    assert other_key != wechatpay_server.apiv3_key
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    async with wechatpay_server.client(apiv3_key=other_key) as wxpay:
        with pytest.raises(DecryptionError) as caught:
            await wxpay.notifications.parse(headers, body)

    assert type(caught.value) is DecryptionError
    assert other_key not in str(caught.value)
    assert wechatpay_server.apiv3_key not in str(caught.value)


# -- answering WeChat Pay ----------------------------------------------------------------------------


def test_success_is_204_with_no_body() -> None:
    answer = success()

    assert answer == Acknowledgement(204, b"")
    assert answer.status == 204
    assert answer.body == b""
    assert answer.content_type is None


def test_failure_is_a_fail_document() -> None:
    answer = failure("bad")

    assert answer.status == 500
    assert answer.body == b'{"code":"FAIL","message":"bad"}'
    assert answer.content_type == "application/json"
    assert json.loads(failure().body) == {"code": "FAIL", "message": "失败"}
    assert failure("签名错误", status=401).body == '{"code":"FAIL","message":"签名错误"}'.encode()
    assert failure(status=400).status == 400
    assert failure(status=599).status == 599


@pytest.mark.parametrize("status", [200, 204, 302, 399, 600, 0, -500])
def test_failure_refuses_a_status_that_is_not_4xx_or_5xx(status: int) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        failure(status=status)


def test_acknowledgements_as_aiohttp_responses() -> None:
    ok = success().to_aiohttp()
    assert isinstance(ok, web.Response)
    assert ok.status == 204
    assert not ok.body
    assert "Content-Type" not in ok.headers

    refused = failure("bad", status=400).to_aiohttp()
    assert refused.status == 400
    assert refused.body == b'{"code":"FAIL","message":"bad"}'
    assert refused.content_type == "application/json"


def test_acknowledgements_as_starlette_responses() -> None:
    ok = success().to_starlette()
    assert isinstance(ok, StarletteResponse)
    assert ok.status_code == 204
    assert ok.body == b""
    assert "content-type" not in ok.headers

    refused = failure("bad").to_starlette()
    assert refused.status_code == 500
    assert refused.body == b'{"code":"FAIL","message":"bad"}'
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["content-length"] == str(len(refused.body))


def test_base64_signature_of_a_probe_is_not_even_decoded(wechatpay_server: FakeWeChatPay) -> None:
    # A probe whose remainder happens to be valid Base64 is still a probe.
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION
    )
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + base64.b64encode(b"x" * 24).decode()

    error = _raises_exactly(ProbeSignatureError, wechatpay_server, headers, body)

    assert isinstance(error, SignatureMismatchError)
