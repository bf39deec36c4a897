"""The fake server's APIv2 (XML): payments, refunds, bills, transfers and classic papay.

Every request's ``sign`` is verified with the APIv2 key (the ``sign_type`` field's algorithm,
MD5 when absent) and every answer is XML signed the same way, except where WeChat Pay answers
unsigned (bills, transfers, pages). Notifications go out in v2 form: pay and contract results
signed, refund results with an encrypted ``req_info``. Business state is kept here, apart
from the v3 state: a v2 order is not a v3 order.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import secrets
import string
import time
from collections.abc import Callable

import attrs
from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy

from .. import apiv2
from .._wire import CHINA_TIME
from ..endpoints import endpoint_facts
from ..errors import MalformedXmlError, UnsafeXmlError
from .messages import RecordedRequest
from .notify import Courier, is_loopback

__all__ = ["ApiV2Fake", "V2Delivery", "V2Order"]

_ALPHABET = string.ascii_letters + string.digits
#: Seconds between resends of a notification that was not acknowledged.
RESEND_AFTER = (0.05, 0.1, 0.2)


def _nonce() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(32))


def _digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


@attrs.define
class V2Order:
    """A v2 order: ``trade_state`` is NOTPAY, USERPAYING, SUCCESS, CLOSED, REVOKED or REFUND."""

    out_trade_no: str
    fields: dict[str, str]
    transaction_id: str = attrs.field(factory=lambda: "42000" + _digits(23))
    trade_state: str = "NOTPAY"
    time_end: str = ""
    refunded: int = 0
    #: Order queries still to answer USERPAYING (a payment-code payment being confirmed).
    polls_left: int = 0

    @property
    def total_fee(self) -> int:
        return int(self.fields["total_fee"])


@attrs.define
class V2Delivery:
    """One v2 notification and the answers it got; ``acknowledged`` once one was SUCCESS."""

    url: str
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")
    answers: list[bytes] = attrs.field(factory=list)
    acknowledged: bool = False
    done: asyncio.Event = attrs.field(factory=asyncio.Event, repr=False)


class _Refusal(Exception):
    """Answer ``return_code`` FAIL (a protocol error: unsigned) or ``result_code`` FAIL."""

    def __init__(self, err_code: str, message: str, *, protocol: bool = False) -> None:
        super().__init__(message)
        self.err_code = err_code
        self.message = message
        self.protocol = protocol


Handler = Callable[[dict[str, str]], dict[str, str]]


class ApiV2Fake:
    """``fake.v2``: the APIv2 side of :class:`~wechatpay_chain.testing.FakeWeChatPay`."""

    def __init__(
        self,
        *,
        mchid: str,
        apiv2_key: str,
        clock: Callable[[], float] = time.time,
        record: Callable[[RecordedRequest], None] | None = None,
        client_serial: str | None = None,
    ) -> None:
        self.mchid = mchid
        #: Over TLS: the merchant API certificate the certificate endpoints require, checked
        #: as the TLS handshake verified it; ``None`` over plain HTTP (nothing to check).
        self.client_serial = client_serial
        #: The serial of the client certificate each APIv2 request came with (``None``: none).
        self.presented: list[str | None] = []
        self.apiv2_key = apiv2_key
        self.clock = clock
        self._record = record
        self.orders: dict[str, V2Order] = {}
        self.refunds: dict[str, dict[str, str]] = {}
        self.transfers: dict[str, dict[str, str]] = {}
        #: Contracts by contract_code: pending ones (page opened) have no contract_id yet.
        self.contracts: dict[str, dict[str, str]] = {}
        self.deliveries: list[V2Delivery] = []
        #: How many order queries answer USERPAYING after a micropay before it succeeds.
        self.micropay_polls = 1
        self._courier = Courier(timeout=5)

    def __repr__(self) -> str:
        return f"<ApiV2Fake mchid={self.mchid!r}>"

    # -- wiring --------------------------------------------------------------------------------

    def routes(self) -> dict[str, Handler]:
        """The POST endpoints, by path (without the ``v2/`` the chain writes)."""
        return {
            "/pay/unifiedorder": self._unifiedorder,
            "/pay/micropay": self._micropay,
            "/pay/orderquery": self._orderquery,
            "/pay/closeorder": self._closeorder,
            "/secapi/pay/reverse": self._reverse,
            "/secapi/pay/refund": self._refund,
            "/pay/refundquery": self._refundquery,
            "/mmpaymkttransfers/promotion/transfers": self._transfer,
            "/mmpaymkttransfers/gettransferinfo": self._transferinfo,
            "/papay/querycontract": self._querycontract,
            "/pay/pappayapply": self._pappayapply,
            "/papay/deletecontract": self._deletecontract,
        }

    def add_routes(self, app: web.Application) -> None:
        """Add the v2 routes to the fake's app (before its catch-all v3 route)."""
        for path in self.routes():
            app.router.add_post(path, self._handle)
        app.router.add_post("/pay/downloadbill", self._downloadbill)
        app.router.add_post("/pay/downloadfundflow", self._downloadbill)
        app.router.add_get("/papay/entrustweb", self._entrustweb)

    async def close(self) -> None:
        await self._courier.close()

    # -- the exchange --------------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[dict[str, str], str]:
        body = await request.read()
        if self._record is not None:
            self._record(
                RecordedRequest(
                    method=request.method,
                    target=request.raw_path,
                    path=request.path,
                    query=MultiDictProxy(request.rel_url.query.copy()),
                    headers=CIMultiDictProxy(request.headers.copy()),
                    body=body,
                )
            )
        try:
            fields = apiv2.parse_xml(body)
        except (MalformedXmlError, UnsafeXmlError):
            raise _Refusal("FAIL", "XML格式错误", protocol=True) from None
        return fields, self._verify(fields)

    def _verify(self, fields: dict[str, str]) -> str:
        sign_type = fields.get("sign_type") or apiv2.MD5
        if sign_type not in apiv2.SIGN_TYPES:
            raise _Refusal("FAIL", "签名类型错误", protocol=True)
        try:
            apiv2.verify(fields, self.apiv2_key, sign_type)
        except Exception:
            raise _Refusal("FAIL", "签名错误", protocol=True) from None
        merchant = next(
            (fields[name] for name in apiv2.MERCHANT_FIELDS if name in fields), self.mchid
        )
        if merchant != self.mchid:
            raise _Refusal("FAIL", "商户号mch_id与appid不匹配", protocol=True)
        return sign_type

    def _answer(self, fields: dict[str, str], sign_type: str | None) -> web.Response:
        if sign_type is not None:
            fields = {**fields, "nonce_str": _nonce()}
            fields["sign"] = apiv2.sign(fields, self.apiv2_key, sign_type)
        return web.Response(body=apiv2.to_xml(fields), content_type="text/xml", charset="utf-8")

    def _check_certificate(self, request: web.Request) -> None:
        peer = None if request.transport is None else request.transport.get_extra_info("peercert")
        serial = None if not peer else format(int(peer["serialNumber"], 16), "X")
        self.presented.append(serial)
        if self.client_serial is None:
            return
        if endpoint_facts("POST", "v2" + request.path).certificate_required and (
            serial != self.client_serial
        ):
            raise _Refusal(
                "FAIL",
                "证书错误: this endpoint requires the merchant API certificate",
                protocol=True,
            )

    async def _handle(self, request: web.Request) -> web.Response:
        handler = self.routes()[request.path]
        sign_type = apiv2.MD5
        try:
            self._check_certificate(request)
            fields, sign_type = await self._read(request)
            result = handler(fields)
        except _Refusal as refusal:
            if refusal.protocol:
                return self._answer({"return_code": "FAIL", "return_msg": refusal.message}, None)
            failed = {
                "return_code": "SUCCESS",
                "return_msg": "OK",
                "mch_id": self.mchid,
                "result_code": "FAIL",
                "err_code": refusal.err_code,
                "err_code_des": refusal.message,
            }
            return self._answer(failed, sign_type)
        answer = {"return_code": "SUCCESS", "return_msg": "OK", "result_code": "SUCCESS", **result}
        unsigned = request.path.startswith("/mmpaymkttransfers/")
        return self._answer(answer, None if unsigned else sign_type)

    # -- payments ------------------------------------------------------------------------------

    def _require(self, fields: dict[str, str], *names: str) -> None:
        for name in names:
            if not fields.get(name):
                raise _Refusal("PARAM_ERROR", f"缺少参数{name}")

    def _order(self, fields: dict[str, str]) -> V2Order:
        out_trade_no = fields.get("out_trade_no")
        if not out_trade_no and fields.get("transaction_id"):
            out_trade_no = next(
                (
                    order.out_trade_no
                    for order in self.orders.values()
                    if order.transaction_id == fields["transaction_id"]
                ),
                None,
            )
        order = self.orders.get(out_trade_no or "")
        if order is None:
            raise _Refusal("ORDERNOTEXIST", "此交易订单号不存在")
        return order

    def _now(self) -> str:
        return datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime("%Y%m%d%H%M%S")

    def _new_order(self, fields: dict[str, str]) -> V2Order:
        self._require(fields, "appid", "body", "out_trade_no", "total_fee", "spbill_create_ip")
        if not fields["total_fee"].isdigit() or int(fields["total_fee"]) < 1:
            raise _Refusal("PARAM_ERROR", "total_fee 参数错误")
        existing = self.orders.get(fields["out_trade_no"])
        if existing is not None:
            if existing.trade_state == "SUCCESS":
                raise _Refusal("ORDERPAID", "该订单已支付")
            if existing.fields.get("total_fee") != fields["total_fee"]:
                raise _Refusal("OUT_TRADE_NO_USED", "商户订单号重复")
            return existing
        order = V2Order(fields["out_trade_no"], dict(fields))
        self.orders[order.out_trade_no] = order
        return order

    def _unifiedorder(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "notify_url", "trade_type")
        order = self._new_order(fields)
        answer = {
            "appid": fields["appid"],
            "mch_id": self.mchid,
            "trade_type": fields["trade_type"],
            "prepay_id": "wx" + self._now() + _digits(14),
        }
        if fields["trade_type"] == "NATIVE":
            answer["code_url"] = "weixin://wxpay/bizpayurl?pr=" + _nonce()[:7]
        if fields["trade_type"] == "MWEB":
            answer["mweb_url"] = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=x"
        order.fields["prepay_id"] = answer["prepay_id"]
        return answer

    def _micropay(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "auth_code")
        order = self._new_order(fields)
        if order.trade_state == "NOTPAY":
            # The user confirms on the phone: WeChat Pay answers USERPAYING, the cashier polls.
            order.trade_state = "USERPAYING"
            order.polls_left = self.micropay_polls
            raise _Refusal("USERPAYING", "需要用户输入支付密码")
        raise _Refusal("USERPAYING", "需要用户输入支付密码")

    def _paid_fields(self, order: V2Order) -> dict[str, str]:
        return {
            "appid": order.fields.get("appid", ""),
            "mch_id": self.mchid,
            "openid": order.fields.get("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
            "is_subscribe": "N",
            "trade_type": order.fields.get("trade_type", "MICROPAY"),
            "bank_type": "OTHERS",
            "total_fee": str(order.total_fee),
            "fee_type": "CNY",
            "cash_fee": str(order.total_fee),
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "attach": order.fields.get("attach", ""),
            "time_end": order.time_end,
            **(
                {"contract_id": order.fields["contract_id"]}
                if "contract_id" in order.fields
                else {}
            ),
        }

    def _succeed(self, order: V2Order) -> None:
        order.trade_state = "SUCCESS"
        order.time_end = self._now()

    def _orderquery(self, fields: dict[str, str]) -> dict[str, str]:
        order = self._order(fields)
        if order.trade_state == "USERPAYING":
            if order.polls_left > 0:
                order.polls_left -= 1
            else:
                self._succeed(order)
        answer = {"trade_state": order.trade_state, "out_trade_no": order.out_trade_no}
        if order.trade_state in ("SUCCESS", "REFUND"):
            answer.update(self._paid_fields(order))
        return {**answer, "trade_state": order.trade_state}

    def _closeorder(self, fields: dict[str, str]) -> dict[str, str]:
        order = self._order(fields)
        if order.trade_state == "SUCCESS":
            raise _Refusal("ORDERPAID", "订单已支付，不能发起关单")
        order.trade_state = "CLOSED"
        return {"mch_id": self.mchid}

    def _reverse(self, fields: dict[str, str]) -> dict[str, str]:
        order = self._order(fields)
        order.trade_state = "REVOKED"
        return {"mch_id": self.mchid, "recall": "N"}

    def pay(self, out_trade_no: str, *, openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") -> V2Order:
        """Play the user who pays a unifiedorder order; sends the v2 pay notification."""
        order = self.orders[out_trade_no]
        order.fields.setdefault("openid", openid)
        self._succeed(order)
        self._notify_paid(order)
        return order

    def _notify_paid(self, order: V2Order) -> None:
        url = order.fields.get("notify_url")
        if url:
            fields = {
                "return_code": "SUCCESS",
                "result_code": "SUCCESS",
                **self._paid_fields(order),
            }
            self.notify(url, fields, signed=True, sign_type=order.fields.get("sign_type"))

    # -- refunds -------------------------------------------------------------------------------

    def _refund(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "out_refund_no", "total_fee", "refund_fee")
        order = self._order(fields)
        existing = self.refunds.get(fields["out_refund_no"])
        if existing is None:
            if order.trade_state not in ("SUCCESS", "REFUND"):
                raise _Refusal("TRADE_STATE_ERROR", "订单状态错误")
            fee = int(fields["refund_fee"]) if fields["refund_fee"].isdigit() else 0
            if fee < 1 or order.refunded + fee > order.total_fee:
                raise _Refusal("PARAM_ERROR", "退款金额大于支付金额")
            order.refunded += fee
            order.trade_state = "REFUND"
            existing = {
                "out_refund_no": fields["out_refund_no"],
                "refund_id": "50000" + _digits(24),
                "refund_fee": str(fee),
                "out_trade_no": order.out_trade_no,
                "transaction_id": order.transaction_id,
                "total_fee": str(order.total_fee),
                "refund_status": "SUCCESS",
                "success_time": datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
            }
            self.refunds[fields["out_refund_no"]] = existing
            if fields.get("notify_url"):
                self._notify_refund(fields["notify_url"], existing, order)
        return {
            "appid": order.fields.get("appid", ""),
            "mch_id": self.mchid,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "out_refund_no": existing["out_refund_no"],
            "refund_id": existing["refund_id"],
            "refund_fee": existing["refund_fee"],
            "total_fee": str(order.total_fee),
            "cash_fee": str(order.total_fee),
        }

    def _notify_refund(self, url: str, refund: dict[str, str], order: V2Order) -> None:
        plain = {
            **refund,
            "settlement_refund_fee": refund["refund_fee"],
            "settlement_total_fee": refund["total_fee"],
            "refund_recv_accout": "支付用户零钱",
            "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
            "refund_request_source": "API",
        }
        envelope = {
            "return_code": "SUCCESS",
            "appid": order.fields.get("appid", ""),
            "mch_id": self.mchid,
            "nonce_str": _nonce(),
            "req_info": apiv2.encrypt_req_info(plain, self.apiv2_key),
        }
        self.notify(url, envelope, signed=False)

    def _refundquery(self, fields: dict[str, str]) -> dict[str, str]:
        refund = self.refunds.get(fields.get("out_refund_no", ""))
        refunds = (
            [refund]
            if refund is not None
            else [
                item
                for item in self.refunds.values()
                if fields.get("refund_id") == item["refund_id"]
                or fields.get("out_trade_no") == item["out_trade_no"]
                or fields.get("transaction_id") == item["transaction_id"]
            ]
        )
        if not refunds:
            raise _Refusal("REFUNDNOTEXIST", "退款订单查询失败")
        order = self.orders[refunds[0]["out_trade_no"]]
        answer = {
            "mch_id": self.mchid,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "total_fee": str(order.total_fee),
            "cash_fee": str(order.total_fee),
            "refund_count": str(len(refunds)),
        }
        for index, item in enumerate(refunds):
            answer[f"out_refund_no_{index}"] = item["out_refund_no"]
            answer[f"refund_id_{index}"] = item["refund_id"]
            answer[f"refund_fee_{index}"] = item["refund_fee"]
            answer[f"refund_status_{index}"] = item["refund_status"]
            answer[f"refund_success_time_{index}"] = item["success_time"]
        return answer

    # -- bills ---------------------------------------------------------------------------------

    def bill_rows(self) -> list[list[str]]:
        """The rows of today's trade bill: one per paid order."""
        rows = []
        for order in self.orders.values():
            if order.trade_state in ("SUCCESS", "REFUND"):
                rows.append(
                    [
                        order.time_end,
                        order.fields.get("appid", ""),
                        self.mchid,
                        order.transaction_id,
                        order.out_trade_no,
                        order.fields.get("trade_type", ""),
                        "SUCCESS",
                        f"{order.total_fee / 100:.2f}",
                    ]
                )
        return rows

    def bill_text(self) -> bytes:
        """The bill as WeChat Pay writes it: a header, backquoted values, then totals."""
        header = "交易时间,公众账号ID,商户号,微信订单号,商户订单号,交易类型,交易状态,应结订单金额"
        rows = self.bill_rows()
        lines = [header, *(",".join("`" + value for value in row) for row in rows)]
        total = sum(int(order.total_fee) for order in self.orders.values() if order.time_end)
        lines += ["总交易单数,应结订单总金额", f"`{len(rows)},`{total / 100:.2f}"]
        return ("\r\n".join(lines) + "\r\n").encode()

    def fundflow_text(self) -> bytes:
        """The fund-flow bill: one income line per paid order, then totals."""
        header = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）"
        paid = [order for order in self.orders.values() if order.time_end]
        lines = [header]
        lines += [
            ",".join(
                "`" + value
                for value in (
                    order.time_end,
                    order.transaction_id,
                    "1" + order.transaction_id[1:],
                    "交易",
                    "交易",
                    "收入",
                    f"{order.total_fee / 100:.2f}",
                )
            )
            for order in paid
        ]
        total = sum(order.total_fee for order in paid)
        lines += [
            "资金流水总笔数,收入笔数,收入金额",
            f"`{len(paid)},`{len(paid)},`{total / 100:.2f}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def _downloadbill(self, request: web.Request) -> web.Response:
        try:
            self._check_certificate(request)
            fields, _ = await self._read(request)
        except _Refusal as refusal:
            return self._answer({"return_code": "FAIL", "return_msg": refusal.message}, None)
        date = fields.get("bill_date", "")
        today = datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime("%Y%m%d")
        if not (len(date) == 8 and date.isdigit()):
            failure = {
                "return_code": "FAIL",
                "return_msg": "invalid bill_date",
                "error_code": "20001",
            }
            return self._answer(failure, None)
        if date > today or not self.bill_rows():
            failure = {"return_code": "FAIL", "return_msg": "No Bill Exist", "error_code": "20002"}
            return self._answer(failure, None)
        text = self.fundflow_text() if request.path.endswith("fundflow") else self.bill_text()
        if fields.get("tar_type") == "GZIP":
            return web.Response(body=gzip.compress(text), content_type="application/x-gzip")
        return web.Response(body=text, content_type="text/plain", charset="utf-8")

    # -- transfers to balance ------------------------------------------------------------------

    def _transfer(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "mch_appid", "partner_trade_no", "openid", "check_name", "amount")
        transfer = self.transfers.get(fields["partner_trade_no"])
        if transfer is None:
            transfer = {
                **fields,
                "payment_no": "10000" + _digits(23),
                "payment_time": datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
            }
            self.transfers[fields["partner_trade_no"]] = transfer
        return {
            "mch_appid": fields["mch_appid"],
            "mchid": self.mchid,
            "partner_trade_no": transfer["partner_trade_no"],
            "payment_no": transfer["payment_no"],
            "payment_time": transfer["payment_time"],
        }

    def _transferinfo(self, fields: dict[str, str]) -> dict[str, str]:
        transfer = self.transfers.get(fields.get("partner_trade_no", ""))
        if transfer is None:
            raise _Refusal("NOT_FOUND", "指定单号数据不存在")
        return {
            "partner_trade_no": transfer["partner_trade_no"],
            "mch_id": self.mchid,
            "appid": transfer["mch_appid"],
            "detail_id": transfer["payment_no"],
            "status": "SUCCESS",
            "openid": transfer["openid"],
            "payment_amount": transfer["amount"],
            "transfer_time": transfer["payment_time"],
            "payment_time": transfer["payment_time"],
            "desc": transfer.get("desc", ""),
        }

    # -- classic papay -------------------------------------------------------------------------

    async def _entrustweb(self, request: web.Request) -> web.Response:
        query = dict(request.rel_url.query)
        if self._record is not None:
            self._record(
                RecordedRequest(
                    method="GET",
                    target=request.raw_path,
                    path=request.path,
                    query=MultiDictProxy(request.rel_url.query.copy()),
                    headers=CIMultiDictProxy(request.headers.copy()),
                    body=b"",
                )
            )
        try:
            self._verify(query)
            self._require(query, "plan_id", "contract_code", "request_serial", "notify_url")
        except _Refusal as refusal:
            return web.Response(status=400, text=refusal.message, content_type="text/html")
        self.contracts[query["contract_code"]] = {
            key: value for key, value in query.items() if key != "sign"
        }
        page = "<html><body>微信代扣签约: " + query["contract_code"] + "</body></html>"
        return web.Response(text=page, content_type="text/html")

    def sign_contract(
        self, contract_code: str, *, openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    ) -> dict[str, str]:
        """Play the user who accepts the contract offered on the entrustweb page: assigns a
        contract_id and sends the v2 contract notification (change_type ADD)."""
        contract = self.contracts[contract_code]
        contract.update(
            contract_id="2020" + _digits(20),
            openid=openid,
            contract_state="0",
            contract_signed_time=datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        )
        self._notify_contract(contract, "ADD")
        return contract

    def _notify_contract(self, contract: dict[str, str], change_type: str) -> None:
        fields = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "result_code": "SUCCESS",
            "mch_id": self.mchid,
            "contract_code": contract["contract_code"],
            "plan_id": contract["plan_id"],
            "openid": contract["openid"],
            "change_type": change_type,
            "operate_time": datetime.datetime.fromtimestamp(self.clock(), CHINA_TIME).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "contract_id": contract["contract_id"],
            "request_serial": contract["request_serial"],
        }
        self.notify(contract["notify_url"], fields, signed=True)

    def _contract(self, fields: dict[str, str]) -> dict[str, str]:
        for contract in self.contracts.values():
            if "contract_id" not in contract:
                continue
            if fields.get("contract_id") == contract["contract_id"] or (
                fields.get("plan_id") == contract["plan_id"]
                and fields.get("contract_code") == contract["contract_code"]
            ):
                return contract
        raise _Refusal("CONTRACT_NOT_EXIST", "签约协议不存在")

    def _querycontract(self, fields: dict[str, str]) -> dict[str, str]:
        contract = self._contract(fields)
        return {
            "mch_id": self.mchid,
            "appid": contract.get("appid", ""),
            "contract_id": contract["contract_id"],
            "plan_id": contract["plan_id"],
            "contract_code": contract["contract_code"],
            "request_serial": contract["request_serial"],
            "contract_display_account": contract.get("contract_display_account", ""),
            "contract_state": contract["contract_state"],
            "contract_signed_time": contract["contract_signed_time"],
            "openid": contract["openid"],
        }

    def _pappayapply(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "contract_id", "notify_url")
        if fields.get("trade_type") != "PAP":
            raise _Refusal("PARAM_ERROR", "trade_type 必须为 PAP")
        contract = self._contract(fields)
        if contract["contract_state"] != "0":
            raise _Refusal("CONTRACT_ERROR", "签约协议已解约")
        order = self._new_order(fields)
        order.fields["openid"] = contract["openid"]
        # Deducted at once here; WeChat Pay deducts within minutes and notifies either way.
        self._succeed(order)
        self._notify_paid(order)
        return {"appid": fields["appid"], "mch_id": self.mchid}

    def _deletecontract(self, fields: dict[str, str]) -> dict[str, str]:
        self._require(fields, "contract_termination_remark")
        contract = self._contract(fields)
        contract["contract_state"] = "1"
        self._notify_contract(contract, "DELETE")
        return {
            "mch_id": self.mchid,
            "contract_id": contract["contract_id"],
            "plan_id": contract["plan_id"],
            "contract_code": contract["contract_code"],
        }

    # -- notifications -------------------------------------------------------------------------

    def notify(
        self,
        url: str,
        fields: dict[str, str],
        *,
        signed: bool,
        sign_type: str | None = None,
    ) -> V2Delivery:
        """POST a v2 notification (XML) to ``url``, resending until it is acknowledged with
        ``return_code`` SUCCESS. ``signed`` adds ``nonce_str`` and ``sign``."""
        body_fields = dict(fields)
        if signed:
            body_fields.setdefault("nonce_str", _nonce())
            if sign_type == apiv2.HMAC_SHA256:
                body_fields["sign_type"] = sign_type
            body_fields["sign"] = apiv2.sign(body_fields, self.apiv2_key, sign_type or apiv2.MD5)
        delivery = V2Delivery(url, apiv2.to_xml(body_fields))
        self.deliveries.append(delivery)
        if not is_loopback(url):
            delivery.done.set()
            return delivery
        self._courier.start(self._deliver(delivery))
        return delivery

    async def _deliver(self, delivery: V2Delivery) -> None:
        try:
            for pause in (0.0, *RESEND_AFTER):
                await asyncio.sleep(pause)
                status, text, _ = await self._courier.post(
                    delivery.url, {"Content-Type": "text/xml"}, delivery.body
                )
                delivery.answers.append(text)
                if status is None:
                    continue
                try:
                    verdict = apiv2.parse_xml(text).get("return_code")
                except (MalformedXmlError, UnsafeXmlError):
                    verdict = None
                if status == 200 and verdict == "SUCCESS":
                    delivery.acknowledged = True
                    return
        finally:
            delivery.done.set()
