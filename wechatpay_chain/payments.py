"""Client-side pay parameters: what a web page, mini program or app passes to WeChat to pay.

PROTOCOL.md section 12: the merchant key signs ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``
for JSAPI and mini programs, and ``appid\\ntimestamp\\nnoncestr\\nprepayid\\n`` (the bare
prepay_id) for apps. H5 and Native need no client signature.
"""

from __future__ import annotations

from collections.abc import Mapping

from .apiv2 import app_params, jsapi_params, signed_url
from .errors import ConfigError
from .signing import Signer

__all__ = ["V2_PAGES_URL", "Payments"]

#: Where the signed APIv2 pages a user's browser opens live (papay ``entrustweb``...).
V2_PAGES_URL = "https://api.mch.weixin.qq.com"


class Payments:
    """``wxpay.payments``: signed parameters for the client-side pay call."""

    def __init__(
        self, signer: Signer, *, apiv2_key: str | None = None, pages_url: str = V2_PAGES_URL
    ) -> None:
        self._signer = signer
        self._apiv2_key = apiv2_key
        self._pages_url = pages_url

    def __repr__(self) -> str:
        return "<wechatpay_chain.Payments>"

    def _signed(self, *lines: str) -> str:
        return self._signer.sign("".join(line + "\n" for line in lines).encode())

    def jsapi(self, appid: str, prepay_id: str) -> dict[str, str]:
        """Parameters for ``WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`` and, without
        ``appId``, for ``wx.requestPayment`` in a mini program."""
        timestamp = str(int(self._signer.clock()))
        nonce = self._signer.nonce()
        package = f"prepay_id={prepay_id}"
        return {
            "appId": appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": self._signed(appid, timestamp, nonce, package),
        }

    def app(self, appid: str, prepay_id: str) -> dict[str, str]:
        """Parameters for the OpenSDK ``PayReq`` of an iOS or Android app."""
        timestamp = str(int(self._signer.clock()))
        nonce = self._signer.nonce()
        return {
            "appid": appid,
            "partnerid": self._signer.mchid,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": nonce,
            "timestamp": timestamp,
            "sign": self._signed(appid, timestamp, nonce, prepay_id),
        }

    # -- APIv2 (PROTOCOL-V2 sections 7 and 8) ---------------------------------------------------

    def _v2_key(self) -> str:
        if not self._apiv2_key:
            raise ConfigError("apiv2_key: APIv2 pay parameters are signed with the APIv2 key")
        return self._apiv2_key

    def jsapi_v2(self, appid: str, prepay_id: str, sign_type: str = "MD5") -> dict[str, str]:
        """``getBrandWCPayRequest`` / ``wx.requestPayment`` parameters for a prepay_id from
        the v2 ``unifiedorder``; ``sign_type`` must be the one that call used."""
        return jsapi_params(
            appid,
            prepay_id,
            self._v2_key(),
            sign_type,
            clock=self._signer.clock,
            nonce=self._signer.nonce,
        )

    def app_v2(self, appid: str, prepay_id: str, sign_type: str = "MD5") -> dict[str, str]:
        """The OpenSDK ``PayReq`` for a prepay_id from the v2 ``unifiedorder``."""
        return app_params(
            appid,
            prepay_id,
            self._signer.mchid,
            self._v2_key(),
            sign_type,
            clock=self._signer.clock,
            nonce=self._signer.nonce,
        )

    def v2_url(self, path: str, fields: Mapping[str, object]) -> str:
        """The signed URL of an APIv2 page the user's browser opens, such as
        ``v2/papay/entrustweb`` (the password-exempt contract's signing page)."""
        return signed_url(self._pages_url, path, fields, self._v2_key())
