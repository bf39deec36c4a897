"""The endpoint table: generated from scripts/wechatpay-openapi, current, and read correctly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from wechatpay_chain.endpoints import EndpointFacts, endpoint_facts
from wechatpay_chain.endpoints import _table as table

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "generate_endpoint_table.py"


def _generator() -> ModuleType:
    # The digest needs only hashlib: no PyYAML at test time.
    spec = importlib.util.spec_from_file_location("generate_endpoint_table", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_is_current() -> None:
    digest = _generator().input_digest()
    assert digest == table.INPUT_SHA256, (
        "the endpoint table is stale: run scripts/generate_endpoint_table.py"
    )
    header = (ROOT / "wechatpay_chain" / "endpoints" / "_table.py").read_text("utf-8")
    assert f"# input-sha256: {digest}" in header


def test_the_table_keeps_the_mit_notice() -> None:
    text = (ROOT / "wechatpay_chain" / "endpoints" / "_table.py").read_text("utf-8")
    assert "Copyright (c) 2020-present James ZHANG, TheNorthMemory/wechatpay-openapi" in text
    assert "Permission is hereby granted, free of charge" in text


def test_the_digest_covers_inputs_and_generator(tmp_path: Path) -> None:
    generator = _generator()
    source = tmp_path / "openapi"
    (source / "v2").mkdir(parents=True)
    (source / "v2" / "a.yaml").write_text("post: {}\n")
    script = tmp_path / "gen.py"
    script.write_text("# v1\n")
    first = generator.input_digest(source, script)
    (source / "v2" / "a.yaml").write_text("post: {x: 1}\n")
    second = generator.input_digest(source, script)
    script.write_text("# v2\n")
    third = generator.input_digest(source, script)
    (source / "v2" / "a.yaml").rename(source / "b.yaml")
    fourth = generator.input_digest(source, script)
    assert len({first, second, third, fourth}) == 4


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        (
            "POST",
            "v2/secapi/pay/refund",
            {"certificate_required": True, "unsigned": False, "api": "v2"},
        ),
        ("POST", "v2/pay/micropay", {"certificate_required": False, "unsigned": False}),
        (
            "POST",
            "v2/mmpaymkttransfers/promotion/transfers",
            {"certificate_required": True, "unsigned": True},
        ),
        (
            "POST",
            "v2/mmpaymkttransfers/sendredpack",
            {"certificate_required": True, "unsigned": True},
        ),
        ("POST", "v2/mmpaymkttransfers/queryworkwxredpack", {"unsigned": False}),
        ("POST", "v2/mmpaysptrans/pay_bank", {"unsigned": False}),  # signed in the description
        (
            "POST",
            "v2/pay/downloadbill",
            {"unsigned": True, "file_answer": True, "v2_sign_types": frozenset()},
        ),
        (
            "POST",
            "v2/pay/downloadfundflow",
            {
                "certificate_required": True,
                "file_answer": True,
                "v2_sign_types": frozenset({"HMAC-SHA256"}),
            },
        ),
        (
            "POST",
            "v2/pay/unifiedorder",
            {"v2_sign_types": frozenset({"MD5", "HMAC-SHA256"}), "v2_nonce": True},
        ),
        ("POST", "v2/papay/querycontract", {"v2_nonce": False, "v2_sign_types": frozenset()}),
        ("GET", "v2/papay/entrustweb", {"unsigned": True, "v2_nonce": False}),
        ("POST", "v2/risk/getpublickey", {"base_uri": "https://fraud.mch.weixin.qq.com/"}),
        ("GET", "v3/billdownload/file", {"unsigned": True, "file_answer": True, "api": "v3"}),
        ("GET", "v3/merchant-service/images/MEDIA123", {"unsigned": True, "file_answer": True}),
        ("GET", "v3/global/statements", {"unsigned": False, "file_answer": True}),
        ("POST", "v3/pay/transactions/native", {"unsigned": False, "file_answer": False}),
    ],
)
def test_known_facts(method: str, path: str, expected: dict[str, object]) -> None:
    facts = endpoint_facts(method, path)
    assert facts.known, path
    for name, value in expected.items():
        assert getattr(facts, name) == value, (path, name)


def test_placeholders_match_one_segment_and_literals_win() -> None:
    by_id = endpoint_facts("GET", ("v3", "pay", "transactions", "id", "4200000001"))
    assert by_id.operation == "GET v3/pay/transactions/id/{transaction_id}"
    templated = endpoint_facts("GET", ("v3", "pay", "transactions", "id", "{transaction_id}"))
    assert templated.operation == by_id.operation
    image_upload = endpoint_facts("POST", "/v3/merchant-service/images/upload")
    assert image_upload.operation == "POST v3/merchant-service/images/upload"
    assert not image_upload.unsigned
    assert endpoint_facts("GET", "v3/merchant-service/images/upload").unsigned  # a media_id
    assert endpoint_facts("GET", "v3/pay/transactions/id/4200000001/extra") == EndpointFacts(
        None, "v3"
    )


def test_an_unknown_operation_gets_safe_defaults() -> None:
    facts = endpoint_facts("POST", "v2/pay/somethingnew")
    assert facts == EndpointFacts(None, "v2")
    assert (facts.known, facts.unsigned, facts.certificate_required) == (False, False, False)
    assert endpoint_facts("DELETE", "v2/pay/micropay").known is False
    assert endpoint_facts("POST", "").known is False
