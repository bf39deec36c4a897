"""A Celery-style task: a plain function a worker thread or a forked worker process runs.

One SyncWeChatPay per process, made on first use: a prefork worker made by fork() gets a
loop and a connection pool of its own (SyncWeChatPay starts them afresh in the child).
"""

from __future__ import annotations

from typing import Any

from wechatpay_chain import ApiError, SyncWeChatPay

SETTINGS: dict[str, Any] = {}  # the client's arguments, from your configuration
_client: SyncWeChatPay | None = None


def client() -> SyncWeChatPay:
    global _client  # noqa: PLW0603 - one client per worker process
    if _client is None:
        _client = SyncWeChatPay(**SETTINGS)
    return _client


def close_order_if_unpaid(out_trade_no: str) -> str:
    """The task: query the order and close it when it was not paid; returns its state."""
    wxpay = client()
    order = wxpay.v3.pay.transactions.outTradeNo._out_trade_no_
    try:
        state: str = order.get(out_trade_no=out_trade_no, params={"mchid": wxpay.mchid}).json()[
            "trade_state"
        ]
    except ApiError as error:
        if error.code == "ORDER_NOT_EXIST":
            return "NOT_EXIST"
        raise
    if state == "NOTPAY":
        order.close.post(out_trade_no=out_trade_no, json={"mchid": wxpay.mchid})
        return "CLOSED"
    return state
