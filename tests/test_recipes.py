"""The recipes of docs/blocking.md, run for real: each is a module under tests/recipes/ that
the page shows verbatim (checked here), served over loopback HTTP where WeChat Pay must
reach it, against the fake server running in a thread of its own."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from wechatpay_chain import SyncWeChatPay
from wechatpay_chain.testing import FakeWeChatPay

RECIPES = Path(__file__).parent / "recipes"
DOCS = Path(__file__).parent.parent / "docs" / "blocking.md"
APPID = "wxd678efh567hg6787"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Served:
    """A WSGI application served on 127.0.0.1 from a thread, where the fake can post."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "not within the time limit"
        time.sleep(0.02)


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*_*.py")))
def test_the_page_shows_each_recipe_as_it_is_run(recipe: str) -> None:
    assert (RECIPES / recipe).read_text(encoding="utf-8").strip() in DOCS.read_text(
        encoding="utf-8"
    )


def test_flask_creates_an_order_and_receives_its_notification(
    wechatpay_thread_server: FakeWeChatPay, wechatpay_sync_client: SyncWeChatPay
) -> None:
    from recipes.flask_app import create_app

    app = create_app(wechatpay_sync_client, APPID, notify_url="set below")
    with Served(app.wsgi_app) as served:
        app = create_app(wechatpay_sync_client, APPID, notify_url=served.url + "/wxpay/notify")
        served.server.set_app(app.wsgi_app)
        answer = app.test_client().post("/orders/F-1?total=100")
        assert answer.json is not None
        assert answer.json["code_url"].startswith("weixin://")
        wechatpay_thread_server.pay("F-1")
        wait_for(lambda: app.config["PAID"] == ["F-1"])
    (delivery,) = wechatpay_thread_server.deliveries
    assert delivery.delivered  # acknowledged by the view


def test_django_creates_an_order_and_receives_its_notification(
    wechatpay_thread_server: FakeWeChatPay, wechatpay_sync_client: SyncWeChatPay
) -> None:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.test import Client
    from recipes import django_app

    if not settings.configured:
        settings.configure(
            ROOT_URLCONF="recipes.django_app",
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="tests only",
            WECHATPAY_APPID=APPID,
            WECHATPAY_NOTIFY_URL="",
        )
        django.setup()
    django_app.CLIENT["wxpay"] = wechatpay_sync_client
    with Served(get_wsgi_application()) as served:
        settings.WECHATPAY_NOTIFY_URL = served.url + "/wxpay/notify"
        answer = Client().post("/orders/D-1", data={"total": 100}, content_type="application/json")
        assert answer.json()["code_url"].startswith("weixin://")
        wechatpay_thread_server.pay("D-1")
        wait_for(lambda: "D-1" in django_app.PAID)
    assert wechatpay_thread_server.deliveries[-1].delivered


def test_a_celery_style_task_in_threads_and_in_a_forked_worker(
    wechatpay_thread_server: FakeWeChatPay,
) -> None:
    from recipes import celery_task

    fake = wechatpay_thread_server
    celery_task.SETTINGS.update(fake.client_options())
    with fake.sync_client() as wxpay:
        for out_trade_no in ("C-1", "C-2", "C-3"):
            wxpay.v3.pay.transactions.native.post(
                json={
                    "appid": APPID,
                    "mchid": wxpay.mchid,
                    "description": "c",
                    "out_trade_no": out_trade_no,
                    "notify_url": "https://shop.example/n",
                    "amount": {"total": 1},
                }
            )
    fake.pay("C-2")
    try:
        with ThreadPoolExecutor(4) as workers:  # a threaded worker pool
            states = list(workers.map(celery_task.close_order_if_unpaid, ["C-1", "C-2", "X"]))
        assert states == ["CLOSED", "SUCCESS", "NOT_EXIST"]
        read_end, write_end = os.pipe()
        pid = os.fork()  # a prefork worker, after the parent used its client
        if pid == 0:
            code = 1
            try:
                code = 0 if celery_task.close_order_if_unpaid("C-3") == "CLOSED" else 1
            finally:
                os.write(write_end, bytes([code]))
                os._exit(code)
        os.close(write_end)
        assert os.read(read_end, 1) == b"\x00"
        os.close(read_end)
        os.waitpid(pid, 0)
        assert celery_task.close_order_if_unpaid("C-3") == "CLOSED"  # the parent still works
    finally:
        client = celery_task._client
        celery_task._client = None
        if client is not None:
            client.close()


@pytest.fixture
def starlette_client(wechatpay_thread_server: FakeWeChatPay) -> Iterator[Any]:
    from recipes.starlette_app import create_app
    from starlette.testclient import TestClient

    app = create_app(wechatpay_thread_server.client, APPID, "https://shop.example/wxpay/notify")
    with TestClient(app) as client:  # runs the app, and its lifespan, in a loop of its own
        yield client


def test_starlette_with_testclient_against_the_threaded_fake(
    wechatpay_thread_server: FakeWeChatPay, starlette_client: Any
) -> None:
    answer = starlette_client.post("/orders/S-1?total=100")
    assert answer.json()["code_url"].startswith("weixin://")
    transaction = wechatpay_thread_server.pay("S-1")
    headers, body = wechatpay_thread_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=transaction
    )
    delivered = starlette_client.post("/wxpay/notify", headers=headers, content=body)
    assert delivered.status_code == 204
    assert starlette_client.app.state.paid == ["S-1"]
    forged = starlette_client.post("/wxpay/notify", headers=headers, content=body + b" ")
    assert forged.status_code == 401
