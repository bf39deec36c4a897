"""Notification parsing rate next to its physical floor: one RSA verify plus one AES-GCM
decrypt of the same notification, measured in the same run.

Target (issue 3): parsing at least 0.8 of the floor's rate.
"""

from __future__ import annotations

import base64
import json

from _report import interleaved, report
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wechatpay_chain.crypto import apiv3_key_bytes
from wechatpay_chain.notifications import verify_and_decrypt
from wechatpay_chain.testing import FakeWeChatPay
from wechatpay_chain.verifying import Verifier

TRANSACTION = {
    "appid": "wxd678efh567hg6787",
    "mchid": "1900000109",
    "out_trade_no": "1217752501201407033233368018",
    "transaction_id": "4200000000000000000000000000",
    "trade_type": "JSAPI",
    "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功",
    "bank_type": "OTHERS",
    "success_time": "2026-11-27T10:00:00+08:00",
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
}


def main() -> None:
    server = FakeWeChatPay()
    headers, body = server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=TRANSACTION, summary="支付成功"
    )
    verifier = Verifier({server.public_key_id: server.public_key_pem})
    # The cipher is made once, as wxpay.notifications does.
    key = AESGCM(apiv3_key_bytes(server.apiv3_key))
    public_key = verifier.public_keys[server.public_key_id]
    resource = json.loads(body)["resource"]
    message = (
        f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    )
    signature = base64.b64decode(headers["Wechatpay-Signature"])
    aes = key
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    nonce, associated_data = resource["nonce"].encode(), resource["associated_data"].encode()
    ciphertext = resource["ciphertext"]

    def library() -> None:
        verify_and_decrypt(headers, body, verifier=verifier, apiv3_key=key)

    def floor() -> bytes:
        public_key.verify(signature, message, pkcs1, sha256)
        return aes.decrypt(nonce, base64.b64decode(ciphertext), associated_data)

    def floor_and_json() -> None:
        # What any parser must add: reading the envelope and the decrypted resource.
        json.loads(body)
        json.loads(floor())

    cases = {"library": library, "floor": floor, "floor_and_json": floor_and_json}
    for case in cases.values():
        case()
    seconds = interleaved(cases, rounds=15, per_round=200)
    ratio = seconds["floor"] / seconds["library"]
    ratio_json = seconds["floor_and_json"] / seconds["library"]
    report(
        "notifications",
        [
            (
                "verify_and_decrypt",
                f"{1 / seconds['library']:>9,.0f} /s  ({seconds['library'] * 1e6:.1f} us each)",
            ),
            (
                "RSA verify + AES-GCM (floor)",
                f"{1 / seconds['floor']:>9,.0f} /s  ({seconds['floor'] * 1e6:.1f} us each)",
            ),
            (
                "floor + stdlib JSON of envelope and resource",
                f"{1 / seconds['floor_and_json']:>9,.0f} /s  ({seconds['floor_and_json'] * 1e6:.1f} us each)",
            ),
            ("ratio library / floor", f"{ratio:.2f}  (target >= 0.80)"),
            ("ratio library / (floor + JSON)", f"{ratio_json:.2f}"),
        ],
        {
            "library_per_second": 1 / seconds["library"],
            "floor_per_second": 1 / seconds["floor"],
            "floor_and_json_per_second": 1 / seconds["floor_and_json"],
            "ratio": ratio,
            "ratio_with_json": ratio_json,
        },
    )


if __name__ == "__main__":
    main()
