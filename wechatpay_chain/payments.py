"""Client-side pay parameters: what a web page, mini program or app passes to WeChat to pay.

PROTOCOL.md section 12: the merchant key signs ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``
for JSAPI and mini programs, and ``appid\\ntimestamp\\nnoncestr\\nprepayid\\n`` (the bare
prepay_id) for apps. H5 and Native need no client signature.
"""

from __future__ import annotations

from .signing import Signer

__all__ = ["Payments"]


class Payments:
    """``wxpay.payments``: signed parameters for the client-side pay call."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

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
