"""Flask: create an order and receive its notification with SyncWeChatPay."""

from __future__ import annotations

from flask import Flask, Response, request

from wechatpay_chain import InvalidNotificationError, SyncWeChatPay, VerificationError
from wechatpay_chain.notifications import failure, success


def create_app(wxpay: SyncWeChatPay, appid: str, notify_url: str) -> Flask:
    app = Flask(__name__)
    app.config["PAID"] = []  # your database, in a real application

    @app.post("/orders/<out_trade_no>")
    def create_order(out_trade_no: str) -> dict[str, str]:
        answer = wxpay.v3.pay.transactions.native.post(
            json={
                "appid": appid,
                "mchid": wxpay.mchid,
                "description": "Image形象店-深圳腾大-QQ公仔",
                "out_trade_no": out_trade_no,
                "notify_url": notify_url,
                "amount": {"total": int(request.args["total"])},
            }
        )
        return {"code_url": answer.json()["code_url"]}

    @app.post("/wxpay/notify")
    def notify() -> Response:
        try:
            notification = wxpay.notifications.parse(dict(request.headers), request.get_data())
        except (VerificationError, InvalidNotificationError):
            ack = failure("not verified", status=401)
        else:
            app.config["PAID"].append(notification.resource["out_trade_no"])
            ack = success()
        return Response(ack.body, status=ack.status, content_type=ack.content_type)

    return app
