"""The merchant client certificate: PEM or PKCS#12 in, a TLS context of the client's own out,
checked over a real TLS handshake with a throwaway CA."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path

import pytest

from wechatpay_chain._client_cert import ClientCertSource, client_ssl_context, load_client_cert
from wechatpay_chain.errors import ConfigError
from wechatpay_chain.keys import KeySource
from wechatpay_chain.testing.tls import IssuedCertificate, TestCA

MCHID = "1900000109"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def merchant(ca: TestCA) -> IssuedCertificate:
    return ca.client(MCHID)


def test_pem_certificate_with_its_key_in_every_form(
    merchant: IssuedCertificate, tmp_path: Path
) -> None:
    cert_path = tmp_path / "apiclient_cert.pem"
    key_path = tmp_path / "apiclient_key.pem"
    cert_path.write_bytes(merchant.cert_pem)
    key_path.write_bytes(merchant.key_pem)
    sources: list[tuple[ClientCertSource, KeySource | None]] = [
        (cert_path, key_path),
        (str(cert_path), str(key_path)),
        (merchant.cert_pem.decode(), merchant.key_pem),
        (merchant.cert_pem, merchant.private_key),
        (merchant.cert_pem + merchant.key_pem, None),  # one PEM holding both
    ]
    for source, key in sources:
        loaded = load_client_cert(source, mchid=MCHID, private_key=key)
        assert loaded.serial == merchant.serial
        assert loaded.certificate == merchant.certificate
        assert "PRIVATE" not in repr(loaded)


def test_pkcs12_opens_with_the_merchant_id_by_default(
    merchant: IssuedCertificate, tmp_path: Path
) -> None:
    loaded = load_client_cert(merchant.pkcs12(MCHID), mchid=MCHID)
    assert (loaded.serial, loaded.certificate) == (merchant.serial, merchant.certificate)
    path = tmp_path / "apiclient_cert.p12"
    path.write_bytes(merchant.pkcs12("another secret"))
    assert load_client_cert(path, mchid=MCHID, password="another secret").serial == merchant.serial


def test_a_wrong_pkcs12_password_says_so_without_echoing_it(merchant: IssuedCertificate) -> None:
    with pytest.raises(ConfigError, match="wrong password") as raised:
        load_client_cert(merchant.pkcs12("right-password"), mchid=MCHID, password="wr0ng-pa55")
    assert "wr0ng-pa55" not in str(raised.value)
    assert "right-password" not in str(raised.value)
    with pytest.raises(ConfigError, match="merchant id"):
        load_client_cert(merchant.pkcs12("right-password"), mchid=MCHID)


def test_bad_inputs_are_config_errors(ca: TestCA, merchant: IssuedCertificate) -> None:
    other = ca.client(MCHID)
    with pytest.raises(ConfigError, match="not the certificate's key"):
        load_client_cert(merchant.cert_pem, mchid=MCHID, private_key=other.private_key)
    with pytest.raises(ConfigError, match="private_key"):
        load_client_cert(merchant.cert_pem, mchid=MCHID)
    with pytest.raises(ConfigError):
        load_client_cert("/nonexistent/apiclient_cert.p12", mchid=MCHID)
    with pytest.raises(ConfigError):
        load_client_cert(b"neither PEM nor PKCS#12", mchid=MCHID)


async def _serve(ca: TestCA, tmp_path: Path) -> tuple[asyncio.Server, int, list[str]]:
    server_cert = ca.server("127.0.0.1")
    chain = tmp_path / "server.pem"  # the test's own server: plain files are fine here
    chain.write_bytes(server_cert.cert_pem + server_cert.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item[0] for item in peer.get("subject", ()))
        seen.append(subject.get("commonName", ""))
        writer.write(seen[-1].encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1], seen


async def _hello(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"), 10
    )
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_the_context_presents_the_certificate_in_a_real_handshake(
    ca: TestCA, merchant: IssuedCertificate, tmp_path: Path
) -> None:
    trust = ssl.create_default_context(cadata=ca.cert_pem.decode())
    stats = trust.cert_store_stats()
    second = ca.client("1900000110")
    first_context = client_ssl_context(load_client_cert(merchant.pkcs12(MCHID), mchid=MCHID), trust)
    second_context = client_ssl_context(
        load_client_cert(second.cert_pem, mchid="1900000110", private_key=second.key_pem), trust
    )
    server, port, seen = await _serve(ca, tmp_path)
    async with server:
        assert await _hello(port, first_context) == MCHID.encode() + b"\n"
        assert await _hello(port, second_context) == b"1900000110\n"
        # The user's own context is untouched: it presents no certificate, so the server
        # refuses it (during the handshake in TLS 1.2, right after it in TLS 1.3).
        try:
            answer = await _hello(port, trust)
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
    assert seen[:2] == [MCHID, "1900000110"]
    assert trust.cert_store_stats() == stats


async def test_the_default_trust_store_does_not_trust_a_test_ca(
    ca: TestCA, merchant: IssuedCertificate, tmp_path: Path
) -> None:
    context = client_ssl_context(load_client_cert(merchant.pkcs12(MCHID), mchid=MCHID))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    server, port, _ = await _serve(ca, tmp_path)
    async with server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _hello(port, context)


def test_no_key_material_is_left_on_disk(
    merchant: IssuedCertificate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    client_ssl_context(load_client_cert(merchant.cert_pem + merchant.key_pem, mchid=MCHID))
    assert list(scratch.iterdir()) == []


def test_a_context_that_does_not_verify_is_refused(merchant: IssuedCertificate) -> None:
    loaded = load_client_cert(merchant.pkcs12(MCHID), mchid=MCHID)
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigError, match="does not verify"):
        client_ssl_context(loaded, lax)
    empty = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ConfigError, match="no CA certificate"):
        client_ssl_context(loaded, empty)
