"""Verifying WeChat Pay's signatures (wechatpay_chain.verifying): PROTOCOL.md section 2."""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from wechatpay_chain import WeChatPay
from wechatpay_chain.errors import (
    ConfigError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    SignatureMismatchError,
    TimestampSkewError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
    VerificationError,
    WeChatPayError,
)
from wechatpay_chain.keys import KeySource
from wechatpay_chain.verifying import PublicKeyStore, Verifier

DATA = Path(__file__).parent / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
VECTOR: dict[str, Any] = VECTORS["response_verification"]
WECHATPAY_PUBLIC_KEY = DATA / VECTOR["public_key"]

HEADERS: dict[str, str] = dict(VECTOR["headers"])
BODY: bytes = VECTOR["body"].encode("utf-8")
TIMESTAMP = int(HEADERS["Wechatpay-Timestamp"])
PUB_KEY_ID: str = HEADERS["Wechatpay-Serial"]
REQUEST_ID = "08F78BB5AF0610D302A4C85B9F0128D2B91F0C-0"
SIGNATURE_HEADERS = [
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
]

CERT_SERIAL_HEX = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


def _vector_verifier(offset: int = 0) -> Verifier:
    return Verifier({PUB_KEY_ID: WECHATPAY_PUBLIC_KEY}, clock=lambda: TIMESTAMP + offset)


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def _signed_headers(
    key: rsa.RSAPrivateKey, serial: str, timestamp: int, nonce: str, body: bytes
) -> dict[str, str]:
    """Headers as WeChat Pay would send them, signed over ``ts\\nnonce\\nbody\\n`` here."""
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": _sign(key, message),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def _accepts(verifier: Verifier, headers: dict[str, str], body: bytes) -> None:
    """``verifier`` accepts ``body``, and (a control) rejects the same headers with another body."""
    verifier.verify(headers, body)
    with pytest.raises(SignatureMismatchError):
        verifier.verify(headers, body + b"!")


def _public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def platform_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def platform_certificate(platform_key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(platform_key.public_key())
        .serial_number(int(CERT_SERIAL_HEX, 16))
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(platform_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------- the official vector


@pytest.mark.parametrize("offset", [0, 300, -300, 299, -299])
@pytest.mark.parametrize("case", ["original", "lower", "upper"])
def test_official_vector_verifies(offset: int, case: str) -> None:
    transforms: dict[str, Callable[[str], str]] = {
        "original": str,
        "lower": str.lower,
        "upper": str.upper,
    }
    transform = transforms[case]
    headers = {transform(name): value for name, value in HEADERS.items()}
    _accepts(_vector_verifier(offset), headers, BODY)


def test_official_vector_verifies_with_float_clock() -> None:
    verifier = Verifier({PUB_KEY_ID: WECHATPAY_PUBLIC_KEY}, clock=lambda: TIMESTAMP + 300.9)
    _accepts(verifier, HEADERS, BODY)


def test_official_vector_with_signature_type_header() -> None:
    headers = {**HEADERS, "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}
    _accepts(_vector_verifier(), headers, BODY)
    lower = {**HEADERS, "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048"}
    _accepts(_vector_verifier(), lower, BODY)


def test_official_vector_with_request_id_verifies() -> None:
    _accepts(_vector_verifier(), {**HEADERS, "Request-ID": REQUEST_ID}, BODY)


# --------------------------------------------------------------------------- each way of failing


def _expect(
    error_class: type[VerificationError],
    headers: dict[str, str],
    body: bytes = BODY,
    verifier: Verifier | None = None,
) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        (verifier or _vector_verifier()).verify(headers, body)
    assert type(caught.value) is error_class
    assert isinstance(caught.value, VerificationError)
    assert isinstance(caught.value, WeChatPayError)
    return caught.value


@pytest.mark.parametrize(
    "error_class",
    [
        MissingSignatureHeaderError,
        TimestampSkewError,
        UnknownSerialError,
        UnsupportedSignatureTypeError,
        SignatureMismatchError,
        ProbeSignatureError,
    ],
)
def test_error_hierarchy(error_class: type[VerificationError]) -> None:
    assert issubclass(error_class, VerificationError)
    assert issubclass(error_class, WeChatPayError)
    assert not issubclass(error_class, ConfigError)


def test_probe_is_a_signature_mismatch() -> None:
    assert issubclass(ProbeSignatureError, SignatureMismatchError)


@pytest.mark.parametrize("missing", SIGNATURE_HEADERS)
def test_missing_header(missing: str) -> None:
    headers = {name: value for name, value in HEADERS.items() if name != missing}
    error = _expect(MissingSignatureHeaderError, headers)
    assert missing in str(error)
    for other in SIGNATURE_HEADERS:
        if other != missing:
            assert other not in str(error)


def test_all_headers_missing_names_them_all() -> None:
    error = _expect(MissingSignatureHeaderError, {"Content-Type": "application/json"})
    for name in SIGNATURE_HEADERS:
        assert name in str(error)


@pytest.mark.parametrize("empty", ["", " ", "\t"])
@pytest.mark.parametrize("header", SIGNATURE_HEADERS)
def test_empty_header(header: str, empty: str) -> None:
    error = _expect(MissingSignatureHeaderError, {**HEADERS, header: empty})
    assert header in str(error)


@pytest.mark.parametrize(
    ("offset", "word"),
    [(301, "old"), (-301, "future"), (3600, "old"), (-86400, "future")],
)
def test_timestamp_skew(offset: int, word: str) -> None:
    # The clock moves, not the header: the signature stays valid, only the skew is wrong.
    error = _expect(TimestampSkewError, HEADERS, verifier=_vector_verifier(offset))
    assert word in str(error)
    assert f"{abs(offset)} s" in str(error)


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "1722850421.0",
        "-1722850421",
        "+1722850421",
        "0x66B0A675",
        "1722850421ms",
        "\uff11\uff17\uff12\uff12\uff18\uff15\uff10\uff14\uff12\uff11",  # full-width digits
        "\u0661\u0667\u0662\u0662",  # Arabic-Indic digits
    ],
)
def test_non_numeric_timestamp(timestamp: str) -> None:
    error = _expect(TimestampSkewError, {**HEADERS, "Wechatpay-Timestamp": timestamp})
    assert "not Unix seconds" in str(error)


def test_absurdly_long_timestamp_is_a_verification_error() -> None:
    # Python refuses int() on more than 4300 digits; that must not escape as a bare ValueError.
    timestamp = "1" * 5000
    error = _expect(TimestampSkewError, {**HEADERS, "Wechatpay-Timestamp": timestamp})
    assert timestamp not in str(error)


@pytest.mark.parametrize(
    "serial",
    [
        "PUB_KEY_ID_0000000000000024101100397200000007",
        "PUB_KEY_ID_",
        CERT_SERIAL_HEX,
        "not a serial",
    ],
)
def test_unknown_serial(serial: str) -> None:
    error = _expect(UnknownSerialError, {**HEADERS, "Wechatpay-Serial": serial})
    assert serial in str(error)
    assert PUB_KEY_ID in str(error)  # what the client does hold


def test_unknown_serial_with_an_empty_store() -> None:
    error = _expect(UnknownSerialError, HEADERS, verifier=Verifier({}, clock=lambda: TIMESTAMP))
    assert "none configured" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BODY.replace(b"JyC91EIz1", b"JyC91EIz2"), id="one byte changed"),
        pytest.param(BODY + b" ", id="trailing space"),
        pytest.param(BODY + b"\n", id="trailing newline"),
        pytest.param(b" " + BODY, id="leading space"),
        pytest.param(json.dumps(json.loads(BODY)).encode(), id="re-serialised"),
        pytest.param(b"", id="empty"),
    ],
)
def test_tampered_body(body: bytes) -> None:
    assert body != BODY
    error = _expect(SignatureMismatchError, HEADERS, body)
    assert not isinstance(error, ProbeSignatureError)
    assert PUB_KEY_ID in str(error)
    assert "does not verify" in str(error)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Wechatpay-Nonce", "d824f2e086d3c1df967785d13fcd22ee"),
        ("Wechatpay-Timestamp", str(TIMESTAMP + 1)),
    ],
)
def test_tampered_signed_header(header: str, value: str) -> None:
    error = _expect(SignatureMismatchError, {**HEADERS, header: value})
    assert not isinstance(error, ProbeSignatureError)


def test_tampered_signature() -> None:
    raw = bytearray(base64.b64decode(HEADERS["Wechatpay-Signature"]))
    raw[10] ^= 0x01
    signature = base64.b64encode(bytes(raw)).decode("ascii")
    error = _expect(SignatureMismatchError, {**HEADERS, "Wechatpay-Signature": signature})
    assert "does not verify" in str(error)


def test_signature_from_another_key(other_key: rsa.RSAPrivateKey) -> None:
    headers = _signed_headers(other_key, PUB_KEY_ID, TIMESTAMP, "nonce", BODY)
    error = _expect(SignatureMismatchError, headers)
    assert not isinstance(error, ProbeSignatureError)


@pytest.mark.parametrize(
    "signature",
    [
        "WECHATPAY/SIGNTEST/" + HEADERS["Wechatpay-Signature"],
        "WECHATPAY/SIGNTEST/",
        "WECHATPAY/SIGNTEST/abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_probe_signature(signature: str) -> None:
    error = _expect(ProbeSignatureError, {**HEADERS, "Wechatpay-Signature": signature})
    assert "probe" in str(error).lower()
    assert isinstance(error, SignatureMismatchError)


@pytest.mark.parametrize(
    "signature",
    [
        "not base64!",
        HEADERS["Wechatpay-Signature"][:-2],  # padding lost
        HEADERS["Wechatpay-Signature"].replace("+", "-").replace("/", "_"),  # URL-safe alphabet
        "WECHATPAY/SIGNTES/abc",  # almost a probe
        "Zm9v",  # valid Base64, wrong length for RSA-2048
    ],
)
def test_bad_base64_signature(signature: str) -> None:
    assert signature != HEADERS["Wechatpay-Signature"]
    error = _expect(SignatureMismatchError, {**HEADERS, "Wechatpay-Signature": signature})
    assert not isinstance(error, ProbeSignatureError)


@pytest.mark.parametrize(
    "signature_type",
    ["WECHATPAY2-SM2-WITH-SM3", "WECHATPAY-BRAND-SHA256-RSA2048", "wechatpay2-sha256-rsa2048"],
)
def test_unsupported_signature_type(signature_type: str) -> None:
    headers = {**HEADERS, "Wechatpay-Signature-Type": signature_type}
    error = _expect(UnsupportedSignatureTypeError, headers)
    assert signature_type in str(error)
    assert "WECHATPAY2-SHA256-RSA2048" in str(error)


@pytest.mark.parametrize("request_id_header", ["Request-ID", "Request-Id", "request-id"])
@pytest.mark.parametrize(
    ("error_class", "change"),
    [
        (MissingSignatureHeaderError, {"Wechatpay-Nonce": ""}),
        (TimestampSkewError, {"Wechatpay-Timestamp": "soon"}),
        (UnknownSerialError, {"Wechatpay-Serial": "PUB_KEY_ID_1"}),
        (UnsupportedSignatureTypeError, {"Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}),
        (ProbeSignatureError, {"Wechatpay-Signature": "WECHATPAY/SIGNTEST/x"}),
        (SignatureMismatchError, {"Wechatpay-Signature": "%%%"}),
        (SignatureMismatchError, {"Wechatpay-Nonce": "changed"}),
    ],
)
def test_request_id_is_carried(
    request_id_header: str, error_class: type[VerificationError], change: dict[str, str]
) -> None:
    headers = {**HEADERS, **change, request_id_header: REQUEST_ID}
    error = _expect(error_class, headers)
    assert error.request_id == REQUEST_ID
    assert REQUEST_ID in str(error)


def test_request_id_is_none_without_the_header() -> None:
    error = _expect(SignatureMismatchError, HEADERS, BODY + b" ")
    assert error.request_id is None
    assert "Request-ID" not in str(error)


# --------------------------------------------------------------------------- signatures made here


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty body (204)"),
        pytest.param('{"summary":"支付成功","name":"QQ公仔"}'.encode(), id="non-ASCII"),
        pytest.param(b'{"a":1}\n', id="trailing newline"),
        pytest.param(b"\x00\xff binary", id="binary"),
    ],
)
def test_fresh_key_signatures_verify(platform_key: rsa.RSAPrivateKey, body: bytes) -> None:
    now = 1_800_000_000
    nonce = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    serial = "PUB_KEY_ID_0114232134912410000000000000"
    headers = _signed_headers(platform_key, serial, now, nonce, body)
    verifier = Verifier({serial: platform_key.public_key()}, clock=lambda: now)
    verifier.verify(headers, body)
    # and the very same headers do not vouch for anything else
    with pytest.raises(SignatureMismatchError):
        verifier.verify(headers, body + b"x")


def test_empty_body_message_is_timestamp_nonce_and_two_newlines(
    platform_key: rsa.RSAPrivateKey,
) -> None:
    now = 1_800_000_000
    headers = {
        "Wechatpay-Timestamp": str(now),
        "Wechatpay-Nonce": "n0nce",
        "Wechatpay-Serial": "PUB_KEY_ID_1",
        "Wechatpay-Signature": _sign(platform_key, f"{now}\nn0nce\n\n".encode()),
    }
    verifier = Verifier({"PUB_KEY_ID_1": platform_key.public_key()}, clock=lambda: now)
    _accepts(verifier, headers, b"")
    # without the trailing newline it would be a different message
    headers["Wechatpay-Signature"] = _sign(platform_key, f"{now}\nn0nce\n".encode())
    with pytest.raises(SignatureMismatchError):
        verifier.verify(headers, b"")


def test_default_clock_is_now(platform_key: rsa.RSAPrivateKey) -> None:
    verifier = Verifier({"PUB_KEY_ID_1": platform_key.public_key()})
    now = int(time.time())
    _accepts(verifier, _signed_headers(platform_key, "PUB_KEY_ID_1", now, "n", b"{}"), b"{}")
    stale = _signed_headers(platform_key, "PUB_KEY_ID_1", now - 3600, "n", b"{}")
    with pytest.raises(TimestampSkewError):
        verifier.verify(stale, b"{}")


@pytest.mark.parametrize("header_serial", [CERT_SERIAL_HEX, CERT_SERIAL_HEX.lower()])
@pytest.mark.parametrize("configured_serial", [CERT_SERIAL_HEX, CERT_SERIAL_HEX.lower()])
def test_certificate_serial_is_case_insensitive(
    platform_key: rsa.RSAPrivateKey,
    platform_certificate: x509.Certificate,
    header_serial: str,
    configured_serial: str,
) -> None:
    now = 1_800_000_000
    verifier = Verifier({configured_serial: platform_certificate}, clock=lambda: now)
    headers = _signed_headers(platform_key, header_serial, now, "nonce", b'{"ok":true}')
    _accepts(verifier, headers, b'{"ok":true}')


def test_verifier_accepts_a_ready_store(platform_key: rsa.RSAPrivateKey) -> None:
    store = PublicKeyStore({"PUB_KEY_ID_1": platform_key.public_key()})
    verifier = Verifier(store, clock=lambda: 1_800_000_000)
    assert verifier.public_keys is store
    headers = _signed_headers(platform_key, "PUB_KEY_ID_1", 1_800_000_000, "n", b"x")
    _accepts(verifier, headers, b"x")


# --------------------------------------------------------------------------- the store


def _expected_wechatpay_numbers() -> rsa.RSAPublicNumbers:
    key = serialization.load_pem_public_key(WECHATPAY_PUBLIC_KEY.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_numbers()


def _wechatpay_key_object() -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(WECHATPAY_PUBLIC_KEY.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda: WECHATPAY_PUBLIC_KEY, id="pathlib.Path"),
        pytest.param(lambda: str(WECHATPAY_PUBLIC_KEY), id="path str"),
        pytest.param(WECHATPAY_PUBLIC_KEY.read_bytes, id="PEM bytes"),
        pytest.param(lambda: WECHATPAY_PUBLIC_KEY.read_text(encoding="ascii"), id="PEM str"),
        pytest.param(_wechatpay_key_object, id="object"),
    ],
)
def test_store_key_sources(make_source: Callable[[], KeySource]) -> None:
    store = PublicKeyStore({PUB_KEY_ID: make_source()})
    assert list(store) == [PUB_KEY_ID]
    assert len(store) == 1
    assert store[PUB_KEY_ID].public_numbers() == _expected_wechatpay_numbers()
    verifier = Verifier(store, clock=lambda: TIMESTAMP)
    _accepts(verifier, HEADERS, BODY)


def test_store_certificate_sources(
    platform_key: rsa.RSAPrivateKey, platform_certificate: x509.Certificate
) -> None:
    pem = platform_certificate.public_bytes(serialization.Encoding.PEM)
    der = platform_certificate.public_bytes(serialization.Encoding.DER)
    for source in (platform_certificate, pem, der, pem.decode("ascii")):
        store = PublicKeyStore({CERT_SERIAL_HEX: source})
        assert store[CERT_SERIAL_HEX].public_numbers() == platform_key.public_key().public_numbers()


def test_store_lookup_is_case_insensitive_for_hex_serials(
    platform_certificate: x509.Certificate,
) -> None:
    store = PublicKeyStore({CERT_SERIAL_HEX.lower(): platform_certificate})
    assert CERT_SERIAL_HEX in store
    assert CERT_SERIAL_HEX.lower() in store
    assert store[CERT_SERIAL_HEX] is store[CERT_SERIAL_HEX.lower()]
    assert list(store) == [CERT_SERIAL_HEX]
    # a serial is a number: printed in whole bytes (a leading zero) it is the same serial
    assert "0" + CERT_SERIAL_HEX in store
    assert "1" + CERT_SERIAL_HEX not in store
    not_a_str: object = 42
    assert not_a_str not in store
    with pytest.raises(KeyError):
        store["408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"]


def test_store_add(platform_certificate: x509.Certificate) -> None:
    store = PublicKeyStore()
    assert len(store) == 0
    assert store.preferred_serial is None
    store.add(CERT_SERIAL_HEX, platform_certificate)
    assert store.preferred_serial == CERT_SERIAL_HEX
    store.add(PUB_KEY_ID, WECHATPAY_PUBLIC_KEY)
    assert store.preferred_serial == PUB_KEY_ID
    assert set(store) == {CERT_SERIAL_HEX, PUB_KEY_ID}


@pytest.mark.parametrize("public_key_first", [True, False])
def test_preferred_serial_is_the_public_key_id(
    platform_certificate: x509.Certificate, public_key_first: bool
) -> None:
    entries: list[tuple[str, KeySource]] = [
        (CERT_SERIAL_HEX, platform_certificate),
        (PUB_KEY_ID, WECHATPAY_PUBLIC_KEY),
    ]
    if public_key_first:
        entries.reverse()
    store = PublicKeyStore(dict(entries))
    assert next(iter(store)) == (PUB_KEY_ID if public_key_first else CERT_SERIAL_HEX)
    assert store.preferred_serial == PUB_KEY_ID


def test_preferred_serial_with_certificates_only(
    platform_certificate: x509.Certificate, other_key: rsa.RSAPrivateKey
) -> None:
    store = PublicKeyStore(
        {CERT_SERIAL_HEX.lower(): platform_certificate, "ABCDEF": other_key.public_key()}
    )
    assert store.preferred_serial == CERT_SERIAL_HEX


def test_store_repr_lists_serials_not_keys() -> None:
    store = PublicKeyStore({PUB_KEY_ID: WECHATPAY_PUBLIC_KEY})
    assert repr(store) == f"PublicKeyStore([{PUB_KEY_ID!r}])"


@pytest.mark.parametrize("serial", ["", " ", "\t\n"])
def test_store_empty_serial(serial: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PublicKeyStore({serial: WECHATPAY_PUBLIC_KEY})
    assert "serial" in str(caught.value)
    with pytest.raises(ConfigError):
        PublicKeyStore().add(serial, WECHATPAY_PUBLIC_KEY)


def test_store_non_str_serial() -> None:
    with pytest.raises(ConfigError) as caught:
        PublicKeyStore().add(123, WECHATPAY_PUBLIC_KEY)  # type: ignore[arg-type]
    assert "non-empty str" in str(caught.value)


def _merchant_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (DATA / "merchant_key_pkcs8.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(_merchant_private_key, id="object"),
        pytest.param((DATA / "merchant_key_pkcs8.pem").read_bytes, id="PKCS#8 PEM bytes"),
        pytest.param(lambda: DATA / "merchant_key_pkcs1.pem", id="PKCS#1 path"),
        pytest.param(
            lambda: _merchant_private_key().private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            id="PKCS#8 DER bytes",
        ),
    ],
)
def test_store_rejects_a_private_key(make_source: Callable[[], KeySource]) -> None:
    with pytest.raises(ConfigError) as caught:
        PublicKeyStore({PUB_KEY_ID: make_source()})
    message = str(caught.value)
    assert message.startswith("public_keys: expected a WeChat Pay public key")
    for name in ("merchant_key_pkcs8.pem", "merchant_key_pkcs1.pem"):
        for line in (DATA / name).read_text(encoding="ascii").splitlines():
            if not line.startswith("-----"):
                assert line not in message


def test_verifier_rejects_a_private_key_config() -> None:
    with pytest.raises(ConfigError):
        Verifier({PUB_KEY_ID: DATA / "merchant_key_pkcs8.pem"})


def test_store_key_from_another_pem(platform_key: rsa.RSAPrivateKey) -> None:
    store = PublicKeyStore({"PUB_KEY_ID_2": _public_key_pem(platform_key)})
    assert store["PUB_KEY_ID_2"].public_numbers() == platform_key.public_key().public_numbers()


# ---------------------------------------------------------------- the shape of public_keys


@pytest.mark.parametrize(
    "public_keys",
    [
        str(WECHATPAY_PUBLIC_KEY),
        WECHATPAY_PUBLIC_KEY,
        WECHATPAY_PUBLIC_KEY.read_bytes(),
        [str(WECHATPAY_PUBLIC_KEY)],
        [(PUB_KEY_ID, str(WECHATPAY_PUBLIC_KEY))],
        (PUB_KEY_ID,),
    ],
    ids=["path str", "Path", "PEM bytes", "list of paths", "list of pairs", "tuple"],
)
def test_public_keys_that_are_not_a_mapping_are_a_config_error(public_keys: object) -> None:
    builds: tuple[Callable[[], object], ...] = (
        lambda: PublicKeyStore(public_keys),  # type: ignore[arg-type]
        lambda: Verifier(public_keys),  # type: ignore[arg-type]
    )
    for build in builds:
        with pytest.raises(ConfigError, match=r"^public_keys: expected a mapping") as caught:
            build()
        assert not isinstance(caught.value, AttributeError)
        # the PEM text itself is never echoed
        assert "MIIB" not in str(caught.value)


def test_a_client_given_public_keys_as_a_str_says_so() -> None:
    with pytest.raises(ConfigError, match="public_keys"):
        WeChatPay(
            "1900000109",
            "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
            DATA / "merchant_key_pkcs8.pem",
            str(WECHATPAY_PUBLIC_KEY),  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------- the merchant's own key


def _merchant_public_key() -> rsa.RSAPublicKey:
    return _merchant_private_key().public_key()


def _merchant_certificate() -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "1900000109")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_merchant_public_key())
        .serial_number(int("408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", 16))
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(_merchant_private_key(), hashes.SHA256())
    )


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(_merchant_public_key, id="object"),
        pytest.param(lambda: DATA / "merchant_public_key.pem", id="PEM path"),
        pytest.param(
            lambda: _merchant_public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            id="DER bytes",
        ),
        pytest.param(_merchant_certificate, id="the merchant's API certificate"),
    ],
)
def test_the_merchants_own_key_is_refused_as_a_wechatpay_key(
    make_source: Callable[[], KeySource],
) -> None:
    with pytest.raises(ConfigError) as caught:
        PublicKeyStore({PUB_KEY_ID: make_source()}, merchant_key=_merchant_public_key())
    assert str(caught.value).startswith(
        f"public_keys[{PUB_KEY_ID!r}] is the merchant's own API key, not a WeChat Pay key"
    )
    # and the same when it comes later (a download, an add)
    store = PublicKeyStore({PUB_KEY_ID: WECHATPAY_PUBLIC_KEY}, merchant_key=_merchant_public_key())
    with pytest.raises(ConfigError, match="merchant's own API key"):
        store.add("PUB_KEY_ID_2", make_source())
    assert list(store) == [PUB_KEY_ID]  # nothing was added


def test_a_certificate_with_the_merchants_key_is_refused_when_added(
    platform_certificate: x509.Certificate,
) -> None:
    store = PublicKeyStore(merchant_key=_merchant_public_key())
    assert store.add_certificate(platform_certificate) == CERT_SERIAL_HEX  # WeChat Pay's: fine
    with pytest.raises(ConfigError, match="merchant's own API key"):
        store.add_certificate(_merchant_certificate())


def test_without_merchant_key_the_store_cannot_tell() -> None:
    # No merchant key given (a signer in an HSM, say): the store cannot compare.
    assert list(PublicKeyStore({PUB_KEY_ID: _merchant_public_key()})) == [PUB_KEY_ID]


@pytest.mark.parametrize("merchant_key", ["apiclient_key.pem", b"", 1])
def test_merchant_key_must_be_a_public_key(merchant_key: object) -> None:
    with pytest.raises(ConfigError, match="merchant_key"):
        PublicKeyStore(merchant_key=merchant_key)  # type: ignore[arg-type]
