"""Platform certificates: bootstrap, rotation, single-flight refresh, refusals, the
public-key-only merchant, persistence, background refresh and the command line."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import DecryptionError, UnknownSerialError, VerificationError
from wechatpay_chain.certificates import CertificateError, DirectoryCertificateCache
from wechatpay_chain.testing import FakeWeChatPay, Fault, generate_private_key

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
    [saved] = list((tmp_path / "certs").glob("wechatpay_*.pem"))
    assert saved.name == f"wechatpay_{certificate_server.keys.certificates[0].serial}.pem"
    async with certificate_server.client(certificate_cache=cache) as second:
        await second.v3.pay.transactions.native.post(json=order(certificate_server, "c-2"))
    assert downloads(certificate_server) == 1  # the second process read the first one's file


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


async def test_cli_downloads_verified_certificates(
    certificate_server: FakeWeChatPay, tmp_path: Path
) -> None:
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_bytes(certificate_server.merchant.private_key_pem or b"")
    output = tmp_path / "out"
    command = [
        sys.executable, "-m", "wechatpay_chain", "certificates", "download",
        "--mchid", certificate_server.merchant.mchid, "--serial", certificate_server.merchant.serial,
        "--private-key", str(key_file), "--apiv3-key-env", "TEST_APIV3_KEY",
        "--output", str(output), "--base-url", certificate_server.url,
    ]  # fmt: skip

    async def run(apiv3_key: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, "TEST_APIV3_KEY": apiv3_key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode is not None
        return process.returncode, out.decode()

    status, printed = await run(certificate_server.apiv3_key)
    serial = certificate_server.keys.certificates[0].serial
    assert status == 0, printed
    assert serial in printed
    assert "valid" in printed
    assert (
        output / f"wechatpay_{serial}.pem"
    ).read_bytes() == certificate_server.keys.certificates[0].pem
    assert certificate_server.apiv3_key not in " ".join(command)  # never on argv

    status, printed = await run("Y" * 32)
    assert status == 1
    assert "APIv3 key" in printed


async def test_cli_explains_the_public_key_merchant_and_a_wrong_key(
    wechatpay_server: FakeWeChatPay, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(wechatpay_server.merchant.private_key_pem or b"")
    wrong_key = tmp_path / "wrong.pem"
    wrong_key.write_bytes(
        generate_private_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    async def run(key: Path) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wechatpay_chain", "certificates", "download",
            "--mchid", wechatpay_server.merchant.mchid, "--serial", wechatpay_server.merchant.serial,
            "--private-key", str(key), "--apiv3-key-env", "TEST_APIV3_KEY",
            "--output", str(tmp_path / "out"), "--base-url", wechatpay_server.url,
            env={**os.environ, "TEST_APIV3_KEY": wechatpay_server.apiv3_key},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode is not None
        return process.returncode, out.decode()

    status, printed = await run(key_file)
    assert (status, "404 RESOURCE_NOT_EXISTS" in printed) == (1, True), printed
    status, printed = await run(wrong_key)
    assert status == 1
    assert "refused the signature" in printed
