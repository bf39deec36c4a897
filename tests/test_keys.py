"""Loading private keys, public keys and certificates (wechatpay_chain.keys)."""

from __future__ import annotations

import base64
import datetime
import functools
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from wechatpay_chain.errors import ConfigError, WeChatPayError
from wechatpay_chain.keys import (
    KeySource,
    certificate_serial,
    load_certificate,
    load_private_key,
    load_public_key,
    load_verification_key,
)

DATA = Path(__file__).parent / "data"
PKCS1_PEM = DATA / "merchant_key_pkcs1.pem"
PKCS8_PEM = DATA / "merchant_key_pkcs8.pem"
PUBLIC_PEM = DATA / "merchant_public_key.pem"

CERT_SERIAL = 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1
CERT_SERIAL_HEX = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
PKCS8 = serialization.PrivateFormat.PKCS8
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
NO_ENCRYPTION = serialization.NoEncryption()


# --------------------------------------------------------------------------- helpers


@functools.cache
def _reference_private_key() -> rsa.RSAPrivateKey:
    """The merchant key loaded with cryptography directly, independently of the library."""
    key = serialization.load_pem_private_key(PKCS8_PEM.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@functools.cache
def _expected_public_numbers() -> rsa.RSAPublicNumbers:
    key = serialization.load_pem_public_key(PUBLIC_PEM.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_numbers()


def _pem_body_lines(pem: str | bytes) -> list[str]:
    """The base64 lines between the armour lines of every PEM block in ``pem``."""
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("-----") and ":" not in line
    ]


def _error_text(error: BaseException) -> str:
    """Everything a log line could show about ``error``: str, repr and the formatted traceback."""
    formatted = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return "\n".join([str(error), repr(error), formatted])


def _assert_no_key_material(error: BaseException, material: str | bytes) -> None:
    """No line of a PEM body, no 20-char slice of base64 and no DER fragment is in ``error``."""
    text = _error_text(error)
    if isinstance(material, bytes) and b"-----BEGIN" not in material:
        try:
            b64 = material.decode("ascii")
        except UnicodeDecodeError:
            b64 = base64.b64encode(material).decode("ascii")
            for start in range(0, max(len(material) - 16, 1), 8):
                chunk = material[start : start + 16]
                assert chunk.hex() not in text
                assert chunk.hex().upper() not in text
                assert repr(chunk)[2:-1] not in text
    else:
        b64 = material.decode("ascii") if isinstance(material, bytes) else material
    lines = _pem_body_lines(b64) or [b64]
    for line in lines:
        if len(line) >= 16:
            assert line not in text
    joined = "".join(lines)
    assert len(joined) >= 40, "the material under test is too short to be meaningful"
    for start in range(0, len(joined) - 20, 10):
        assert joined[start : start + 20] not in text


def _self_signed_certificate(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, serial: int
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cert_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate(cert_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return _self_signed_certificate(cert_key, CERT_SERIAL)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def encrypted_pkcs8_pem() -> bytes:
    return _reference_private_key().private_bytes(
        PEM, PKCS8, serialization.BestAvailableEncryption(b"pw")
    )


# --------------------------------------------------------------------------- private keys


def _private_sources() -> dict[str, Callable[[], KeySource]]:
    def der(fmt: serialization.PrivateFormat) -> Callable[[], KeySource]:
        return lambda: _reference_private_key().private_bytes(DER, fmt, NO_ENCRYPTION)

    return {
        "pkcs8 path str": lambda: str(PKCS8_PEM),
        "pkcs8 pathlib.Path": lambda: PKCS8_PEM,
        "pkcs1 path str": lambda: str(PKCS1_PEM),
        "pkcs1 pathlib.Path": lambda: PKCS1_PEM,
        "pkcs8 PEM str": lambda: PKCS8_PEM.read_text(encoding="ascii"),
        "pkcs1 PEM str": lambda: PKCS1_PEM.read_text(encoding="ascii"),
        "pkcs8 PEM bytes": PKCS8_PEM.read_bytes,
        "pkcs1 PEM bytes": PKCS1_PEM.read_bytes,
        "pkcs8 DER bytes": der(PKCS8),
        "pkcs1 DER bytes": der(PKCS1),
        "loaded object": _reference_private_key,
    }


@pytest.mark.parametrize("kind", list(_private_sources()))
def test_load_private_key_from_every_source(kind: str) -> None:
    source = _private_sources()[kind]()
    key = load_private_key(source)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers() == _expected_public_numbers()
    assert key.private_numbers() == _reference_private_key().private_numbers()


def test_pkcs1_and_pkcs8_files_hold_the_same_key() -> None:
    from_pkcs1 = load_private_key(PKCS1_PEM)
    from_pkcs8 = load_private_key(PKCS8_PEM)
    assert from_pkcs1.public_key().public_numbers() == from_pkcs8.public_key().public_numbers()
    assert PKCS1_PEM.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert PKCS8_PEM.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_loaded_private_key_object_is_returned_as_is() -> None:
    key = _reference_private_key()
    assert load_private_key(key) is key


def test_encrypted_private_key_loads_with_its_password(encrypted_pkcs8_pem: bytes) -> None:
    assert encrypted_pkcs8_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = load_private_key(encrypted_pkcs8_pem, password=b"pw")
    assert key.public_key().public_numbers() == _expected_public_numbers()


def test_encrypted_private_key_from_a_file_loads_with_its_password(
    encrypted_pkcs8_pem: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "apiclient_key.pem"
    path.write_bytes(encrypted_pkcs8_pem)
    key = load_private_key(path, password=b"pw")
    assert key.public_key().public_numbers() == _expected_public_numbers()


def test_encrypted_private_key_without_password(encrypted_pkcs8_pem: bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(encrypted_pkcs8_pem)
    assert "encrypted" in str(caught.value)
    assert "password" in str(caught.value)
    _assert_no_key_material(caught.value, encrypted_pkcs8_pem)


@pytest.mark.parametrize("password", [b"wrong", b"pw ", b"PW"])
def test_encrypted_private_key_with_wrong_password(
    encrypted_pkcs8_pem: bytes, password: bytes
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(encrypted_pkcs8_pem, password=password)
    assert "wrong password" in str(caught.value)
    _assert_no_key_material(caught.value, encrypted_pkcs8_pem)


def test_password_for_an_unencrypted_key() -> None:
    pem = PKCS8_PEM.read_bytes()
    with pytest.raises(ConfigError) as caught:
        load_private_key(pem, password=b"pw")
    assert "not encrypted" in str(caught.value)
    _assert_no_key_material(caught.value, pem)


def test_config_error_is_a_wechatpay_error_and_a_value_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(b"garbage")
    assert isinstance(caught.value, WeChatPayError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None


def _public_pem_text() -> str:
    return PUBLIC_PEM.read_text(encoding="ascii")


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(_public_pem_text, id="PEM str"),
        pytest.param(PUBLIC_PEM.read_bytes, id="PEM bytes"),
        pytest.param(lambda: PUBLIC_PEM, id="pathlib.Path"),
        pytest.param(lambda: str(PUBLIC_PEM), id="path str"),
        pytest.param(lambda: load_public_key(PUBLIC_PEM), id="object"),
    ],
)
def test_public_key_where_private_expected(make_source: Callable[[], KeySource]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(make_source())
    assert "a public key" in str(caught.value)
    assert "private key" in str(caught.value)
    _assert_no_key_material(caught.value, _public_pem_text())


@pytest.mark.parametrize("form", ["PEM str", "PEM bytes", "file", "object"])
def test_certificate_where_private_expected(
    certificate: x509.Certificate, form: str, tmp_path: Path
) -> None:
    pem = certificate.public_bytes(PEM)
    source: KeySource
    if form == "PEM str":
        source = pem.decode("ascii")
    elif form == "PEM bytes":
        source = pem
    elif form == "file":
        source = tmp_path / "cert.pem"
        source.write_bytes(pem)
    else:
        source = certificate
    with pytest.raises(ConfigError) as caught:
        load_private_key(source)
    assert "certificate" in str(caught.value)
    _assert_no_key_material(caught.value, pem)


def test_certificate_der_where_private_expected(certificate: x509.Certificate) -> None:
    der = certificate.public_bytes(DER)
    with pytest.raises(ConfigError) as caught:
        load_private_key(der)
    assert "private key" in str(caught.value)
    _assert_no_key_material(caught.value, der)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"garbage", "neither PEM nor a DER key"),
        (b"\x30\x82\x04\xbd\x02\x01\x00\x30\x0d\x06\x09\x2a", "neither PEM nor a DER key"),
        (b"", "empty data"),
        ("not a key and not a file", "neither PEM text nor an existing file"),
        ("", "neither PEM text nor an existing file"),
    ],
)
def test_garbage_private_key(source: str | bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(source)
    assert expected in str(caught.value)
    assert str(caught.value).startswith("private_key: ")


def _pkcs8_base64_lines() -> list[str]:
    return _pem_body_lines(PKCS8_PEM.read_text(encoding="ascii"))


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda: "".join(_pkcs8_base64_lines()), id="one-line str"),
        pytest.param(lambda: "\n".join(_pkcs8_base64_lines()), id="multi-line str"),
        pytest.param(
            lambda: "\n".join(_pkcs8_base64_lines()) + "\n", id="multi-line str + newline"
        ),
        pytest.param(lambda: "".join(_pkcs8_base64_lines()).encode(), id="one-line bytes"),
        pytest.param(lambda: "\n".join(_pkcs8_base64_lines()).encode(), id="multi-line bytes"),
        pytest.param(lambda: "".join(_pkcs8_base64_lines())[:400], id="truncated one-line str"),
    ],
)
def test_unarmoured_base64_key_is_not_echoed(make_source: Callable[[], str | bytes]) -> None:
    source = make_source()
    with pytest.raises(ConfigError) as caught:
        load_private_key(source)
    assert str(caught.value).startswith("private_key: ")
    _assert_no_key_material(caught.value, source)


def test_corrupted_pem_body_is_not_echoed() -> None:
    lines = PKCS8_PEM.read_text(encoding="ascii").splitlines()
    lines[5] = lines[5][::-1]  # a damaged line inside the base64 body
    pem = "\n".join(lines) + "\n"
    with pytest.raises(ConfigError) as caught:
        load_private_key(pem)
    assert "PEM text" in str(caught.value)
    _assert_no_key_material(caught.value, pem)


def test_truncated_der_private_key_is_not_echoed() -> None:
    der = _reference_private_key().private_bytes(DER, PKCS8, NO_ENCRYPTION)[:600]
    with pytest.raises(ConfigError) as caught:
        load_private_key(der)
    _assert_no_key_material(caught.value, der)


@pytest.mark.parametrize("as_path", [False, True], ids=["str", "pathlib.Path"])
def test_nonexistent_pem_path(tmp_path: Path, as_path: bool) -> None:
    missing = tmp_path / "no-such-dir" / "apiclient_key.pem"
    with pytest.raises(ConfigError) as caught:
        load_private_key(missing if as_path else str(missing))
    assert str(missing) in str(caught.value)
    assert "no file" in str(caught.value)


def test_directory_is_not_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(tmp_path)
    assert "private_key" in str(caught.value)


@pytest.mark.parametrize(
    ("encoding", "fmt"),
    [(PEM, PKCS8), (PEM, PKCS1), (DER, PKCS8), (DER, PKCS1)],
    ids=["PEM PKCS#8", "PEM SEC1", "DER PKCS#8", "DER SEC1"],
)
def test_ec_private_key_bytes_rejected(
    ec_key: ec.EllipticCurvePrivateKey,
    encoding: serialization.Encoding,
    fmt: serialization.PrivateFormat,
) -> None:
    data = ec_key.private_bytes(encoding, fmt, NO_ENCRYPTION)
    with pytest.raises(ConfigError) as caught:
        load_private_key(data)
    assert "expected an RSA private key" in str(caught.value)
    _assert_no_key_material(caught.value, data)


def test_ec_private_key_object_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(ec_key)  # type: ignore[arg-type]
    assert "RSA" in str(caught.value)


@pytest.mark.parametrize("source", [42, None, 3.5, ["a.pem"], bytearray(b"x")])
def test_wrong_type_private_key(source: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(source)  # type: ignore[arg-type]
    assert type(source).__name__ in str(caught.value)
    assert str(caught.value).startswith("private_key: expected a path")


# --------------------------------------------------------------------------- public keys


def _public_sources() -> dict[str, Callable[[], KeySource]]:
    def reference_public() -> rsa.RSAPublicKey:
        return _reference_private_key().public_key()

    return {
        "SPKI PEM path": lambda: PUBLIC_PEM,
        "SPKI PEM path str": lambda: str(PUBLIC_PEM),
        "SPKI PEM str": _public_pem_text,
        "SPKI PEM bytes": PUBLIC_PEM.read_bytes,
        "SPKI DER bytes": lambda: reference_public().public_bytes(DER, SPKI),
        "PKCS#1 PEM bytes": lambda: reference_public().public_bytes(
            PEM, serialization.PublicFormat.PKCS1
        ),
        "object": reference_public,
    }


@pytest.mark.parametrize("kind", list(_public_sources()))
def test_load_public_key_from_every_source(kind: str) -> None:
    key = load_public_key(_public_sources()[kind]())
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.public_numbers() == _expected_public_numbers()


def test_loaded_public_key_object_is_returned_as_is() -> None:
    key = _reference_private_key().public_key()
    assert load_public_key(key) is key


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda: PKCS8_PEM.read_text(encoding="ascii"), id="PKCS#8 PEM str"),
        pytest.param(PKCS1_PEM.read_bytes, id="PKCS#1 PEM bytes"),
        pytest.param(lambda: PKCS8_PEM, id="PKCS#8 path"),
        pytest.param(
            lambda: _reference_private_key().private_bytes(DER, PKCS8, NO_ENCRYPTION),
            id="PKCS#8 DER bytes",
        ),
        pytest.param(_reference_private_key, id="object"),
    ],
)
def test_private_key_where_public_expected(make_source: Callable[[], KeySource]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_public_key(make_source())
    message = str(caught.value)
    assert message.startswith("public key: expected an RSA public key")
    for material in (PKCS8_PEM.read_bytes(), PKCS1_PEM.read_bytes()):
        _assert_no_key_material(caught.value, material)
    _assert_no_key_material(
        caught.value, _reference_private_key().private_bytes(DER, PKCS8, NO_ENCRYPTION)
    )


@pytest.mark.parametrize("form", ["PEM", "DER", "object"])
def test_certificate_where_public_key_expected(certificate: x509.Certificate, form: str) -> None:
    source: KeySource = (
        certificate if form == "object" else certificate.public_bytes(PEM if form == "PEM" else DER)
    )
    with pytest.raises(ConfigError) as caught:
        load_public_key(source)
    assert str(caught.value).startswith("public key: expected an RSA public key")


def test_ec_public_key_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    pem = ec_key.public_key().public_bytes(PEM, SPKI)
    with pytest.raises(ConfigError) as caught:
        load_public_key(pem)
    assert "RSA" in str(caught.value)
    _assert_no_key_material(caught.value, pem)


@pytest.mark.parametrize("source", [b"garbage", "neither PEM nor a file", 7])
def test_garbage_public_key(source: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_public_key(source)  # type: ignore[arg-type]
    assert str(caught.value).startswith("public key: expected")


# --------------------------------------------------------------------------- certificates


def test_generated_certificate_has_the_expected_serial(certificate: x509.Certificate) -> None:
    assert certificate.serial_number == CERT_SERIAL
    assert certificate_serial(certificate) == CERT_SERIAL_HEX


@pytest.mark.parametrize("form", ["PEM str", "PEM bytes", "DER bytes", "PEM file", "DER file"])
def test_load_certificate(
    certificate: x509.Certificate, cert_key: rsa.RSAPrivateKey, form: str, tmp_path: Path
) -> None:
    encoding = DER if "DER" in form else PEM
    data = certificate.public_bytes(encoding)
    source: KeySource
    if form == "PEM str":
        source = data.decode("ascii")
    elif form.endswith("file"):
        source = tmp_path / ("cert.der" if encoding is DER else "cert.pem")
        source.write_bytes(data)
    else:
        source = data
    loaded = load_certificate(source)
    assert loaded == certificate
    assert certificate_serial(loaded) == CERT_SERIAL_HEX
    public = loaded.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == cert_key.public_key().public_numbers()


def test_load_certificate_object_is_returned_as_is(certificate: x509.Certificate) -> None:
    assert load_certificate(certificate) is certificate


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        (CERT_SERIAL, CERT_SERIAL_HEX),
        (0xABCDEF, "ABCDEF"),
        (0x408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB, "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"),
    ],
)
def test_certificate_serial_is_upper_case_hex(
    ec_key: ec.EllipticCurvePrivateKey, serial: int, expected: str
) -> None:
    certificate = _self_signed_certificate(ec_key, serial)
    assert certificate_serial(certificate) == expected


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda: b"garbage", id="garbage"),
        pytest.param(PUBLIC_PEM.read_bytes, id="public key PEM"),
        pytest.param(lambda: PKCS8_PEM, id="private key path"),
        pytest.param(_reference_private_key, id="private key object"),
    ],
)
def test_load_certificate_rejects_non_certificates(make_source: Callable[[], KeySource]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_certificate(make_source())
    assert str(caught.value).startswith("certificate: expected an X.509 certificate")
    _assert_no_key_material(caught.value, PKCS8_PEM.read_bytes())
    _assert_no_key_material(caught.value, PUBLIC_PEM.read_bytes())


# --------------------------------------------------------------------------- verification keys


@pytest.mark.parametrize(
    "form",
    [
        "public key PEM str",
        "public key PEM bytes",
        "public key PEM path",
        "public key DER bytes",
        "public key object",
        "certificate PEM str",
        "certificate PEM bytes",
        "certificate DER bytes",
        "certificate PEM path",
        "certificate DER path",
        "certificate object",
    ],
)
def test_load_verification_key(
    certificate: x509.Certificate, cert_key: rsa.RSAPrivateKey, form: str, tmp_path: Path
) -> None:
    if form.startswith("public key"):
        public = cert_key.public_key()
        encoding = DER if "DER" in form else PEM
        data = public.public_bytes(encoding, SPKI)
    else:
        encoding = DER if "DER" in form else PEM
        data = certificate.public_bytes(encoding)
    source: KeySource
    if form.endswith("object"):
        source = cert_key.public_key() if form.startswith("public key") else certificate
    elif form.endswith("str"):
        source = data.decode("ascii")
    elif form.endswith("path"):
        source = tmp_path / ("key.der" if encoding is DER else "key.pem")
        source.write_bytes(data)
    else:
        source = data
    key = load_verification_key(source)
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.public_numbers() == cert_key.public_key().public_numbers()


def test_load_verification_key_from_the_wechatpay_public_key_file() -> None:
    key = load_verification_key(DATA / "wechatpay_public_key.pem")
    expected = serialization.load_pem_public_key((DATA / "wechatpay_public_key.pem").read_bytes())
    assert isinstance(expected, rsa.RSAPublicKey)
    assert key.public_numbers() == expected.public_numbers()


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(_reference_private_key, id="private key object"),
        pytest.param(PKCS8_PEM.read_bytes, id="private key PEM"),
        pytest.param(lambda: PKCS1_PEM, id="private key path"),
        pytest.param(
            lambda: _reference_private_key().private_bytes(DER, PKCS8, NO_ENCRYPTION),
            id="private key DER",
        ),
        pytest.param(lambda: b"garbage", id="garbage"),
    ],
)
def test_load_verification_key_rejects(make_source: Callable[[], KeySource]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_verification_key(make_source())
    assert str(caught.value).startswith("public_keys: expected a WeChat Pay public key")
    _assert_no_key_material(caught.value, PKCS8_PEM.read_bytes())
    _assert_no_key_material(caught.value, PKCS1_PEM.read_bytes())


@pytest.mark.parametrize("form", ["object", "PEM", "DER"])
def test_load_verification_key_rejects_an_ec_certificate(
    ec_key: ec.EllipticCurvePrivateKey, form: str
) -> None:
    certificate = _self_signed_certificate(ec_key, CERT_SERIAL)
    source: KeySource = (
        certificate if form == "object" else certificate.public_bytes(PEM if form == "PEM" else DER)
    )
    with pytest.raises(ConfigError) as caught:
        load_verification_key(source)
    assert "expected an RSA certificate" in str(caught.value)
