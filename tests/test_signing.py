"""Signing requests (wechatpay_chain.signing): PROTOCOL.md section 1."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain.errors import ConfigError
from wechatpay_chain.keys import KeySource
from wechatpay_chain.signing import Signer, new_nonce, request_message
from wechatpay_chain.testing import FakeWeChatPay

DATA = Path(__file__).parent / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
MERCHANT: dict[str, str] = VECTORS["merchant"]
VECTOR: dict[str, Any] = VECTORS["request_signature"]

MCHID = MERCHANT["mchid"]
SERIAL = MERCHANT["serial"]
TIMESTAMP = int(VECTOR["timestamp"])
NONCE: str = VECTOR["nonce"]
SCHEME = "WECHATPAY2-SHA256-RSA2048"
PARAMETER_ORDER = ["mchid", "nonce_str", "timestamp", "serial_no", "signature"]
NONCE_PATTERN = re.compile(r"[0-9A-Za-z]{32}")

KEY_FILES = [DATA / MERCHANT["private_key_pkcs1"], DATA / MERCHANT["private_key_pkcs8"]]


@functools.cache
def _merchant_public_key() -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key((DATA / MERCHANT["public_key"]).read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@functools.cache
def _merchant_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (DATA / MERCHANT["private_key_pkcs8"]).read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _expected_signature(message: bytes) -> str:
    """Sign ``message`` independently of the library (RSASSA-PKCS1-v1_5 is deterministic)."""
    raw = _merchant_private_key().sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def _parse(header: str) -> dict[str, str]:
    """Split an Authorization value into its parameters, checking the exact syntax on the way."""
    scheme, _, parameters = header.partition(" ")
    assert scheme == SCHEME
    assert " " not in parameters
    parsed: dict[str, str] = {}
    for item in parameters.split(","):
        match = re.fullmatch(r'([a-z_]+)="([^"]*)"', item)
        assert match is not None, item
        assert match.group(1) not in parsed
        parsed[match.group(1)] = match.group(2)
    assert list(parsed) == PARAMETER_ORDER
    return parsed


def _verify_with_merchant_public_key(signature: str, message: bytes) -> None:
    _merchant_public_key().verify(
        base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
    )


def _vector_signer(key_file: Path) -> Signer:
    return Signer(MCHID, SERIAL, key_file, clock=lambda: TIMESTAMP, nonce=lambda: NONCE)


# --------------------------------------------------------------------------- the official vector


@pytest.mark.parametrize("key_file", KEY_FILES, ids=["PKCS#1", "PKCS#8"])
def test_official_vector_authorization_header(key_file: Path) -> None:
    signer = _vector_signer(key_file)
    header = signer.authorization(VECTOR["method"], VECTOR["target"], VECTOR["body"].encode())
    expected = (
        f'{SCHEME} mchid="{MCHID}",nonce_str="{NONCE}",timestamp="{VECTOR["timestamp"]}",'
        f'serial_no="{SERIAL}",signature="{VECTOR["signature"]}"'
    )
    assert header == expected


@pytest.mark.parametrize("key_file", KEY_FILES, ids=["PKCS#1", "PKCS#8"])
def test_official_vector_parameters(key_file: Path) -> None:
    signer = _vector_signer(key_file)
    header = signer.authorization(VECTOR["method"], VECTOR["target"], VECTOR["body"].encode())
    parameters = _parse(header)
    signature = parameters.pop("signature")
    assert parameters == VECTOR["authorization_parameters"]
    assert signature == VECTOR["signature"]


def test_official_vector_signature_verifies_with_the_merchant_public_key() -> None:
    _verify_with_merchant_public_key(VECTOR["signature"], VECTOR["message"].encode("utf-8"))


def test_official_vector_request_message() -> None:
    message = request_message(
        VECTOR["method"], VECTOR["target"], TIMESTAMP, NONCE, VECTOR["body"].encode("utf-8")
    )
    assert message == VECTOR["message"].encode("utf-8")


def test_request_message_upper_cases_the_method() -> None:
    assert request_message("post", "/v3/x", 1, "n", b"{}") == b"POST\n/v3/x\n1\nn\n{}\n"


def test_sign_arbitrary_message() -> None:
    signer = _vector_signer(KEY_FILES[1])
    assert signer.sign(VECTOR["message"].encode("utf-8")) == VECTOR["signature"]


# --------------------------------------------------------------------------- the message's body


@pytest.mark.parametrize("method", ["GET", "get", "DELETE"])
def test_request_without_body_signs_an_empty_last_line(method: str) -> None:
    signer = _vector_signer(KEY_FILES[1])
    target = "/v3/certificates?algorithm_type=RSA"
    signature = _parse(signer.authorization(method, target))["signature"]
    message = f"{method.upper()}\n{target}\n{TIMESTAMP}\n{NONCE}\n\n".encode()
    assert message.endswith(f"{NONCE}\n\n".encode())
    _verify_with_merchant_public_key(signature, message)
    assert signature == _expected_signature(message)
    assert request_message(method, target, TIMESTAMP, NONCE, b"") == message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"description":"Image形象店-深圳腾大"}'.encode(), id="non-ASCII UTF-8"),
        pytest.param(b'{"a":1}\n', id="trailing newline"),
        pytest.param(b'{"a":1}\r\n', id="trailing CRLF"),
        pytest.param(b'{ "a" : 1 ,\n  "b": [ ] }', id="whitespace kept"),
        pytest.param(b"\n", id="only a newline"),
    ],
)
def test_body_bytes_are_signed_untouched(body: bytes) -> None:
    signer = _vector_signer(KEY_FILES[1])
    target = "/v3/pay/transactions/jsapi"
    signature = _parse(signer.authorization("POST", target, body))["signature"]
    message = f"POST\n{target}\n{TIMESTAMP}\n{NONCE}\n".encode() + body + b"\n"
    _verify_with_merchant_public_key(signature, message)
    assert signature == _expected_signature(message)
    assert request_message("POST", target, TIMESTAMP, NONCE, body) == message


def test_trailing_newline_in_body_still_gets_a_newline_appended() -> None:
    message = request_message("POST", "/v3/x", TIMESTAMP, NONCE, b"{}\n")
    assert message.endswith(b"{}\n\n")
    assert message.count(b"\n") == 6


def test_target_is_signed_byte_for_byte() -> None:
    signer = _vector_signer(KEY_FILES[1])
    target = "/v3/pay/transactions/out-trade-no/a%20b%2Fc?mchid=1900007291&z=1&a=%E4%B8%AD"
    signature = _parse(signer.authorization("GET", target))["signature"]
    message = f"GET\n{target}\n{TIMESTAMP}\n{NONCE}\n\n".encode()
    assert signature == _expected_signature(message)


# --------------------------------------------------------------------------- nonce and clock


def test_new_nonce_is_32_alphanumerics() -> None:
    nonces = [new_nonce() for _ in range(50)]
    for nonce in nonces:
        assert NONCE_PATTERN.fullmatch(nonce), nonce
    assert len(set(nonces)) == len(nonces)


def test_default_nonce_differs_between_calls() -> None:
    signer = Signer(MCHID, SERIAL, KEY_FILES[1], clock=lambda: TIMESTAMP)
    first = _parse(signer.authorization("GET", "/v3/certificates"))
    second = _parse(signer.authorization("GET", "/v3/certificates"))
    assert first["nonce_str"] != second["nonce_str"]
    assert first["signature"] != second["signature"]
    for parameters in (first, second):
        assert NONCE_PATTERN.fullmatch(parameters["nonce_str"])
        message = f"GET\n/v3/certificates\n{TIMESTAMP}\n{parameters['nonce_str']}\n\n".encode()
        _verify_with_merchant_public_key(parameters["signature"], message)


def test_default_clock_is_unix_seconds() -> None:
    signer = Signer(MCHID, SERIAL, KEY_FILES[1])
    before = int(time.time())
    timestamp = _parse(signer.authorization("GET", "/v3/certificates"))["timestamp"]
    after = int(time.time())
    assert re.fullmatch(r"[0-9]{10}", timestamp)
    assert before <= int(timestamp) <= after


@pytest.mark.parametrize("clock_value", [1554208460.9, 1554208460.0, 1554208460.499999])
def test_float_clock_is_truncated_to_whole_seconds(clock_value: float) -> None:
    signer = Signer(MCHID, SERIAL, KEY_FILES[1], clock=lambda: clock_value, nonce=lambda: NONCE)
    parameters = _parse(signer.authorization("GET", "/v3/certificates"))
    assert parameters["timestamp"] == "1554208460"
    message = f"GET\n/v3/certificates\n1554208460\n{NONCE}\n\n".encode()
    assert parameters["signature"] == _expected_signature(message)


# --------------------------------------------------------------------------- secrets


def _pem_body_lines(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text(encoding="ascii").splitlines()
        if line and not line.startswith("-----")
    ]


@pytest.mark.parametrize(
    "source_kind", ["PKCS#8 path", "PKCS#1 path", "PEM str", "PEM bytes", "object"]
)
def test_repr_does_not_show_the_private_key(source_kind: str) -> None:
    pkcs8 = DATA / MERCHANT["private_key_pkcs8"]
    sources: dict[str, KeySource] = {
        "PKCS#8 path": pkcs8,
        "PKCS#1 path": DATA / MERCHANT["private_key_pkcs1"],
        "PEM str": pkcs8.read_text(encoding="ascii"),
        "PEM bytes": pkcs8.read_bytes(),
        "object": _merchant_private_key(),
    }
    signer = Signer(MCHID, SERIAL, sources[source_kind])
    text = repr(signer) + str(signer)
    assert MCHID in text
    assert SERIAL in text
    assert "PRIVATE" not in text
    assert "BEGIN" not in text
    assert "RSAPrivateKey" not in text
    assert "private_key" not in text
    for path in (pkcs8, DATA / MERCHANT["private_key_pkcs1"]):
        for line in _pem_body_lines(path):
            assert line not in text
    numbers = _merchant_private_key().private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        assert str(secret)[:20] not in text
        assert format(secret, "x")[:20] not in text
        assert format(secret, "X")[:20] not in text


def test_signer_holds_a_loaded_key() -> None:
    signer = Signer(MCHID, SERIAL, str(KEY_FILES[0]))
    assert isinstance(signer.private_key, rsa.RSAPrivateKey)
    expected = _merchant_public_key().public_numbers()
    assert signer.private_key.public_key().public_numbers() == expected


class OpenSSLSigner:
    """A merchant key kept outside this process: each signature is made by an ``openssl``
    process that reads the key from its own file, as an HSM or a cloud KMS would keep it."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self.calls = 0

    def sign(self, message: bytes) -> bytes:
        self.calls += 1
        done = subprocess.run(  # noqa: S603 - fixed program and arguments
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_file)],  # noqa: S607
            input=message,
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout


@pytest.fixture
def key_elsewhere(
    tmp_path: Path, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> OpenSSLSigner:
    key_file = tmp_path / "hsm" / "merchant.pem"
    key_file.parent.mkdir()
    key_file.write_bytes(
        wechatpay_keys[0].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return OpenSSLSigner(key_file)


async def test_a_signer_object_signs_requests_with_a_key_kept_elsewhere(
    wechatpay_server: FakeWeChatPay, key_elsewhere: OpenSSLSigner
) -> None:
    async with wechatpay_server.client(private_key=key_elsewhere) as wxpay:
        for concurrent in (1, 3):  # alone, and with others in flight
            answers = await asyncio.gather(
                *(
                    wxpay.v3.pay.transactions.outTradeNo["no-such-order"].get(
                        params={"mchid": wechatpay_server.merchant.mchid}
                    )
                    for _ in range(concurrent)
                ),
                return_exceptions=True,
            )
            # Authenticated (a bad signature would be a 401), then not found.
            assert [getattr(answer, "status", answer) for answer in answers] == [404] * concurrent
        # Client-side pay parameters are signed by it too, and WeChat Pay's rules accept them.
        params = wxpay.payments.jsapi("wxd678efh567hg6787", "wx201410272009395522657a690389285100")
        message = "".join(
            f"{params[name]}\n" for name in ("appId", "timeStamp", "nonceStr", "package")
        ).encode()
        wechatpay_server.merchant.public_key.verify(
            base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256()
        )
        with pytest.raises(ConfigError, match="external signer"):
            wxpay.decrypt("c2VjcmV0")
    assert key_elsewhere.calls == 5
    assert len(wechatpay_server.requests) == 4  # each authenticated by the fake


def test_a_signer_that_returns_no_bytes_is_refused_before_sending(
    key_elsewhere: OpenSSLSigner,
) -> None:
    class Broken:
        def sign(self, message: bytes) -> str:
            return "not bytes"

    signer = Signer("1900000109", "ABC", Broken())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="external signer"):
        signer.authorization("GET", "/v3/certificates")
    assert "Broken" not in repr(signer)
