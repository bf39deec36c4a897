"""Starlette (or FastAPI): the async client in the app's own loop, tested with TestClient
against the fake server running in a thread of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wechatpay_chain import InvalidNotificationError, VerificationError, WeChatPay
from wechatpay_chain.notifications import failure, success


def create_app(make_client: Callable[[], WeChatPay], appid: str, notify_url: str) -> Starlette:
    paid: list[str] = []  # your database, in a real application

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Made in the app's loop, closed with it: a WeChatPay belongs to one event loop.
        async with make_client() as wxpay:
            app.state.wxpay = wxpay
            yield

    async def create_order(request: Request) -> JSONResponse:
        wxpay: WeChatPay = request.app.state.wxpay
        answer = await wxpay.v3.pay.transactions.native.post(
            json={
                "appid": appid,
                "mchid": wxpay.mchid,
                "description": "Image形象店-深圳腾大-QQ公仔",
                "out_trade_no": request.path_params["out_trade_no"],
                "notify_url": notify_url,
                "amount": {"total": int(request.query_params["total"])},
            }
        )
        return JSONResponse({"code_url": answer.json()["code_url"]})

    async def notify(request: Request) -> Response:
        try:
            notification = await request.app.state.wxpay.notifications.from_starlette(request)
        except (VerificationError, InvalidNotificationError):
            return failure("not verified", status=401).to_starlette()
        paid.append(notification.resource["out_trade_no"])
        return success().to_starlette()

    app = Starlette(
        routes=[
            Route("/orders/{out_trade_no}", create_order, methods=["POST"]),
            Route("/wxpay/notify", notify, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.paid = paid
    return app
