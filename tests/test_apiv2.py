"""APIv2 (XML): every vector of tests/data/v2_vectors.json (PROTOCOL-V2.md), the request and
answer rules, and agreement with a second implementation written plainly from the rules."""

from __future__ import annotations

import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wechatpay_chain import apiv2
from wechatpay_chain.errors import (
    ApiError,
    ConfigError,
    DecryptionError,
    MalformedXmlError,
    MissingSignatureHeaderError,
    MissingSignError,
    SignatureMismatchError,
    UnsafeXmlError,
    VerificationError,
)
from wechatpay_chain.notifications import v2_failure, v2_success

DATA = Path(__file__).parent / "data"
DOCUMENT: dict[str, Any] = json.loads((DATA / "v2_vectors.json").read_text(encoding="utf-8"))
VECTORS: dict[str, dict[str, Any]] = {vector["id"]: vector for vector in DOCUMENT["vectors"]}
KEY = DOCUMENT["keys"]["apiv2_example"]


def _no_nonce() -> str:
    raise AssertionError("the fields already carry a nonce_str")


def _check_sign_vector(vector: dict[str, Any]) -> None:
    given_, expected = vector["input"], vector["expected"]
    assert apiv2.string_to_sign(given_["fields"]) == expected["string_a"]
    sign_type = given_.get("sign_type", "MD5")
    name = "paySign" if "paySign" in expected else "sign"
    assert apiv2.sign(given_["fields"], given_["key"], sign_type) == expected[name]


def _check_request(vector: dict[str, Any]) -> None:
    given_, expected = vector["input"], vector["expected"]
    body, sign_type = apiv2.prepare_request(
        given_["fields"], mchid="10000100", apiv2_key=given_["key"], sign_type=None, nonce=_no_nonce
    )
    assert body == expected["body"].encode()
    assert sign_type == given_["fields"].get("sign_type", "MD5")
    assert apiv2.string_to_sign(given_["fields"]) == expected.get(
        "string_a", apiv2.string_to_sign(given_["fields"])
    )
    if "headers" in expected:
        assert expected["headers"]["Content-Type"] == apiv2.CONTENT_TYPE


def _check_encode_values(vector: dict[str, Any]) -> None:
    for name, value in vector["input"]["values"].items():
        encoded = vector["expected"]["encoded"][name]
        assert apiv2.to_xml({name: value}) == f"<xml><{name}>{encoded}</{name}></xml>".encode()


def _check_encode_reject(vector: dict[str, Any]) -> None:
    for value in vector["input"]["values"]:
        with pytest.raises(ValueError, match="XML cannot carry"):
            apiv2.to_xml({"field": value})
    for name in vector["input"]["names"]:
        with pytest.raises(ValueError, match="not an XML element name"):
            apiv2.to_xml({name: "1"})


def _check_parse_flat(vector: dict[str, Any]) -> None:
    assert apiv2.parse_xml(vector["input"]["body"].encode()) == vector["expected"]["fields"]


def _check_parse_reject(vector: dict[str, Any]) -> None:
    expected_errors = {
        "xxe_external_entity": UnsafeXmlError,
        "internal_entity": UnsafeXmlError,
        "doctype_only": UnsafeXmlError,
        "duplicate_field": UnsafeXmlError,
        "nested_in_flat": UnsafeXmlError,
        "not_xml": MalformedXmlError,
    }
    bodies = vector["input"]["bodies"]
    assert set(bodies) == set(expected_errors)
    for name, body in bodies.items():
        with pytest.raises(expected_errors[name]):
            apiv2.parse_xml(body.encode())


def _answer(vector: dict[str, Any], *, signed: bool = True) -> dict[str, Any]:
    given_ = vector["input"]
    return apiv2.check_answer(
        given_["body"].encode(),
        apiv2_key=given_["key"],
        sign_type=given_["request_sign_type"],
        signed=signed,
        status=200,
        headers={"Request-ID": "08F0"},
    )


def _check_response(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    verdict = expected["verdict"]
    if verdict == "ok":
        fields = _answer(vector)
        if "fields" in expected:
            assert fields == expected["fields"]
        algorithm = vector["input"]["request_sign_type"]
        assert apiv2.sign(fields, KEY, algorithm) == expected["computed_sign"]
    elif verdict in ("sign_mismatch", "sign_type_mismatch"):
        with pytest.raises(SignatureMismatchError):
            _answer(vector)
        fields = apiv2.parse_xml(vector["input"]["body"].encode())
        if verdict == "sign_mismatch":
            assert apiv2.sign(fields, KEY) == expected["computed_sign"]
        else:  # a valid MD5 sign, refused because the request was HMAC-SHA256
            apiv2.verify(fields, KEY, "MD5")
    else:
        assert verdict == "api_error"
        with pytest.raises(ApiError) as raised:
            _answer(vector)
        error = raised.value
        assert (error.status, error.code, error.message) == (
            200,
            expected["code"],
            expected["message"],
        )
        assert error.detail == apiv2.parse_xml(vector["input"]["body"].encode())
        assert error.request_id == "08F0"
        assert expected["message"] in str(error)
        if expected["sign_checked"]:
            # Checked before the result: the same answer with a forged sign is a forgery.
            body = vector["input"]["body"].replace("F05E", "F05F")
            with pytest.raises(SignatureMismatchError):
                _answer({"input": dict(vector["input"], body=body)})


def _check_unsigned_endpoint(vector: dict[str, Any]) -> None:
    given_ = {"input": dict(vector["input"], request_sign_type="MD5")}
    for path, verdict in vector["expected"]["verdict"].items():
        signed = vector["input"]["paths"][path] == "signed"
        if verdict == "ok":
            assert _answer(given_, signed=signed)["payment_no"] == "1000018301201707200040617856"
        else:
            with pytest.raises(MissingSignError) as raised:
                _answer(given_, signed=signed)
            assert isinstance(raised.value, MissingSignatureHeaderError)


def _check_notify_pay(vector: dict[str, Any]) -> None:
    fields = apiv2.parse_xml(vector["input"]["body"].encode())
    algorithm = fields.get("sign_type", "MD5")
    apiv2.verify(fields, vector["input"]["key"], algorithm)
    assert (
        apiv2.sign(fields, vector["input"]["key"], algorithm) == vector["expected"]["computed_sign"]
    )
    if "ack" in vector["expected"]:
        assert v2_success().body == vector["expected"]["ack"].encode()
        assert v2_failure("签名失败").body == vector["expected"]["nack_example"].encode()


def _check_notify_refund(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    envelope = apiv2.parse_xml(vector["input"]["body"].encode())
    assert envelope["req_info"] == expected["req_info"]
    assert apiv2.req_info_key(vector["input"]["apiv2_key"]) == expected["aes_key_ascii"].encode()
    decrypted = apiv2.decrypt_req_info(envelope["req_info"], vector["input"]["apiv2_key"])
    assert decrypted == apiv2.parse_xml(expected["plaintext"].encode(), root="root")
    assert decrypted["refund_status"] == "SUCCESS"


def _check_aes(vector: dict[str, Any]) -> None:
    key = vector["input"]["key"].encode()
    plaintext = vector["input"]["plaintext"].encode()
    ciphertext = vector["expected"]["ciphertext"]
    assert apiv2.aes_ecb_encrypt(plaintext, key) == ciphertext
    assert apiv2.aes_ecb_decrypt(ciphertext, key) == plaintext
    if "ciphertext_bytes" in vector["expected"]:
        # AXIOS drops the full padding block; strict unpadding refuses that form.
        with pytest.raises(DecryptionError):
            apiv2.aes_ecb_decrypt(apiv2.aes_ecb_encrypt(plaintext, key)[:22] + "==", key)


def _check_key_derivation(vector: dict[str, Any]) -> None:
    for key, expected in vector["expected"]["md5_hex"].items():
        assert apiv2.req_info_key(key) == expected.encode()


def _check_jsapi(vector: dict[str, Any]) -> None:
    fields = vector["input"]["fields"]
    params = apiv2.jsapi_params(
        fields["appId"],
        fields["package"].removeprefix("prepay_id="),
        vector["input"]["key"],
        vector["input"]["sign_type"],
        clock=lambda: float(fields["timeStamp"]),
        nonce=lambda: str(fields["nonceStr"]),
    )
    assert params["paySign"] == vector["expected"]["paySign"]
    assert params == {**fields, "paySign": vector["expected"]["paySign"]}
    if "bridge_params" in vector["expected"]:
        assert params == vector["expected"]["bridge_params"]
    _check_sign_vector(vector)


def _check_app(vector: dict[str, Any]) -> None:
    fields = vector["input"]["fields"]
    params = apiv2.app_params(
        fields["appid"],
        fields["prepayid"],
        fields["partnerid"],
        vector["input"]["key"],
        clock=lambda: float(fields["timestamp"]),
        nonce=lambda: str(fields["noncestr"]),
    )
    assert params == {**fields, "sign": vector["expected"]["sign"]}
    _check_sign_vector(vector)


def _check_entrustweb_url(vector: dict[str, Any]) -> None:
    _check_sign_vector(vector)
    url = apiv2.signed_url(
        "https://api.mch.weixin.qq.com", "v2/papay/entrustweb", vector["input"]["fields"], KEY
    )
    assert url == vector["expected"]["url"]


def _check_sandbox(vector: dict[str, Any]) -> None:
    body, _ = apiv2.prepare_request(
        vector["input"]["fields"],
        mchid="10000100",
        apiv2_key=vector["input"]["key"],
        sign_type=None,
        nonce=_no_nonce,
    )
    assert body == vector["expected"]["body"].encode()


def _check_ack(vector: dict[str, Any]) -> None:
    assert v2_success().body == vector["expected"]["success"].encode()
    assert v2_failure("签名失败").body == vector["expected"]["failure_example"].encode()
    assert (v2_success().status, v2_success().content_type) == (200, "text/xml")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "sign.official.md5": _check_sign_vector,
    "sign.official.hmac_sha256": _check_sign_vector,
    "sign.sign_type_is_signed.hmac": _check_sign_vector,
    "sign.sign_type_is_signed.md5": _check_sign_vector,
    "sign.ordering_empty_sign": _check_sign_vector,
    "sign.raw_utf8_values": _check_sign_vector,
    "request.micropay.md5": _check_request,
    "request.unifiedorder.hmac_cdata": _check_request,
    "xml.encode.values": _check_encode_values,
    "xml.encode.reject": _check_encode_reject,
    "xml.parse.flat": _check_parse_flat,
    "xml.parse.reject": _check_parse_reject,
    "response.micropay.valid": _check_response,
    "response.micropay.tampered": _check_response,
    "response.return_code_fail": _check_response,
    "response.result_code_fail": _check_response,
    "response.unifiedorder.hmac": _check_response,
    "response.unifiedorder.downgrade": _check_response,
    "response.unsigned_endpoint": _check_unsigned_endpoint,
    "notify.pay.md5": _check_notify_pay,
    "notify.pay.hmac": _check_notify_pay,
    "notify.refund.req_info": _check_notify_refund,
    "aes.ecb.php_fixture": _check_aes,
    "aes.ecb.full_padding_block": _check_aes,
    "aes.key_derivation": _check_key_derivation,
    "paysign.jsapi.official_md5": _check_jsapi,
    "paysign.jsapi.hmac": _check_jsapi,
    "paysign.app.md5": _check_app,
    "papay.entrustweb.third_party": _check_sign_vector,
    "papay.entrustweb.url": _check_entrustweb_url,
    "sandbox.getsignkey.request": _check_sandbox,
    "ack.bytes": _check_ack,
}


def test_every_vector_has_a_check() -> None:
    assert set(VECTORS) == set(CHECKS)


@pytest.mark.parametrize("vector_id", sorted(VECTORS))
def test_vector(vector_id: str) -> None:
    CHECKS[vector_id](VECTORS[vector_id])


# -- prepare_request ---------------------------------------------------------------------------


def _prepare(fields: dict[str, Any], **options: Any) -> tuple[dict[str, str], str]:
    settings_: dict[str, Any] = {
        "mchid": "10000100",
        "apiv2_key": KEY,
        "sign_type": None,
        "nonce": lambda: "N" * 32,
    }
    settings_.update(options)
    body, sign_type = apiv2.prepare_request(fields, **settings_)
    return apiv2.parse_xml(body), sign_type


def test_prepare_request_copies_adds_a_nonce_and_signs_last() -> None:
    fields: dict[str, Any] = {"mch_id": "10000100", "total_fee": 1, "goods_tag": None}
    sent, sign_type = _prepare(fields)
    assert fields == {"mch_id": "10000100", "total_fee": 1, "goods_tag": None}
    assert list(sent) == ["mch_id", "total_fee", "nonce_str", "sign"]
    assert (sent["total_fee"], sent["nonce_str"], sign_type) == ("1", "N" * 32, "MD5")
    apiv2.verify(sent, KEY, "MD5")


def test_prepare_request_leaves_out_the_nonce_where_the_endpoint_has_none() -> None:
    sent, _ = _prepare({"mch_id": "10000100"}, nonce_field=False, sign_types=frozenset())
    assert list(sent) == ["mch_id", "sign"]


@pytest.mark.parametrize("name", ["mch_id", "mchid", "combine_mch_id"])
def test_prepare_request_refuses_another_merchant(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _prepare({name: "1900000109"})


def test_prepare_request_never_fills_in_the_merchant() -> None:
    sent, _ = _prepare({"appid": "wx1"})
    assert not {"mch_id", "mchid", "combine_mch_id"} & set(sent)


def test_the_client_option_adds_sign_type_where_the_endpoint_has_it() -> None:
    sent, sign_type = _prepare({"mch_id": "10000100"}, sign_type="HMAC-SHA256")
    assert (sent["sign_type"], sign_type, len(sent["sign"])) == ("HMAC-SHA256", "HMAC-SHA256", 64)
    apiv2.verify(sent, KEY, "HMAC-SHA256")
    both = frozenset({"MD5", "HMAC-SHA256"})
    sent, _ = _prepare({"mch_id": "10000100"}, sign_type="HMAC-SHA256", sign_types=both)
    assert sent["sign_type"] == "HMAC-SHA256"


def test_the_client_option_does_not_apply_to_an_md5_only_endpoint() -> None:
    sent, sign_type = _prepare(
        {"mch_id": "10000100"}, sign_type="HMAC-SHA256", sign_types=frozenset()
    )
    assert ("sign_type" in sent, sign_type, len(sent["sign"])) == (False, "MD5", 32)


def test_an_hmac_only_endpoint_gets_hmac_by_default() -> None:
    sent, sign_type = _prepare({"mch_id": "10000100"}, sign_types=frozenset({"HMAC-SHA256"}))
    assert (sent["sign_type"], sign_type) == ("HMAC-SHA256", "HMAC-SHA256")


def test_a_field_and_an_option_that_disagree_are_an_error() -> None:
    with pytest.raises(ConfigError, match="sign_type"):
        _prepare({"sign_type": "MD5"}, sign_type="HMAC-SHA256")
    with pytest.raises(ValueError, match="sign_type"):
        _prepare({"sign_type": "SHA1"})
    with pytest.raises(ValueError, match="sign_type"):
        _prepare({}, sign_type="RSA")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (1.5, TypeError),
        (b"bytes", TypeError),
        (["a"], TypeError),
        (" padded", ValueError),
        ("padded\n", ValueError),
        ("emoji \U0001f600", ValueError),
        ("bell\x07", ValueError),
    ],
)
def test_prepare_request_refuses_values(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        _prepare({"attach": value})


def test_prepare_request_refuses_a_sign_and_a_missing_key() -> None:
    with pytest.raises(ValueError, match="sign"):
        _prepare({"sign": "X"})
    with pytest.raises(ConfigError, match="apiv2_key"):
        _prepare({}, apiv2_key="")
    with pytest.raises(ValueError, match="32"):
        _prepare({}, nonce=lambda: "n" * 33)


# -- check_answer and parse_xml ------------------------------------------------------------------


def _signed_answer(fields: dict[str, str], sign_type: str = "MD5") -> bytes:
    return apiv2.to_xml({**fields, "sign": apiv2.sign(fields, KEY, sign_type)})


def _check(body: bytes, *, signed: bool = True, status: int = 200) -> dict[str, Any]:
    return apiv2.check_answer(
        body, apiv2_key=KEY, sign_type="MD5", signed=signed, status=status, headers={}
    )


def test_a_non_xml_answer_is_an_api_error_with_the_raw_body() -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    with pytest.raises(ApiError) as raised:
        _check(page, status=502)
    assert (raised.value.status, raised.value.body, raised.value.code) == (502, page, None)
    with pytest.raises(ApiError):
        _check(b"", status=200)


def test_a_non_2xx_xml_answer_is_an_api_error() -> None:
    body = _signed_answer({"return_code": "SUCCESS", "result_code": "SUCCESS"})
    with pytest.raises(ApiError) as raised:
        _check(body, status=500)
    assert raised.value.status == 500


def test_an_unsafe_answer_is_refused_not_read() -> None:
    body = b'<!DOCTYPE xml [<!ENTITY a "SUCCESS">]><xml><return_code>&a;</return_code></xml>'
    with pytest.raises(UnsafeXmlError) as raised:
        _check(body, signed=False)
    assert isinstance(raised.value, VerificationError)


def test_a_bill_error_uses_error_code() -> None:
    body = (
        b"<xml><return_code>FAIL</return_code><return_msg>No Bill Exist</return_msg>"
        b"<error_code>20002</error_code></xml>"
    )
    with pytest.raises(ApiError) as raised:
        _check(body, signed=False)
    assert (raised.value.code, raised.value.message) == ("20002", "No Bill Exist")
    assert "20002" in str(raised.value)


def test_an_unsigned_endpoint_may_nest_a_signed_one_may_not() -> None:
    body = (
        b"<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code>"
        b"<hblist><hbinfo><openid>o1</openid></hbinfo><hbinfo><openid>o2</openid></hbinfo>"
        b"</hblist></xml>"
    )
    fields = _check(body, signed=False)
    assert fields["hblist"] == {"hbinfo": [{"openid": "o1"}, {"openid": "o2"}]}
    with pytest.raises(UnsafeXmlError):
        _check(body)


def test_parse_xml_is_bounded_and_strict() -> None:
    with pytest.raises(MalformedXmlError, match="over 10"):
        apiv2.parse_xml(b"<xml><a>1</a></xml>", max_size=10)
    with pytest.raises(MalformedXmlError, match="root"):
        apiv2.parse_xml(b"<root><a>1</a></root>")
    with pytest.raises(UnsafeXmlError):
        apiv2.parse_xml(b"<?xml-stylesheet href='x'?><xml><a>1</a></xml>")
    with pytest.raises(UnsafeXmlError):
        apiv2.parse_xml(b"<xml>loose<a>1</a></xml>")
    assert apiv2.parse_xml(b'<?xml version="1.0" encoding="UTF-8"?>\n<xml><a>1</a></xml>') == {
        "a": "1"
    }
    with pytest.raises(TypeError):
        apiv2.parse_xml("<xml/>")  # type: ignore[call-overload]


def test_decrypt_req_info_refuses_forgeries() -> None:
    good = apiv2.encrypt_req_info({"out_refund_no": "R1", "refund_status": "SUCCESS"}, KEY)
    assert apiv2.decrypt_req_info(good, KEY) == {"out_refund_no": "R1", "refund_status": "SUCCESS"}
    for forged in ("not base64!", "", "QUJD", apiv2.aes_ecb_encrypt(b"<xml/>", b"k" * 32)):
        with pytest.raises(DecryptionError):
            apiv2.decrypt_req_info(forged, KEY)
    with pytest.raises(DecryptionError):
        apiv2.decrypt_req_info(good, "another key")


def test_is_xml_tells_a_bill_from_an_error() -> None:
    assert apiv2.is_xml(b"  <xml><return_code>")
    assert apiv2.is_xml(b'<?xml version="1.0"?><xml>')
    assert not apiv2.is_xml("交易时间,公众账号ID".encode())
    assert not apiv2.is_xml(b"\x1f\x8b\x08\x00")


# -- a second implementation, written plainly from PROTOCOL-V2 section 2 -------------------------


def plain_sign(params: dict[str, str], key: str, algorithm: str) -> str:
    kept = sorted((name, value) for name, value in params.items() if name != "sign" and value)
    text = "&".join(name + "=" + value for name, value in kept) + "&key=" + key
    if algorithm == "MD5":
        return hashlib.md5(text.encode("utf-8")).hexdigest().upper()  # noqa: S324
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def plain_xml(params: dict[str, str]) -> bytes:
    out = "<xml>"
    for name, value in params.items():
        out += (
            "<"
            + name
            + "><![CDATA["
            + value.replace("]]>", "]]]]><![CDATA[>")
            + "]]></"
            + name
            + ">"
        )
    return (out + "</xml>").encode("utf-8")


def plain_parse(body: bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(body)}  # noqa: S314


NAMES = st.text(alphabet="abcdefgxyzABZ_", min_size=1, max_size=8).filter(
    lambda name: name[0] != "_" and name not in ("sign", "nonce_str", "sign_type", "mch_id")
)
VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), min_size=0, max_size=16
).map(str.strip)
FIELDS = st.dictionaries(NAMES, VALUES, max_size=8)
ALGORITHMS = st.sampled_from(["MD5", "HMAC-SHA256"])


@settings(max_examples=60, deadline=None)
@given(fields=FIELDS, algorithm=ALGORITHMS)
def test_the_plain_implementation_accepts_what_the_library_signs(
    fields: dict[str, str], algorithm: str
) -> None:
    body, used = apiv2.prepare_request(
        {"mch_id": "10000100", **fields},
        mchid="10000100",
        apiv2_key=KEY,
        sign_type=algorithm,
        nonce=lambda: "0123456789abcdef0123456789abcdef",
    )
    received = plain_parse(body)
    assert used == algorithm
    assert received["sign"] == plain_sign(received, KEY, algorithm)
    added = {"nonce_str", "sign"} | ({"sign_type"} if algorithm == "HMAC-SHA256" else set())
    sent = {name: value for name, value in received.items() if name not in added}
    assert sent == {
        name: value for name, value in {"mch_id": "10000100", **fields}.items() if value
    }


@settings(max_examples=60, deadline=None)
@given(fields=FIELDS, algorithm=ALGORITHMS)
def test_the_library_accepts_what_the_plain_implementation_signs(
    fields: dict[str, str], algorithm: str
) -> None:
    answer = {"return_code": "SUCCESS", "result_code": "SUCCESS", **fields}
    answer["sign"] = plain_sign(answer, KEY, algorithm)
    body = plain_xml(answer)
    received = apiv2.check_answer(
        body, apiv2_key=KEY, sign_type=algorithm, signed=True, status=200, headers={}
    )
    assert received == answer
    other = "MD5" if algorithm == "HMAC-SHA256" else "HMAC-SHA256"
    with pytest.raises(SignatureMismatchError):
        apiv2.check_answer(
            body, apiv2_key=KEY, sign_type=other, signed=True, status=200, headers={}
        )
    with pytest.raises(SignatureMismatchError):
        apiv2.check_answer(
            body, apiv2_key=KEY + "x", sign_type=algorithm, signed=True, status=200, headers={}
        )
