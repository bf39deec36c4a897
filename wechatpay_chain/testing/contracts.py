"""The fake server's password-exempt contract flow (免密支付, PROTOCOL.md section 14).

Pre-sign (four modes, after payment or in a mini program) opens a 2-hour session; after
payment it is tied to the order's ``prepay_id``. The user (played by a test through
:meth:`ContractState.sign`) pays and signs, which sends ``ENTRUST.SIGN`` to the pre-sign's
``notify_url``; query and terminate work on the stored contract, and terminating sends
``ENTRUST.TERMINATE``.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._wire import CHINA_TIME
from .messages import ApiFailure, RecordedRequest, Reply, param_error
from .state import PaymentState, digits, require

__all__ = ["PRE_SIGN_SESSION_SECONDS", "ContractState"]

#: A pre-sign session, and a prepay_id, live this long.
PRE_SIGN_SESSION_SECONDS = 2 * 60 * 60
_CONTRACT_PATH = "/v3/password-exempt-contract/contracts/service-id/{service_id}/out-contract-code/{out_contract_code}"

# Required body fields of the password-exempt pre-sign endpoints, by mode and scene
# (OAPI docs/v3/password-exempt-contract/contracts/*/pre-entrust-sign/*.yaml).
_PRE_SIGN_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("normal", "pay-redirect-sign"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
        "openid",
    ),
    ("normal", "mini-program"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "openid",
    ),
    ("ecommerce", "pay-redirect-sign"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
        "openid",
    ),
    ("ecommerce", "mini-program"): (
        "appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "openid",
    ),
    ("service-provider", "pay-redirect-sign"): (
        "sp_appid",
        "sub_mchid",
        "sub_appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
    ),
    ("service-provider", "mini-program"): (
        "sp_appid",
        "sub_mchid",
        "sub_appid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
    ),
    ("qs", "pay-redirect-sign"): (
        "appid",
        "sub_appid",
        "sub_mchid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
        "prepay_id",
    ),
    ("qs", "mini-program"): (
        "appid",
        "sub_appid",
        "sub_mchid",
        "service_id",
        "out_contract_code",
        "notify_url",
        "contract_display_account",
    ),
}


@attrs.define
class PreSign:
    mode: str
    scene: str
    request: dict[str, Any]
    created: int
    contract: dict[str, Any] | None = None


@attrs.define
class ContractState:
    """Pre-sign sessions and contracts, by ``out_contract_code``."""

    payments: PaymentState
    pre_signs: dict[str, PreSign] = attrs.field(factory=dict)

    def routes(
        self,
    ) -> list[tuple[str, str, Callable[[RecordedRequest, Mapping[str, str]], Reply]]]:
        table: list[tuple[str, str, Callable[[RecordedRequest, Mapping[str, str]], Reply]]] = [
            (
                "POST",
                f"/v3/password-exempt-contract/contracts/{mode}/pre-entrust-sign/{scene}",
                self._pre_sign_handler(mode, scene),
            )
            for mode, scene in _PRE_SIGN_REQUIRED
        ]
        table += [
            ("GET", _CONTRACT_PATH, self.query),
            ("POST", _CONTRACT_PATH + "/terminate", self.terminate),
        ]
        return table

    def _now(self) -> int:
        return int(self.payments.clock())

    def _time(self, moment: int) -> str:
        return datetime.datetime.fromtimestamp(moment, CHINA_TIME).isoformat()

    def _pre_sign_handler(
        self, mode: str, scene: str
    ) -> Callable[[RecordedRequest, Mapping[str, str]], Reply]:
        def pre_sign(request: RecordedRequest, _: Mapping[str, str]) -> Reply:
            return self.pre_sign(mode, scene, request.json())

        return pre_sign

    def pre_sign(self, mode: str, scene: str, document: Any) -> Reply:
        body = require(document, _PRE_SIGN_REQUIRED[mode, scene])
        service_id = body["service_id"]
        if isinstance(service_id, bool) or not isinstance(service_id, int):
            raise param_error("/service_id", "service_id 应为数字", value=service_id)
        code = body["out_contract_code"]
        if code in self.pre_signs:
            raise ApiFailure(
                400, "INVALID_REQUEST", f"商户签约协议号 {code} 已存在，请更换 out_contract_code"
            )
        if scene == "pay-redirect-sign":
            order = self.payments.order_by_prepay_id(body["prepay_id"])
            if order is None:
                raise param_error("/prepay_id", "prepay_id 不存在", value=body["prepay_id"])
            if (
                order.trade_state != "NOTPAY"
                or self._now() - order.created > PRE_SIGN_SESSION_SECONDS
            ):
                raise param_error("/prepay_id", "prepay_id 已失效（超过2小时或订单已支付、已关闭）")
        answer: dict[str, Any] = {"mchid": self.payments.mchid}
        if mode == "service-provider":
            answer["sub_mchid"] = body["sub_mchid"]
        answer.update(service_id=service_id, out_contract_code=code)
        if scene == "mini-program":
            answer.update(
                pre_entrustweb_id=secrets.token_urlsafe(21),
                sign_mp_appid="wxbd687630cd02ce1d",
                sign_mp_path="pages/PwdExemptContract/index",
            )
        self.pre_signs[code] = PreSign(mode=mode, scene=scene, request=body, created=self._now())
        return Reply(200, answer)

    def sign(self, out_contract_code: str, *, openid: str) -> dict[str, Any]:
        """The user accepts the contract offered by the pre-sign (a test helper)."""
        pre_sign = self.pre_signs.get(out_contract_code)
        if pre_sign is None:
            raise KeyError(f"no pre-sign for out_contract_code {out_contract_code!r}")
        if pre_sign.contract is not None:
            raise ValueError(f"contract {out_contract_code!r} is already signed")
        if self._now() - pre_sign.created > PRE_SIGN_SESSION_SECONDS:
            raise ValueError(f"the pre-sign session of {out_contract_code!r} expired after 2 hours")
        request = pre_sign.request
        if pre_sign.scene == "pay-redirect-sign":
            order = self.payments.order_by_prepay_id(request["prepay_id"])
            if order is None or order.trade_state not in ("SUCCESS", "REFUND"):
                raise ValueError(
                    "the contract is offered after payment: pay the pre-signed order first"
                )
        contract = {
            "mchid": self.payments.mchid,
            "contract_id": "3" + digits(27),
            "appid": request.get("appid") or request.get("sp_appid"),
            "openid": request.get("openid") or request.get("sp_openid") or openid,
            "service_id": request["service_id"],
            "out_contract_code": out_contract_code,
            "contract_display_account": request["contract_display_account"],
            "contract_state": "SIGNED",
            "contract_signed_time": self._time(self._now()),
        }
        for optional in ("sub_mchid", "sub_appid", "sub_openid"):
            if request.get(optional):
                contract[optional] = request[optional]
        if request.get("sub_appid") and "sub_openid" not in contract:
            contract["sub_openid"] = openid  # the user, as the sub-merchant's app knows them
        pre_sign.contract = contract
        self.payments.notify(request["notify_url"], "ENTRUST.SIGN", contract, "签约成功", "entrust")
        return dict(contract)

    def _contract(self, path: Mapping[str, str]) -> tuple[PreSign, dict[str, Any]]:
        pre_sign = self.pre_signs.get(path["out_contract_code"])
        if (
            pre_sign is None
            or pre_sign.contract is None
            or str(pre_sign.contract["service_id"]) != path["service_id"]
        ):
            raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "签约协议不存在")
        return pre_sign, pre_sign.contract

    def query(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        return Reply(200, self._contract(path)[1])

    def terminate(self, request: RecordedRequest, path: Mapping[str, str]) -> Reply:
        body = require(request.json(), ("contract_termination_remark",))
        pre_sign, contract = self._contract(path)
        if contract["contract_state"] == "TERMINATED":
            raise ApiFailure(400, "INVALID_REQUEST", "协议已解约，不能重复解约")
        contract["contract_state"] = "TERMINATED"
        contract["contract_terminate_info"] = {
            "contract_termination_mode": "MERCHANT_API",
            "contract_terminated_time": self._time(self._now()),
            "contract_termination_remark": body["contract_termination_remark"],
        }
        self.payments.notify(
            pre_sign.request["notify_url"], "ENTRUST.TERMINATE", contract, "解约成功", "entrust"
        )
        return Reply(
            200,
            {
                "mchid": self.payments.mchid,
                "service_id": contract["service_id"],
                "out_contract_code": contract["out_contract_code"],
            },
        )
