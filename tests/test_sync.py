"""``SyncWeChatPay`` end to end against the fake server serving from a thread: the chain,
the verbs, the helpers, many threads at once, close, fork, an interrupted wait, and a
process that exits without closing."""

from __future__ import annotations

import asyncio
import copy
import datetime
import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from wechatpay_chain import ApiError, ConfigError, Response, WeChatPay, WeChatPayError
from wechatpay_chain.sync import SyncNode, SyncWeChatPay
from wechatpay_chain.testing import FakeWeChatPay, Fault

CHINA = datetime.timezone(datetime.timedelta(hours=8))
APPID = "wxd678efh567hg6787"


def native_order(
    fake: FakeWeChatPay, out_trade_no: str, **extra: Any
) -> Any:  # a native order body, sent through several spellings
    return {
        "appid": APPID,
        "mchid": fake.merchant.mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": "https://merchant.example/notify",
        "amount": {"total": 100, "currency": "CNY"},
        **extra,
    }


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wechatpay-chain-sync"]


@pytest.fixture
def fake(wechatpay_thread_server: FakeWeChatPay) -> FakeWeChatPay:
    return wechatpay_thread_server


@pytest.fixture
def wxpay(wechatpay_sync_client: SyncWeChatPay) -> SyncWeChatPay:
    return wechatpay_sync_client


# -- the chain and the verbs ------------------------------------------------------------------


def test_the_three_spellings_reach_the_same_endpoint(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    r = wxpay.v3.pay.transactions.native.post(json=native_order(fake, "S1"))
    assert isinstance(r, Response)
    assert r.status == 200
    assert r.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert r.request_id
    wxpay["v3/pay/transactions/native"].post(json=native_order(fake, "S2"))
    wxpay.chain("v3/pay/transactions/native").post(json=native_order(fake, "S3"))
    assert [request.target for request in fake.requests] == ["/v3/pay/transactions/native"] * 3

    params = {"mchid": fake.merchant.mchid}
    by_attribute = wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="S1", params=params
    )
    by_item = wxpay["v3/pay/transactions/out-trade-no/{out_trade_no}"].get(
        out_trade_no="S2", params=params
    )
    by_value = wxpay.v3.pay.transactions.outTradeNo["S3"].get(params=params)
    assert [r.json()["out_trade_no"] for r in (by_attribute, by_item, by_value)] == [
        "S1",
        "S2",
        "S3",
    ]
    assert (
        fake.requests[-1].target == f"/v3/pay/transactions/out-trade-no/S3?mchid={params['mchid']}"
    )


def test_request_and_the_other_verbs_send_their_method(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    wxpay.v3.pay.transactions.native.post(json=native_order(fake, "M1"))
    closed = wxpay.v3.pay.transactions.outTradeNo["M1"].close.post(
        json={"mchid": fake.merchant.mchid}
    )
    assert closed.status == 204
    assert closed.json() is None
    answer = wxpay.v3.pay.transactions.outTradeNo["M1"].request(
        "GET", params={"mchid": fake.merchant.mchid}
    )
    assert answer.json()["trade_state"] == "CLOSED"
    for verb in ("put", "patch", "delete"):
        with pytest.raises(ApiError) as raised:
            getattr(wxpay.v3.some.resource, verb)(json={"a": 1})
        assert raised.value.status == 404
        assert fake.requests[-1].method == verb.upper()
        assert fake.requests[-1].body == b'{"a":1}'


def test_errors_are_the_async_clients_errors(fake: FakeWeChatPay, wxpay: SyncWeChatPay) -> None:
    with pytest.raises(ApiError) as raised:
        wxpay.v3.pay.transactions.outTradeNo["nope"].get(params={"mchid": fake.merchant.mchid})
    assert raised.value.status == 404
    assert raised.value.code == "ORDER_NOT_EXIST"
    assert raised.value.request_id
    # Checked before anything is sent, in the caller's thread of view as in WeChatPay.
    sent = len(fake.requests)
    with pytest.raises(TypeError, match="out_trade_no"):
        wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get()
    with pytest.raises(TypeError, match="json= or data="):
        wxpay.v3.pay.transactions.native.post(json={}, data=b"")
    assert len(fake.requests) == sent


def test_nodes_are_immutable_and_dunders_are_not_segments(wxpay: SyncWeChatPay) -> None:
    node = wxpay.v3.pay.transactions
    assert isinstance(node, SyncNode)
    assert repr(node) == "<wechatpay_chain.SyncNode 'v3/pay/transactions'>"
    assert repr(wxpay.v3.pay.outTradeNo._id_.global_) == (
        "<wechatpay_chain.SyncNode 'v3/pay/out-trade-no/{id}/global'>"
    )
    assert repr(wxpay["v3/applyment4sub/applyment/"]) == (
        "<wechatpay_chain.SyncNode 'v3/applyment4sub/applyment/'>"
    )
    with pytest.raises(AttributeError):
        node.__deepcopy__  # noqa: B018 - the access is the test
    with pytest.raises(AttributeError):
        node.__wrapped__  # noqa: B018
    with pytest.raises(AttributeError, match="immutable"):
        node.native = node
    with pytest.raises(AttributeError, match="immutable"):
        del node.native
    assert repr(copy.copy(node)) == repr(node)
    assert node.native is node.native  # a child is kept, as in the async chain
    with pytest.raises(AttributeError):
        wxpay._private  # noqa: B018
    with pytest.raises(AttributeError):
        wxpay.__wrapped__  # noqa: B018


def test_the_configuration_is_checked_at_construction(fake: FakeWeChatPay) -> None:
    before = len(sync_threads())
    with pytest.raises(ConfigError, match="mchid"):
        fake.sync_client(mchid="not-digits")
    with pytest.raises(ConfigError, match="session"):
        fake.sync_client(session=object())
    time.sleep(0)
    assert len(sync_threads()) == before  # a refused configuration leaves no thread behind
    with fake.sync_client() as wxpay:
        assert wxpay.mchid == fake.merchant.mchid
        assert wxpay.base_url == fake.url
        assert repr(wxpay) == f"<SyncWeChatPay mchid={fake.merchant.mchid!r} base_url={fake.url!r}>"


# -- threads, close, loops ----------------------------------------------------------------------


def test_many_threads_share_one_loop_thread(fake: FakeWeChatPay, wxpay: SyncWeChatPay) -> None:
    before = len(sync_threads())
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for call in range(5):
                wxpay.v3.pay.transactions.native.post(json=native_order(fake, f"T{worker}-{call}"))
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not failures
    assert not any(worker.is_alive() for worker in workers)
    assert len(fake.requests) == 80
    assert len({request.json()["out_trade_no"] for request in fake.requests}) == 80
    assert len(sync_threads()) == before  # no thread per caller


def test_close_ends_the_loop_thread_and_later_calls_raise(fake: FakeWeChatPay) -> None:
    before = len(sync_threads())
    with fake.sync_client() as wxpay:
        assert len(sync_threads()) == before + 1
        wxpay.v3.pay.transactions.native.post(json=native_order(fake, "C1"))
        node = wxpay.v3.pay.transactions.native
    assert wxpay.closed
    assert len(sync_threads()) == before
    with pytest.raises(WeChatPayError, match="closed"):
        node.post(json=native_order(fake, "C2"))
    with pytest.raises(WeChatPayError, match="closed"):
        wxpay.notifications.parse({}, b"")
    with pytest.raises(WeChatPayError, match="closed"), wxpay:
        pass
    wxpay.close()  # idempotent
    assert len(fake.requests) == 1


def test_a_client_dropped_without_close_stops_its_thread(fake: FakeWeChatPay) -> None:
    before = len(sync_threads())
    wxpay = fake.sync_client()
    wxpay.v3.pay.transactions.native.post(json=native_order(fake, "G1"))
    del wxpay
    gc.collect()  # its root node refers back to it
    deadline = time.monotonic() + 10
    while len(sync_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sync_threads()) == before


async def test_a_thread_running_an_event_loop_is_refused_before_sending(
    wechatpay_keys: Any,
) -> None:
    merchant_key, wechatpay_key = wechatpay_keys
    fake = FakeWeChatPay(merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key)
    # The server serves from its thread; the client is built outside this loop's thread.
    with fake.serve_in_thread():
        wxpay = await asyncio.to_thread(fake.sync_client)
        try:
            with pytest.raises(WeChatPayError, match="use WeChatPay and await"):
                wxpay.v3.pay.transactions.native.post(json=native_order(fake, "L1"))
            with pytest.raises(WeChatPayError, match="use WeChatPay"):
                wxpay.notifications.parse({}, b"")
            assert fake.requests == []
            # The same client works from a worker thread of this loop.
            r = await asyncio.to_thread(
                lambda: wxpay.v3.pay.transactions.native.post(json=native_order(fake, "L2"))
            )
            assert r.status == 200
        finally:
            await asyncio.to_thread(wxpay.close)


class Interrupted(Exception):
    """Raised by a signal handler in the waiting thread, as KeyboardInterrupt would be."""


def test_an_interrupted_wait_cancels_the_call_and_nothing_is_resent(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    fake.inject(Fault.delay(1.0), method="POST", path="/v3/pay/transactions/native")

    def interrupt(_signum: int, _frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        started = time.monotonic()
        with pytest.raises(Interrupted):
            wxpay.v3.pay.transactions.native.post(json=native_order(fake, "I1"))
        assert time.monotonic() - started < 0.9  # the caller did not wait for the answer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(1.5)  # past the delay: a retry, if any, would have reached the server by now
    assert [request.json()["out_trade_no"] for request in fake.requests] == ["I1"]
    # The client goes on working.
    assert wxpay.v3.pay.transactions.native.post(json=native_order(fake, "I2")).status == 200


def test_a_forked_child_gets_a_loop_and_a_client_of_its_own(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    wxpay.v3.pay.transactions.native.post(json=native_order(fake, "F0"))  # parent connected
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns that forking a process with threads may deadlock: the very case
        # this test covers (Celery's prefork pool, gunicorn).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(read_end)
            r = wxpay.v3.pay.transactions.native.post(json=native_order(fake, "F1"))
            threads = len(sync_threads())
            wxpay.close()
            os.write(write_end, json.dumps([r.status, threads, len(sync_threads())]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish within 30 s")
        report = os.read(read_end, 1000)
    finally:
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(report) == [200, 1, 0]  # its own loop thread, ended by close()
    # The parent's client and connections are untouched.
    assert wxpay.v3.pay.transactions.native.post(json=native_order(fake, "F2")).status == 200
    assert [request.json()["out_trade_no"] for request in fake.requests] == ["F0", "F1", "F2"]


def test_a_process_that_never_closes_its_client_exits_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from wechatpay_chain.testing import FakeWeChatPay

            fake = FakeWeChatPay()
            with fake.serve_in_thread():
                wxpay = fake.sync_client()
                r = wxpay.v3.pay.transactions.native.post(json={
                    "appid": "wx1", "mchid": fake.merchant.mchid, "description": "d",
                    "out_trade_no": "E1", "notify_url": "https://x.example/n",
                    "amount": {"total": 1},
                })
                print(r.status)
            # wxpay is never closed, and still referenced at exit
            """
        )
    )
    started = time.monotonic()
    completed = subprocess.run(  # noqa: S603 - this interpreter, a script of the test's
        [sys.executable, "-W", "error", "-X", "dev", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "200"
    assert completed.stderr == ""  # no unclosed session, no warning, no traceback
    assert time.monotonic() - started < 20


# -- the helpers ---------------------------------------------------------------------------------


def test_notifications_parse_verifies_and_decrypts(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    headers, body = fake.build_notification(
        event_type="TRANSACTION.SUCCESS", resource={"out_trade_no": "N1"}
    )
    notification = wxpay.notifications.parse(headers, body)
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.resource == {"out_trade_no": "N1"}
    with pytest.raises(WeChatPayError):
        wxpay.notifications.parse(headers, body.replace(b"TRANSACTION", b"TRANSACTIOM"))


def test_payments_encrypt_decrypt_and_public_keys(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    params = wxpay.payments.jsapi(APPID, "wx201410272009395522657a690389285100")
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert fake.public_key_id in wxpay.public_keys
    assert wxpay.certificates is not None  # the fake's client has the APIv3 key
    r = wxpay.v3.security.echo.post(
        json={"echo_message": "hi", "encrypted_echo_message": wxpay.encrypt("张三")}
    )
    assert wxpay.decrypt(r.json()["encrypted_echo_message"]) == "张三"


def test_certificates_refresh_on_the_loop(wechatpay_keys: Any) -> None:
    merchant_key, wechatpay_key = wechatpay_keys
    fake = FakeWeChatPay(
        merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key, mode="certificates"
    )
    with fake.serve_in_thread(), fake.sync_client() as wxpay:
        certificates = wxpay.certificates
        assert certificates is not None
        certificates.refresh()
        assert certificates.mode == "certificates"
        assert certificates.downloads == 1
        assert len(wxpay.public_keys) == 1
        assert wxpay.v3.pay.transactions.native.post(json=native_order(fake, "K1")).status == 200
    with fake.serve_in_thread(), fake.sync_client(certificates="off") as wxpay:
        assert wxpay.certificates is None


def bill_day() -> str:
    return (datetime.datetime.now(CHINA).date() - datetime.timedelta(days=2)).isoformat()


def test_a_download_streams_reads_and_saves(
    tmp_path: Path, fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    data = b"\xff\xd8\xff\xe0" + hashlib.sha256(b"x").digest() * 4000
    media_id = (
        wxpay.chain("v3/merchant-service/images/upload")
        .post(file=data, filename="evidence.jpg")
        .json()["media_id"]
    )
    target = f"/v3/merchant-service/images/{media_id}"
    with wxpay.download(target) as stream:
        assert stream.status == 200
        assert stream.content_length == len(data)
        assert b"".join(stream) == data
        assert stream.bytes_received == len(data)
    with wxpay.download(target) as stream:
        assert stream.read() == data
    with wxpay.download(target) as stream:
        assert stream.save(tmp_path / "image.jpg") == tmp_path / "image.jpg"
    assert (tmp_path / "image.jpg").read_bytes() == data
    # Stopped early: the rest is dropped and the connection closed on the loop.
    stream = wxpay.download(target)
    for _chunk in stream:
        break
    stream.close()
    assert wxpay.v3.pay.transactions.native.post(json=native_order(fake, "D1")).status == 200


def test_bills_stream_verified_rows_and_files(
    tmp_path: Path, fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    day = bill_day()
    fake.bills.rows = 300
    expected = fake.bills.content("trade", day).content()
    with wxpay.bills.trade(day) as bill:
        assert b"".join(bill) == expected
        assert (
            bill.sha1
            == bill.hash_value
            == hashlib.sha1(expected, usedforsecurity=False).hexdigest()
        )
        assert bill.size == len(expected)
        assert bill.download.status == 200
    with wxpay.bills.trade(day, "ALL", "GZIP") as bill:
        rows = list(bill.rows())
        assert bill.gzip
    assert len(rows) == 300
    assert bill.summary is not None
    assert bill.summary["总交易单数"] == "300"
    with wxpay.bills.fundflow(day) as bill:
        path = bill.save(tmp_path / "fundflow.csv")
    assert path.read_bytes() == fake.bills.content("fundflow", day, "BASIC").content()
    answer = wxpay.v3.bill.tradebill.get(params={"bill_date": day}).json()
    with wxpay.bills.download(answer) as bill:
        assert bill.read() == expected


# -- the fake server in a thread ---------------------------------------------------------------


def test_the_threaded_fake_serves_async_clients_of_any_loop(fake: FakeWeChatPay) -> None:
    async def order(out_trade_no: str) -> int:
        async with fake.client() as wxpay:
            r = await wxpay.v3.pay.transactions.native.post(json=native_order(fake, out_trade_no))
            return r.status

    # Two loops, one after the other: fake.client() is a new client each time.
    assert asyncio.run(order("A1")) == 200
    assert asyncio.run(order("A2")) == 200
    assert isinstance(fake.client(), WeChatPay)
    assert [request.json()["out_trade_no"] for request in fake.requests] == ["A1", "A2"]


def test_the_threaded_fakes_helpers_work_from_the_tests_thread(
    fake: FakeWeChatPay, wxpay: SyncWeChatPay
) -> None:
    fake.notification_time_scale = 0.00001
    notify_url = "http://127.0.0.1:9/notify"  # nothing listens: every attempt fails, quickly
    wxpay.v3.pay.transactions.native.post(json=native_order(fake, "H1", notify_url=notify_url))
    transaction = fake.pay("H1")
    assert transaction["trade_state"] == "SUCCESS"
    assert fake.deliveries[-1].event_type == "TRANSACTION.SUCCESS"
    queried = wxpay.v3.pay.transactions.outTradeNo["H1"].get(params={"mchid": fake.merchant.mchid})
    assert queried.json()["transaction_id"] == transaction["transaction_id"]

    fake.inject(Fault.error(503, "SYSTEM_ERROR"), path="/v3/pay/transactions/native", times=9)
    with pytest.raises(ApiError) as raised:
        wxpay.v3.pay.transactions.native.post(json=native_order(fake, "H2"), retry="never")
    assert raised.value.status == 503

    delivery = fake.run(
        fake.notify(notify_url, event_type="REFUND.SUCCESS", resource={"a": 1}, wait=True)
    )
    assert delivery.finished
    assert not delivery.delivered
    assert len(delivery.attempts) == 16  # the first send and the 15 resends


def test_serve_in_thread_refuses_a_second_start_and_run_outside_it(fake: FakeWeChatPay) -> None:
    with pytest.raises(RuntimeError, match="already serving"), fake.serve_in_thread():
        pass
    idle = FakeWeChatPay()

    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match="serve_in_thread"):
        idle.run(nothing())


def test_the_v2_bill_helpers_are_there_too(fake: FakeWeChatPay, wxpay: SyncWeChatPay) -> None:
    wxpay.v2.pay.unifiedorder.post(
        xml={
            "appid": APPID,
            "body": "b",
            "out_trade_no": "sv2-1",
            "total_fee": 5,
            "spbill_create_ip": "127.0.0.1",
            "notify_url": "https://shop.example/n",
            "trade_type": "NATIVE",
        }
    )
    fake.v2.pay("sv2-1")
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
    with wxpay.bills.trade_v2(APPID, today) as bill:
        rows = list(bill.rows())
    assert [row["商户订单号"] for row in rows] == ["sv2-1"]
