"""A small application module that uses twenty typed paths: what ``time_typing.py`` asks mypy
to check, cold and warm. It is also checked with the rest of the project (mypy --strict)."""

from __future__ import annotations

from wechatpay_chain import WeChatPay

MCHID = "1230000109"
APPID = "wxd678efh567hg6787"


async def twenty_paths(wxpay: WeChatPay) -> list[object]:
    answers: list[object] = []
    transactions = wxpay.v3.pay.transactions
    native = await transactions.native.post(
        json={
            "appid": APPID,
            "mchid": MCHID,
            "description": "QQ公仔",
            "out_trade_no": "1217752501201407033233368018",
            "notify_url": "https://merchant.example/notify",
            "amount": {"total": 100},
        }
    )
    answers.append(native.json()["code_url"])
    jsapi = await transactions.jsapi.post(
        json={
            "appid": APPID,
            "mchid": MCHID,
            "description": "QQ公仔",
            "out_trade_no": "1217752501201407033233368019",
            "notify_url": "https://merchant.example/notify",
            "amount": {"total": 100, "currency": "CNY"},
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        }
    )
    answers.append(jsapi.json()["prepay_id"])
    query = await transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="1217752501201407033233368018", params={"mchid": MCHID}
    )
    answers.append(query.json().get("trade_state"))
    by_id = await transactions.id._transaction_id_.get(
        transaction_id="4200000000000000000000000000", params={"mchid": MCHID}
    )
    answers.append(by_id.json()["out_trade_no"])
    await transactions.outTradeNo._out_trade_no_.close.post(
        out_trade_no="1217752501201407033233368018", json={"mchid": MCHID}
    )
    refund = await wxpay.v3.refund.domestic.refunds.post(
        json={
            "out_trade_no": "1217752501201407033233368018",
            "out_refund_no": "1217752501201407033233368020",
            "amount": {"refund": 100, "total": 100, "currency": "CNY"},
        }
    )
    answers.append(refund.json()["status"])
    refund_query = await wxpay.v3.refund.domestic.refunds._out_refund_no_.get(
        out_refund_no="1217752501201407033233368020"
    )
    answers.append(refund_query.json()["amount"]["refund"])
    bill = await wxpay.v3.bill.tradebill.get(params={"bill_date": "2026-11-27"})
    answers.append(bill.json()["download_url"])
    fund_bill = await wxpay.v3.bill.fundflowbill.get(params={"bill_date": "2026-11-27"})
    answers.append(fund_bill.json()["hash_value"])
    certificates = await wxpay.v3.certificates.get()
    answers.append(certificates.json())
    upload = await wxpay.v3.merchant.media.upload.post(file=b"\x89PNG", filename="a.png")
    answers.append(upload.json()["media_id"])
    sharing = await wxpay.v3.profitsharing.orders.post(
        json={
            "appid": APPID,
            "transaction_id": "4200000000000000000000000000",
            "out_order_no": "P20150806125346",
            "receivers": [
                {"type": "MERCHANT_ID", "account": "86693852", "amount": 888, "description": "分账"}
            ],
            "unfreeze_unsplit": True,
        }
    )
    answers.append(sharing.json()["order_id"])
    receivers = await wxpay.v3.profitsharing.receivers.add.post(
        json={
            "appid": APPID,
            "type": "MERCHANT_ID",
            "account": "86693852",
            "relation_type": "STORE",
        }
    )
    answers.append(receivers.json())
    await wxpay.v3.profitsharing.receivers.delete_.post(
        json={"appid": APPID, "type": "MERCHANT_ID", "account": "86693852"}
    )
    pre_sign = (
        await wxpay.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign.post(
            json={
                "appid": APPID,
                "sub_appid": APPID,
                "sub_mchid": "1900000110",
                "service_id": 12535,
                "out_contract_code": "c-1",
                "notify_url": "https://merchant.example/notify",
                "contract_display_account": "A",
                "prepay_id": "wx201410272009395522657a690389285100",
            }
        )
    )
    answers.append(pre_sign.json()["out_contract_code"])
    partner = await wxpay.v3.pay.partner.transactions.native.post(
        json={
            "sp_appid": APPID,
            "sp_mchid": MCHID,
            "sub_mchid": "1900000110",
            "description": "QQ公仔",
            "out_trade_no": "1217752501201407033233368021",
            "notify_url": "https://merchant.example/notify",
            "amount": {"total": 100},
        }
    )
    answers.append(partner.json()["code_url"])
    combine = await wxpay.v3.combineTransactions.outTradeNo._combine_out_trade_no_.get(
        combine_out_trade_no="P20150806125346"
    )
    answers.append(combine.json().get("sub_orders"))
    transfer = await wxpay.v3.fundApp.mchTransfer.transferBills.post(
        json={
            "appid": APPID,
            "out_bill_no": "plfk2020042013",
            "transfer_scene_id": "1000",
            "openid": "o-MYE42l80oelYMDE34nYD456Xoy",
            "transfer_amount": 400000,
            "transfer_remark": "新会员开通有礼",
            "transfer_scene_report_infos": [
                {"info_type": "活动名称", "info_content": "新会员有礼"}
            ],
        }
    )
    answers.append(transfer.json()["state"])
    hk_order = await wxpay.hk.v3.transactions.outTradeNo._out_trade_no_.get(
        out_trade_no="1217752501201407033233368018", params={"sub_mchid": "1900000110"}
    )
    answers.append(hk_order.json())
    micropay = await wxpay.v2.pay.micropay.post(
        xml={
            "appid": APPID,
            "mch_id": MCHID,
            "body": "QQ公仔",
            "out_trade_no": "1217752501201407033233368022",
            "total_fee": "100",
            "spbill_create_ip": "127.0.0.1",
            "auth_code": "120061098828009406",
        }
    )
    answers.append(micropay.json())
    return answers
