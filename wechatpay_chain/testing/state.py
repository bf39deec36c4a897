"""The fake server's payment state: orders and refunds, of a direct merchant and of a service
provider (``/v3/pay/partner/...``: the fake's merchant is the ``sp_mchid``, its sub-merchants
any ``sub_mchid``).

Answers follow the shapes of the official API pages (OAPI ``docs/v3/**.yaml``); the values
are plausible, not real.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._wire import CHINA_TIME
from .messages import ApiFailure, RecordedRequest, Reply, param_error

__all__ = ["Order", "PaymentState", "digits", "require"]

_TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "app": "APP", "h5": "MWEB"}


def digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def require(document: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ApiFailure(400, "PARAM_ERROR", "参数错误: 请求主体应为JSON对象", {"location": "body"})
    for name in fields:
        if document.get(name) in (None, ""):
            raise param_error(f"/{name}", f"{name} 为必填参数")
    return document


@attrs.define
class Order:
    request: dict[str, Any]
    trade_type: str
    prepay_id: str
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None
    payer_openid: str | None = None
    refunded: int = 0
    #: Server time of creation: a prepay_id lives 2 hours.
    created: int = 0

    @property
    def sub_mchid(self) -> str | None:
        """The sub-merchant of a service provider's order; ``None`` for a direct one."""
        value = self.request.get("sub_mchid")
        return value if isinstance(value, str) else None


@attrs.define
class PaymentState:
    """Orders by ``out_trade_no`` and refunds by ``out_refund_no``."""

    mchid: str
    clock: Callable[[], float]
    orders: dict[str, Order] = attrs.field(factory=dict)
    refunds: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: Called to send a notification in the background: (url, event_type, resource, summary, original_type).
    notify: Callable[[str, str, Any, str, str], None] = attrs.field(
        default=lambda *_: None, repr=False
    )

    def now(self) -> str:
        return datetime.datetime.fromtimestamp(int(self.clock()), CHINA_TIME).isoformat()

    def routes(
        self,
    ) -> list[tuple[str, str, Callable[[RecordedRequest, Mapping[str, str]], Reply]]]:
        table: list[tuple[str, str, Callable[[RecordedRequest, Mapping[str, str]], Reply]]] = [
            ("POST", f"/v3/pay/transactions/{kind}", self._order_creator(kind))
            for kind in _TRADE_TYPES
        ]
        table += [
            ("POST", f"/v3/pay/partner/transactions/{kind}", self._order_creator(kind, True))
            for kind in _TRADE_TYPES
        ]
        partner = "/v3/pay/partner/transactions"
        table += [
            ("GET", partner + "/id/{transaction_id}", self.query_by_transaction_id),
            ("GET", partner + "/out-trade-no/{out_trade_no}", self.query_by_out_trade_no),
            ("POST", partner + "/out-trade-no/{out_trade_no}/close", self.close),
            ("GET", "/v3/pay/transactions/id/{transaction_id}", self.query_by_transaction_id),
            ("GET", "/v3/pay/transactions/out-trade-no/{out_trade_no}", self.query_by_out_trade_no),
            ("POST", "/v3/pay/transactions/out-trade-no/{out_trade_no}/close", self.close),
            ("POST", "/v3/refund/domestic/refunds", self.create_refund),
            ("GET", "/v3/refund/domestic/refunds/{out_refund_no}", self.query_refund),
        ]
        return table

    # -- orders ----------------------------------------------------------------------------

    def _order_creator(
        self, kind: str, partner: bool = False
    ) -> Callable[[RecordedRequest, Mapping[str, str]], Reply]:
        def create(request: RecordedRequest, _: Mapping[str, str]) -> Reply:
            return self.create_order(kind, request.json(), partner=partner)

        return create

    def _order_body(self, kind: str, document: Any, partner: bool) -> dict[str, Any]:
        """The order's body, checked as WeChat Pay checks it (``ApiFailure`` otherwise)."""
        common = ("description", "out_trade_no", "notify_url", "amount")
        if partner:
            body = require(document, ("sp_appid", "sp_mchid", "sub_mchid", *common))
            if body["sp_mchid"] != self.mchid:
                raise param_error(
                    "/sp_mchid", "sp_mchid与请求的商户号不一致", value=body["sp_mchid"]
                )
        else:
            body = require(document, ("appid", "mchid", *common))
            if body["mchid"] != self.mchid:
                raise param_error("/mchid", "mchid与请求的商户号不一致", value=body["mchid"])
        total = body["amount"].get("total") if isinstance(body["amount"], dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise param_error("/amount/total", "total 应为大于0的整数（单位：分）")
        payer: dict[str, Any] = body["payer"] if isinstance(body.get("payer"), dict) else {}
        if kind == "jsapi" and not partner and not payer.get("openid"):
            raise param_error("/payer/openid", "JSAPI下单 payer.openid 为必填参数")
        if kind == "jsapi" and partner and not (payer.get("sp_openid") or payer.get("sub_openid")):
            raise param_error("/payer", "JSAPI下单 payer.sp_openid 或 payer.sub_openid 必填其一")
        if partner and payer.get("sub_openid") and not body.get("sub_appid"):
            raise param_error("/sub_appid", "传入 payer.sub_openid 时 sub_appid 为必填参数")
        if kind == "h5" and not (
            isinstance(body.get("scene_info"), dict) and body["scene_info"].get("payer_client_ip")
        ):
            raise param_error(
                "/scene_info/payer_client_ip", "H5下单 scene_info.payer_client_ip 为必填参数"
            )
        return body

    def create_order(self, kind: str, document: Any, *, partner: bool = False) -> Reply:
        body = self._order_body(kind, document, partner)
        out_trade_no = body["out_trade_no"]
        order = self.orders.get(out_trade_no)
        if order is None:
            order = Order(
                request=body,
                trade_type=_TRADE_TYPES[kind],
                prepay_id="wx" + digits(34),
                created=int(self.clock()),
            )
            self.orders[out_trade_no] = order
        elif order.request != body or order.trade_type != _TRADE_TYPES[kind]:
            raise ApiFailure(400, "INVALID_REQUEST", "请求重入时，参数与首次请求时不一致")
        elif order.trade_state != "NOTPAY":
            raise ApiFailure(
                400,
                "ORDER_CLOSED" if order.trade_state == "CLOSED" else "ORDERPAID",
                "订单状态不允许重新下单",
            )
        if kind == "native":
            return Reply(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-9:]}"})
        if kind == "h5":
            return Reply(
                200,
                {
                    "h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={order.prepay_id}"
                },
            )
        return Reply(200, {"prepay_id": order.prepay_id})

    def _transaction(self, out_trade_no: str, order: Order) -> dict[str, Any]:
        request = order.request
        total = request["amount"]["total"]
        document: dict[str, Any] = (
            {"appid": request["appid"], "mchid": self.mchid}
            if order.sub_mchid is None
            else {
                "sp_appid": request["sp_appid"],
                "sp_mchid": self.mchid,
                **({"sub_appid": request["sub_appid"]} if request.get("sub_appid") else {}),
                "sub_mchid": order.sub_mchid,
            }
        )
        document.update(
            {
                "out_trade_no": out_trade_no,
                "trade_type": order.trade_type,
                "trade_state": order.trade_state,
                "trade_state_desc": {
                    "NOTPAY": "未支付",
                    "SUCCESS": "支付成功",
                    "CLOSED": "已关闭",
                    "REFUND": "转入退款",
                }[order.trade_state],
                "attach": request.get("attach", ""),
                "amount": {"total": total, "currency": request["amount"].get("currency", "CNY")},
            }
        )
        if order.transaction_id is not None:
            document.update(
                transaction_id=order.transaction_id,
                bank_type="OTHERS",
                success_time=order.success_time,
                payer=self._payer(order),
            )
            document["amount"].update(payer_total=total, payer_currency="CNY")
        return document

    def _payer(self, order: Order) -> dict[str, Any]:
        if order.sub_mchid is None:
            return {"openid": order.payer_openid}
        given: dict[str, Any] = order.request.get("payer") or {}
        payer = {"sp_openid": given.get("sp_openid") or order.payer_openid}
        if order.request.get("sub_appid"):
            payer["sub_openid"] = given.get("sub_openid") or order.payer_openid
        return payer

    def pay(self, out_trade_no: str, *, openid: str) -> dict[str, Any]:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise KeyError(f"no order {out_trade_no!r} in the fake server")
        if order.trade_state != "NOTPAY":
            raise ValueError(f"order {out_trade_no!r} is {order.trade_state}, not NOTPAY")
        order.trade_state = "SUCCESS"
        order.transaction_id = "42000" + digits(23)
        order.success_time = self.now()
        order.payer_openid = openid
        transaction = self._transaction(out_trade_no, order)
        self.notify(
            order.request["notify_url"],
            "TRANSACTION.SUCCESS",
            transaction,
            "支付成功",
            "transaction",
        )
        return transaction

    def order_by_prepay_id(self, prepay_id: str) -> Order | None:
        return next((order for order in self.orders.values() if order.prepay_id == prepay_id), None)

    def _queried_mchid(self, request: RecordedRequest, order: Order | None = None) -> None:
        if "/partner/" in request.path:
            sp_mchid, sub_mchid = request.query.get("sp_mchid"), request.query.get("sub_mchid")
            if not sp_mchid or not sub_mchid:
                raise param_error("sp_mchid", "sp_mchid 与 sub_mchid 为必填参数", location="query")
            if sp_mchid != self.mchid:
                raise param_error("sp_mchid", "sp_mchid与请求的商户号不一致", location="query")
            if order is not None and order.sub_mchid != sub_mchid:
                raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
            return
        mchid = request.query.get("mchid")
        if not mchid:
            raise param_error("mchid", "mchid 为必填参数", location="query")
        if mchid != self.mchid:
            raise param_error("mchid", "mchid与请求的商户号不一致", location="query", value=mchid)

    def query_by_out_trade_no(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        self._queried_mchid(request)
        order = self.orders.get(path["out_trade_no"])
        if order is None or (order.sub_mchid is not None) != ("/partner/" in request.path):
            raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
        self._queried_mchid(request, order)
        return Reply(200, self._transaction(path["out_trade_no"], order))

    def query_by_transaction_id(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        self._queried_mchid(request)
        for out_trade_no, order in self.orders.items():
            if order.transaction_id == path["transaction_id"] and (
                (order.sub_mchid is not None) == ("/partner/" in request.path)
            ):
                self._queried_mchid(request, order)
                return Reply(200, self._transaction(out_trade_no, order))
        raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")

    def close(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        partner = "/partner/" in request.path
        body = require(request.json(), ("sp_mchid", "sub_mchid") if partner else ("mchid",))
        owner = "sp_mchid" if partner else "mchid"
        if body[owner] != self.mchid:
            raise param_error(f"/{owner}", f"{owner}与请求的商户号不一致", value=body[owner])
        order = self.orders.get(path["out_trade_no"])
        if order is None or order.sub_mchid != (body["sub_mchid"] if partner else None):
            raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise ApiFailure(400, "ORDERPAID", "订单已支付，不能关闭")
        order.trade_state = "CLOSED"
        return Reply(204)

    # -- refunds ---------------------------------------------------------------------------

    def create_refund(self, request: RecordedRequest, _: Mapping[str, str]) -> Reply:
        body = require(request.json(), ("out_refund_no", "amount"))
        amount = body["amount"] if isinstance(body["amount"], dict) else {}
        refund, total = amount.get("refund"), amount.get("total")
        if not isinstance(refund, int) or not isinstance(total, int) or refund <= 0:
            raise param_error("/amount", "amount.refund 与 amount.total 应为正整数（单位：分）")
        found = [
            (out_trade_no, order)
            for out_trade_no, order in self.orders.items()
            if out_trade_no == body.get("out_trade_no")
            or (
                order.transaction_id is not None
                and order.transaction_id == body.get("transaction_id")
            )
        ]
        if not found or found[0][1].sub_mchid != body.get("sub_mchid"):
            # A sub-merchant's order is refunded with its sub_mchid, a direct one without.
            raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        out_trade_no, order = found[0]
        existing = self.refunds.get(body["out_refund_no"])
        if existing is not None:
            if existing["request"] != body:
                raise ApiFailure(400, "INVALID_REQUEST", "请求重入时，参数与首次请求时不一致")
            return Reply(200, existing["answer"])
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise ApiFailure(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total != order.request["amount"]["total"]:
            raise param_error("/amount/total", "订单金额与原订单不一致", value=total)
        if refund > total - order.refunded:
            raise ApiFailure(403, "NOT_ENOUGH", "退款金额超过订单可退金额")
        order.refunded += refund
        order.trade_state = "REFUND"
        answer = {
            "refund_id": "50" + digits(27),
            "out_refund_no": body["out_refund_no"],
            "transaction_id": order.transaction_id,
            "out_trade_no": out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "success_time": self.now(),
            "create_time": self.now(),
            "status": "SUCCESS",
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total,
                "refund": refund,
                "payer_total": total,
                "payer_refund": refund,
                "settlement_refund": refund,
                "settlement_total": total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        self.refunds[body["out_refund_no"]] = {"request": body, "answer": answer}
        if isinstance(body.get("notify_url"), str):
            owner = (
                {"mchid": self.mchid}
                if order.sub_mchid is None
                else {"sp_mchid": self.mchid, "sub_mchid": order.sub_mchid}
            )
            notice = {
                **owner,
                "out_trade_no": out_trade_no,
                "transaction_id": order.transaction_id,
                "out_refund_no": body["out_refund_no"],
                "refund_id": answer["refund_id"],
                "refund_status": "SUCCESS",
                "success_time": answer["success_time"],
                "user_received_account": answer["user_received_account"],
                "amount": {
                    "total": total,
                    "refund": refund,
                    "payer_total": total,
                    "payer_refund": refund,
                },
            }
            self.notify(body["notify_url"], "REFUND.SUCCESS", notice, "退款成功", "refund")
        return Reply(200, answer)

    def query_refund(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        existing = self.refunds.get(path["out_refund_no"])
        if existing is None or existing["request"].get("sub_mchid") != request.query.get(
            "sub_mchid"
        ):
            raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return Reply(200, existing["answer"])
