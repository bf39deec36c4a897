"""Django: the same two views, wired as a Django project would wire them."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from wechatpay_chain import InvalidNotificationError, SyncWeChatPay, VerificationError
from wechatpay_chain.notifications import failure, success

PAID: list[str] = []  # your database, in a real application
CLIENT: dict[str, SyncWeChatPay] = {}  # set at start-up: one client for the process


@require_POST
def create_order(request: HttpRequest, out_trade_no: str) -> JsonResponse:
    wxpay = CLIENT["wxpay"]
    answer = wxpay.v3.pay.transactions.native.post(
        json={
            "appid": settings.WECHATPAY_APPID,
            "mchid": wxpay.mchid,
            "description": "Image形象店-深圳腾大-QQ公仔",
            "out_trade_no": out_trade_no,
            "notify_url": settings.WECHATPAY_NOTIFY_URL,
            "amount": {"total": int(json.loads(request.body)["total"])},
        }
    )
    return JsonResponse({"code_url": answer.json()["code_url"]})


@csrf_exempt
@require_POST
def notify(request: HttpRequest) -> HttpResponse:
    try:
        notification = CLIENT["wxpay"].notifications.parse(request.headers, request.body)
    except (VerificationError, InvalidNotificationError):
        ack = failure("not verified", status=401)
    else:
        PAID.append(notification.resource["out_trade_no"])
        ack = success()
    return HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)


urlpatterns = [
    path("orders/<str:out_trade_no>", create_order),
    path("wxpay/notify", notify),
]
