"""APIv2 notifications: pay and contract results verified by their sign, refund results
decrypted, forgeries refused with the v3 error types, and the XML acknowledgements, served by
a real aiohttp app over loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wechatpay_chain import apiv2
from wechatpay_chain.errors import (
    ConfigError,
    DecryptionError,
    InvalidNotificationError,
    MissingSignError,
    SignatureMismatchError,
    UnsafeXmlError,
    VerificationError,
)
from wechatpay_chain.notifications import Notifications, v2_failure, v2_success
from wechatpay_chain.verifying import Verifier

DATA = Path(__file__).parent / "data"
VECTORS: dict[str, Any] = {
    vector["id"]: vector
    for vector in json.loads((DATA / "v2_vectors.json").read_text("utf-8"))["vectors"]
}
KEY = "192006250b4c09247ec02edce69f6a2d"


def _notifications(apiv2_key: str | None = KEY) -> Notifications:
    return Notifications(Verifier({}), None, apiv2_key=apiv2_key)


@pytest.mark.parametrize("vector_id", ["notify.pay.md5", "notify.pay.hmac"])
def test_a_pay_result_is_verified(vector_id: str) -> None:
    body = VECTORS[vector_id]["input"]["body"].encode()
    fields = _notifications().parse_v2(body)
    assert (fields["out_trade_no"], fields["total_fee"]) == ("1409811653", "1")
    with pytest.raises(SignatureMismatchError):
        _notifications().parse_v2(body.replace(b"<total_fee>1<", b"<total_fee>9<"))
    with pytest.raises(SignatureMismatchError):
        _notifications("another key").parse_v2(body)


def test_a_notification_without_sign_is_refused() -> None:
    fields = {"return_code": "SUCCESS", "out_trade_no": "1", "total_fee": "1"}
    with pytest.raises(MissingSignError) as raised:
        _notifications().parse_v2(apiv2.to_xml(fields))
    assert isinstance(raised.value, VerificationError)


def test_an_hmac_sign_type_with_an_md5_sign_is_refused() -> None:
    fields = {"return_code": "SUCCESS", "out_trade_no": "1", "sign_type": "HMAC-SHA256"}
    body = apiv2.to_xml({**fields, "sign": apiv2.sign(fields, KEY, "MD5")})
    with pytest.raises(SignatureMismatchError):
        _notifications().parse_v2(body)


def test_a_refund_result_is_decrypted_in_place() -> None:
    vector = VECTORS["notify.refund.req_info"]
    fields = _notifications().parse_v2(vector["input"]["body"].encode())
    assert fields["return_code"] == "SUCCESS"
    assert isinstance(fields["req_info"], dict)
    assert fields["req_info"]["refund_status"] == "SUCCESS"
    assert fields["req_info"]["out_refund_no"] == "131811191610442717309"
    with pytest.raises(DecryptionError):
        _notifications("another key").parse_v2(vector["input"]["body"].encode())


def test_a_forged_refund_result_is_refused() -> None:
    forged = apiv2.to_xml(
        {"return_code": "SUCCESS", "req_info": apiv2.encrypt_req_info({"refund_fee": "1"}, "guess")}
    )
    with pytest.raises(DecryptionError):
        _notifications().parse_v2(forged)


def test_hostile_or_broken_bodies() -> None:
    with pytest.raises(UnsafeXmlError):
        _notifications().parse_v2(
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>'
        )
    with pytest.raises(InvalidNotificationError):
        _notifications().parse_v2(b'{"id": "EV-1"}')
    with pytest.raises(TypeError):
        _notifications().parse_v2("<xml/>")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="apiv2_key"):
        _notifications(None).parse_v2(b"<xml/>")


def test_the_acknowledgements() -> None:
    assert v2_success().body == VECTORS["ack.bytes"]["expected"]["success"].encode()
    assert (
        v2_failure("签名失败").body == VECTORS["ack.bytes"]["expected"]["failure_example"].encode()
    )
    assert v2_failure().status == 200
    with pytest.raises(ValueError, match="]]>"):
        v2_failure("a]]>b")
    with pytest.raises(ValueError, match="XML cannot carry"):
        v2_failure("bell\x07")


async def test_a_webhook_app_over_loopback() -> None:
    notifications = _notifications()

    async def notify(request: web.Request) -> web.Response:
        try:
            fields = notifications.parse_v2(await request.read())
        except (VerificationError, DecryptionError, InvalidNotificationError):
            return v2_failure("签名失败").to_aiohttp()
        received.append(fields)
        return v2_success().to_aiohttp()

    received: list[dict[str, Any]] = []
    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    body = VECTORS["notify.pay.md5"]["input"]["body"].encode()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"http://127.0.0.1:{port}/notify", data=body) as answer:
                assert (answer.status, answer.content_type) == (200, "text/xml")
                assert apiv2.parse_xml(await answer.read())["return_code"] == "SUCCESS"
            async with session.post(f"http://127.0.0.1:{port}/notify", data=body + b" ") as answer:
                assert apiv2.parse_xml(await answer.read())["return_code"] == "SUCCESS"
            forged = body.replace(b"<total_fee>1<", b"<total_fee>2<")
            async with session.post(f"http://127.0.0.1:{port}/notify", data=forged) as answer:
                assert apiv2.parse_xml(await answer.read()) == {
                    "return_code": "FAIL",
                    "return_msg": "签名失败",
                }
    finally:
        await runner.cleanup()
    assert len(received) == 2
