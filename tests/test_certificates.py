"""Platform certificates: bootstrap, rotation, single-flight refresh, refusals, the
public-key-only merchant, persistence and background refresh (the command line: test_cli.py)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import DecryptionError, UnknownSerialError, VerificationError
from wechatpay_chain.certificates import CertificateError, DirectoryCertificateCache
from wechatpay_chain.crypto import aes_gcm_encrypt
from wechatpay_chain.keys import certificate_serial
from wechatpay_chain.testing import FakeWeChatPay, Fault, generate_private_key
from wechatpay_chain.testing.platform import make_certificate

if TYPE_CHECKING:
    # Names for type checkers only: the generated stubs (docs/chain.md, "Types").
    from wechatpay_chain.endpoints.schemas import V3PayTransactionsNativePostBody

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]


@pytest_asyncio.fixture
async def certificate_server(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    """A fake WeChat Pay for a merchant that verifies with platform certificates only."""
    async with FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0],
        wechatpay_private_key=wechatpay_keys[1],
        mode="certificates",
    ) as server:
        yield server


def order(server: FakeWeChatPay, number: str) -> V3PayTransactionsNativePostBody:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": server.merchant.mchid,
        "description": "证书",
        "out_trade_no": number,
        "notify_url": "https://merchant.example/notify",
        "amount": {"total": 1},
    }


def downloads(server: FakeWeChatPay) -> int:
    return sum(1 for request in server.requests if request.path == "/v3/certificates")


async def test_bootstrap_downloads_once_and_verifies_with_what_it_decrypted(
    certificate_server: FakeWeChatPay,
) -> None:
    async with certificate_server.client() as wxpay:
        assert list(wxpay.public_keys) == []  # nothing configured: the first answer teaches
        first = await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "b-1"))
        second = await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "b-2"))
        assert wxpay.certificates is not None
        assert wxpay.certificates.mode == "certificates"
    [platform] = certificate_server.keys.certificates
    assert first.headers["Wechatpay-Serial"] == platform.serial
    assert list(wxpay.public_keys) == [platform.serial]
    assert downloads(certificate_server) == 1
    # once known, the client names the certificate, so WeChat Pay signs with it
    assert certificate_server.requests[-1].headers["Wechatpay-Serial"] == platform.serial
    assert second.status == 200


async def test_rotation_amid_100_concurrent_requests_none_fail_one_download(
    certificate_server: FakeWeChatPay,
) -> None:
    async with certificate_server.client() as wxpay:
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "warm"))
        assert wxpay.certificates is not None
        wxpay.certificates.min_interval = (
            0  # a rotation comes months, not a minute, after a bootstrap
        )
        old = next(iter(wxpay.public_keys))
        new = certificate_server.rotate_certificate()
        # Half the answers come signed with the new certificate (WeChat Pay switching over),
        # half with the old one: 50 simultaneous unknown-serial answers.
        calls = [
            wxpay.v3.pay.transactions.native.post(
                json=order(certificate_server, f"r-{number}"),
                headers={"Wechatpay-Serial": new} if number % 2 else None,
            )
            for number in range(100)
        ]
        responses = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
    assert [response.status for response in responses] == [200] * 100
    assert {response.headers["Wechatpay-Serial"] for response in responses} == {old, new}
    assert downloads(certificate_server) == 2  # the bootstrap, and exactly one for the rotation
    assert set(wxpay.public_keys) == {old, new}  # the old one is kept until it expires
    assert wxpay.public_keys.preferred_serial == new  # the newest certificate


async def test_a_rotated_notification_is_learned_then_verified(
    certificate_server: FakeWeChatPay,
) -> None:
    async with certificate_server.client() as wxpay:
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "n-1"))
        assert wxpay.certificates is not None
        wxpay.certificates.min_interval = (
            0  # a rotation comes months, not a minute, after a bootstrap
        )
        new = certificate_server.rotate_certificate()
        headers, body = certificate_server.build_notification(
            event_type="TRANSACTION.SUCCESS", resource={"out_trade_no": "n-1"}
        )
        assert headers["Wechatpay-Serial"] == new
        notification = await wxpay.notifications.parse(headers, body)
    assert notification.resource == {"out_trade_no": "n-1"}
    assert downloads(certificate_server) == 2


async def test_a_tampered_download_is_refused(certificate_server: FakeWeChatPay) -> None:
    certificate_server.inject(Fault.tamper_body(), path="/v3/certificates")
    async with certificate_server.client() as wxpay:
        assert wxpay.certificates is not None
        with pytest.raises(VerificationError):
            await wxpay.certificates.refresh()
        assert list(wxpay.public_keys) == []
        # and an answer it could have taught is refused, not trusted
        certificate_server.inject(Fault.tamper_body(), path="/v3/certificates")
        wxpay.certificates.min_interval = 0
        with pytest.raises(UnknownSerialError):
            await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "t-1"))
    assert list(wxpay.public_keys) == []


async def test_a_wrong_apiv3_key_is_a_decryption_error(certificate_server: FakeWeChatPay) -> None:
    async with certificate_server.client(apiv3_key="X" * 32) as wxpay:
        assert wxpay.certificates is not None
        with pytest.raises(DecryptionError, match="wrong APIv3 key"):
            await wxpay.certificates.refresh()
        assert list(wxpay.public_keys) == []


async def test_a_certificate_outside_its_validity_is_refused(
    certificate_server: FakeWeChatPay,
) -> None:
    now = datetime.datetime.fromtimestamp(certificate_server.clock(), datetime.timezone.utc)
    future = certificate_server.keys.add_certificate(
        not_before=now + datetime.timedelta(days=1), not_after=now + datetime.timedelta(days=400)
    )
    async with certificate_server.client() as wxpay:
        assert wxpay.certificates is not None
        await wxpay.certificates.refresh()
        assert future.serial not in wxpay.public_keys  # not valid yet: not trusted
        assert len(wxpay.public_keys) == 1
    # a server holding only invalid certificates teaches nothing
    only_future = certificate_server.keys
    only_future.certificates[:] = [future]
    async with certificate_server.client() as wxpay:
        assert wxpay.certificates is not None
        with pytest.raises(CertificateError, match="valid"):
            await wxpay.certificates.refresh()


async def test_public_key_only_merchant_asks_once(
    wechatpay_server: FakeWeChatPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wechatpay_chain")
    async with wechatpay_server.client() as wxpay:
        assert wxpay.certificates is not None
        await wxpay.v3.pay.transactions.native.post(json=order(wechatpay_server, "p-1"))
        assert downloads(wechatpay_server) == 0  # nothing unknown: nothing to ask
        for _ in range(2):
            wechatpay_server.inject(Fault.wrong_serial())
            with pytest.raises(UnknownSerialError):
                await wxpay.v3.pay.transactions.native.post(json=order(wechatpay_server, "p-2"))
        assert wxpay.certificates.mode == "public_key_only"
    assert downloads(wechatpay_server) == 1
    assert sum("no platform certificates" in record.getMessage() for record in caplog.records) == 1


async def test_migration_both_modes_at_once(wechatpay_keys: Keys) -> None:
    async with (
        FakeWeChatPay(
            merchant_private_key=wechatpay_keys[0],
            wechatpay_private_key=wechatpay_keys[1],
            mode="both",
        ) as server,
        server.client() as wxpay,
    ):
        response = await wxpay.v3.pay.transactions.native.post(json=order(server, "m-1"))
        assert response.headers["Wechatpay-Serial"] == server.public_key_id  # we name it
        # a notification signed by the platform certificate still verifies (learned)
        headers, body = server.build_notification(event_type="X", resource={})
        headers["Wechatpay-Serial"] = server.keys.certificates[0].serial
        await wxpay.notifications.parse(
            {**headers, **server.keys.signer(headers["Wechatpay-Serial"]).headers(body)}, body
        )
        assert set(wxpay.public_keys) == {
            server.public_key_id,
            server.keys.certificates[0].serial,
        }
        assert wxpay.public_keys.preferred_serial == server.public_key_id


async def test_certificates_off_never_downloads(certificate_server: FakeWeChatPay) -> None:
    async with certificate_server.client(certificates="off") as wxpay:
        assert wxpay.certificates is None
        with pytest.raises(UnknownSerialError):
            await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "o-1"))
    assert downloads(certificate_server) == 0


async def test_a_directory_cache_shares_one_download(
    certificate_server: FakeWeChatPay, tmp_path: Path
) -> None:
    cache = DirectoryCertificateCache(tmp_path / "certs")
    async with certificate_server.client(certificate_cache=cache) as first:
        await first.v3.pay.transactions.native.post(json=order(certificate_server, "c-1"))
    [saved] = list((tmp_path / "certs").iterdir())
    serial = certificate_server.keys.certificates[0].serial
    assert saved.name == f"wechatpay_{serial}.json"
    # kept as WeChat Pay sent it: still encrypted under the APIv3 key, never plain PEM
    entry = json.loads(saved.read_bytes())
    assert entry["serial_no"] == serial
    assert set(entry["encrypt_certificate"]) == {
        "algorithm", "nonce", "associated_data", "ciphertext",
    }  # fmt: skip
    assert b"BEGIN CERTIFICATE" not in saved.read_bytes()
    async with certificate_server.client(certificate_cache=cache) as second:
        assert list(second.public_keys) == [serial]  # loaded, decrypted, before any call
        await second.v3.pay.transactions.native.post(json=order(certificate_server, "c-2"))
    assert downloads(certificate_server) == 1  # the second process read the first one's file


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "wechatpay_chain" and record.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("kind", ["directory", "dangling link"])
async def test_a_bad_cache_entry_is_skipped_with_one_warning(
    certificate_server: FakeWeChatPay,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    bad = directory / "wechatpay_0123ABCD.json"
    if kind == "directory":
        bad.mkdir()
    else:
        bad.symlink_to(tmp_path / "gone")
    caplog.set_level(logging.WARNING, logger="wechatpay_chain")
    cache = DirectoryCertificateCache(directory)
    async with certificate_server.client(certificate_cache=cache) as wxpay:
        for number in range(3):
            response = await wxpay.v3.pay.transactions.native.post(
                json=order(certificate_server, f"bad-{number}")
            )
            assert response.status == 200
    assert downloads(certificate_server) == 1  # downloaded afresh, once
    [warning] = cache_warnings(caplog)
    assert "wechatpay_0123ABCD.json" in warning
    serial = certificate_server.keys.certificates[0].serial
    assert (directory / f"wechatpay_{serial}.json").is_file()  # the good entry was still saved


@pytest.mark.parametrize("blocked", ["directory is a file", "entry is a directory"])
async def test_a_cache_that_cannot_be_written_costs_no_answer(
    certificate_server: FakeWeChatPay,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    blocked: str,
) -> None:
    # Root ignores file modes, so the cache is made unwritable by what stands in its way.
    directory = tmp_path / "certs"
    if blocked == "directory is a file":
        directory.write_bytes(b"")
    else:
        directory.mkdir()
        (directory / f"wechatpay_{certificate_server.keys.certificates[0].serial}.json").mkdir()
    caplog.set_level(logging.WARNING, logger="wechatpay_chain")
    async with certificate_server.client(
        certificate_cache=DirectoryCertificateCache(directory)
    ) as wxpay:
        # The first answer names a serial the client learns now; saving fails meanwhile.
        response = await wxpay.v3.pay.transactions.native.post(
            json=order(certificate_server, "w-1")
        )
        assert response.status == 200
        assert response.json()["code_url"]
    assert any("could not save" in message for message in cache_warnings(caplog))
    if directory.is_dir():  # no temporary file left behind
        assert [path.name for path in directory.iterdir()] == [
            f"wechatpay_{certificate_server.keys.certificates[0].serial}.json"
        ]


def seal(certificate_pem: bytes, serial: str, apiv3_key: bytes) -> bytes:
    """A cache entry as WeChat Pay would have sent it, sealed under ``apiv3_key``."""
    nonce = "0123456789ab"
    item = {
        "serial_no": serial,
        "encrypt_certificate": {
            "algorithm": "AEAD_AES_256_GCM",
            "nonce": nonce,
            "associated_data": "certificate",
            "ciphertext": aes_gcm_encrypt(
                apiv3_key, nonce=nonce, plaintext=certificate_pem, associated_data="certificate"
            ),
        },
    }
    return json.dumps(item).encode()


def intruder_certificate() -> tuple[str, bytes]:
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = make_certificate(
        generate_private_key(), now - datetime.timedelta(days=1), now + datetime.timedelta(days=9)
    )
    return certificate_serial(certificate), certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("entry", ["tampered", "foreign key", "plain PEM", "other resource"])
async def test_a_cached_certificate_is_trusted_only_if_it_authenticates(
    certificate_server: FakeWeChatPay,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    entry: str,
) -> None:
    directory = tmp_path / "certs"
    cache = DirectoryCertificateCache(directory)
    async with certificate_server.client(certificate_cache=cache) as wxpay:
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "f-1"))
    [genuine] = list(directory.iterdir())
    intruder, intruder_pem = intruder_certificate()
    if entry == "tampered":
        item = json.loads(genuine.read_bytes())
        sealed = item["encrypt_certificate"]
        flipped = "A" if sealed["ciphertext"][10] != "A" else "B"
        sealed["ciphertext"] = sealed["ciphertext"][:10] + flipped + sealed["ciphertext"][11:]
        genuine.write_text(json.dumps(item))
        expected = "AES-GCM authentication failed"
    else:
        genuine.unlink()
        if entry == "foreign key":  # well formed, but sealed by someone without the APIv3 key
            content = seal(intruder_pem, intruder, b"F" * 32)
            expected = "AES-GCM authentication failed"
        elif entry == "plain PEM":  # a custom cache still holding what an older version saved
            content = intruder_pem
            expected = "not JSON"
        else:  # sealed under the right key, but as something other than a certificate
            item = json.loads(seal(intruder_pem, intruder, certificate_server.apiv3_key.encode()))
            item["encrypt_certificate"]["associated_data"] = "transaction"
            content = json.dumps(item).encode()
            expected = "not encrypted as a certificate"
        (directory / f"wechatpay_{intruder}.json").write_bytes(content)
    caplog.set_level(logging.WARNING, logger="wechatpay_chain")
    async with certificate_server.client(certificate_cache=cache) as wxpay:
        assert list(wxpay.public_keys) == []  # nothing trusted from the cache
        response = await wxpay.v3.pay.transactions.native.post(
            json=order(certificate_server, "f-2")
        )
        assert response.status == 200
        assert intruder not in wxpay.public_keys
    assert downloads(certificate_server) == 2  # downloaded afresh
    [warning] = cache_warnings(caplog)
    assert expected in warning


async def test_plain_pem_files_of_an_older_version_are_not_trusted(
    certificate_server: FakeWeChatPay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    intruder, intruder_pem = intruder_certificate()
    (directory / f"wechatpay_{intruder}.pem").write_bytes(intruder_pem)
    caplog.set_level(logging.WARNING, logger="wechatpay_chain")
    cache = DirectoryCertificateCache(directory)
    async with certificate_server.client(certificate_cache=cache) as wxpay:
        assert list(wxpay.public_keys) == []
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "o-1"))
        assert intruder not in wxpay.public_keys
    [warning] = cache_warnings(caplog)
    assert "plain-PEM" in warning
    assert f"wechatpay_{intruder}.pem" in warning
    assert downloads(certificate_server) == 1
    serial = certificate_server.keys.certificates[0].serial
    assert (directory / f"wechatpay_{serial}.json").is_file()  # the new format beside it


class BrokenCache:
    """A cache of one's own (a database, say) that is down."""

    def load(self) -> list[bytes]:
        raise ConnectionError("cache server down")

    def save(self, entries: Sequence[bytes]) -> None:
        raise ConnectionError("cache server down")


async def test_a_custom_cache_that_fails_costs_a_download_not_a_call(
    certificate_server: FakeWeChatPay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wechatpay_chain")
    async with certificate_server.client(certificate_cache=BrokenCache()) as wxpay:
        response = await wxpay.v3.pay.transactions.native.post(
            json=order(certificate_server, "x-1")
        )
        assert response.status == 200
    warnings = cache_warnings(caplog)
    assert len(warnings) == 2
    assert "could not read" in warnings[0]
    assert "could not save" in warnings[1]
    assert all("cache server down" in warning for warning in warnings)


async def test_background_refresh_and_clean_stop(certificate_server: FakeWeChatPay) -> None:
    async with certificate_server.client() as wxpay:
        assert wxpay.certificates is not None
        wxpay.certificates.interval = 0.05
        wxpay.certificates.jitter = 0.1
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "g-1"))
        deadline = time.monotonic() + 5
        while downloads(certificate_server) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    count = downloads(certificate_server)
    assert count >= 3
    await asyncio.sleep(0.15)
    assert downloads(certificate_server) == count  # stopped with the client, no task left


async def test_on_demand_downloads_keep_a_minimum_interval(
    certificate_server: FakeWeChatPay,
) -> None:
    async with certificate_server.client() as wxpay:
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "i-1"))
        for _ in range(3):
            certificate_server.inject(Fault.wrong_serial())
            with pytest.raises(UnknownSerialError):
                await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "i-2"))
    assert downloads(certificate_server) == 1  # the bootstrap; the rest came within a minute


async def test_an_unknown_serial_within_the_refresh_limit_says_the_refresh_was_rate_limited(
    certificate_server: FakeWeChatPay,
) -> None:
    async with certificate_server.client() as wxpay:
        assert wxpay.certificates is not None
        await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "r-1"))
        assert downloads(certificate_server) == 1  # learnt at bootstrap
        certificate_server.inject(Fault.wrong_serial())
        with pytest.raises(UnknownSerialError, match="rate-limited to one per 60 s") as raised:
            await wxpay.v3.pay.transactions.native.post(json=order(certificate_server, "r-2"))
        assert raised.value.request_id is not None
    assert downloads(certificate_server) == 1  # no second download
