"""The typed surface (generated stubs): fresh, complete, and what a type checker makes of it.

The stubs are read by type checkers only, so the type-level cases run mypy itself over a
small file of calls, each line marked with the message it must produce (or none).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import mypy.api
import pytest

from wechatpay_chain.testing import FakeWeChatPay
from wechatpay_chain.uri import attribute_segment

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ROOT_STUB = REPO / "wechatpay_chain" / "endpoints" / "_root.pyi"
SCHEMAS_STUB = REPO / "wechatpay_chain" / "endpoints" / "schemas.pyi"

#: Documented operations the stubs leave to the bracket spelling, and why (the generator
#: prints the same list).
UNTYPED = {
    # a capital letter: an attribute with one stands for a kebab-case segment
    ("POST", "/secapi/mch/addInstitutionsub"),
    ("POST", "/secapi/mch/modifyInstitutionsub"),
    ("POST", "/secapi/mch/queryInstitutionsub"),
    # a trailing slash: no attribute spells an empty segment
    ("POST", "/v3/applyment4sub/applyment/"),
    ("POST", "/v3/ecommerce/applyments/"),
    # the notifications WeChat Pay sends, not a call
    ("POST", "/v3/webhooks"),
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_stubs", REPO / "scripts" / "generate_stubs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up while the module runs
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def _operations() -> list[tuple[str, str]]:
    lines = (DATA / "operations.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    assert rows[0] == ["METHOD", "PATH"]
    return [(method, path) for method, path in rows[1:]]


def _segments(path: str) -> tuple[str, ...]:
    """The chain's segments for a documented path: v2 paths sit under ``wxpay.v2``."""
    segments = tuple(path[1:].split("/"))
    return segments if segments[0] in ("v3", "hk", "global") else ("v2", *segments)


# -- fresh ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stub", [ROOT_STUB, SCHEMAS_STUB], ids=lambda path: path.name)
def test_the_stubs_are_generated_from_this_description_and_generator(stub: Path) -> None:
    generator = _generator()
    assert generator.recorded_digest(stub) == generator.input_digest(), (
        f"{stub.name} is stale: run scripts/generate_stubs.py"
    )


@pytest.mark.parametrize("stub", [ROOT_STUB, SCHEMAS_STUB], ids=lambda path: path.name)
def test_the_stubs_keep_the_descriptions_licence(stub: Path) -> None:
    head = stub.read_text(encoding="utf-8")[:3000]
    assert "Copyright (c) 2020-present James ZHANG" in head
    assert "TheNorthMemory/wechatpay-openapi" in head
    assert "Permission is hereby granted, free of charge" in head


def test_a_changed_input_changes_the_digest(tmp_path: Path) -> None:
    generator = _generator()
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "swagger.yaml").write_text("paths: {}\n", encoding="utf-8")
    script = tmp_path / "generate.py"
    script.write_text("# v1\n", encoding="utf-8")
    before = generator.input_digest(spec, script)
    (spec / "swagger.yaml").write_text("paths: {x: 1}\n", encoding="utf-8")
    assert generator.input_digest(spec, script) != before
    (spec / "swagger.yaml").write_text("paths: {}\n", encoding="utf-8")
    assert generator.input_digest(spec, script) == before
    script.write_text("# v2\n", encoding="utf-8")
    assert generator.input_digest(spec, script) != before


# -- complete ---------------------------------------------------------------------------------


def _stub_classes() -> dict[str, tuple[dict[str, str], set[str]]]:
    """Each class of ``_root.pyi``: its properties (attribute -> class) and its verbs."""
    tree = ast.parse(ROOT_STUB.read_text(encoding="utf-8"))
    classes: dict[str, tuple[dict[str, str], set[str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        properties: dict[str, str] = {}
        verbs: set[str] = set()
        for member in node.body:
            if isinstance(member, ast.FunctionDef) and member.decorator_list:
                assert isinstance(member.returns, ast.Name)
                properties[member.name] = member.returns.id
            elif isinstance(member, ast.AsyncFunctionDef) and member.name != "request":
                verbs.add(member.name.upper())
        classes[node.name] = (properties, verbs)
    return classes


def test_every_property_spells_its_segment_and_every_documented_call_is_typed() -> None:
    classes = _stub_classes()
    # node class -> {segment -> child class}, through the chain's own attribute rule
    children = {
        name: {attribute_segment(attribute): child for attribute, child in properties.items()}
        for name, (properties, _) in classes.items()
    }
    for name, (properties, _) in classes.items():
        for attribute in properties:
            assert attribute.isidentifier(), (name, attribute)
            assert not attribute.startswith("__"), (name, attribute)
    documented = _operations()
    reached: set[tuple[str, str]] = set()
    for method, path in documented:
        node = "TypedRoot"
        for segment in _segments(path):
            node = children[node].get(segment, "")
            if not node:
                break
        if node and method in classes[node][1]:
            reached.add((method, path))
    assert set(documented) - reached == UNTYPED
    # and no verb the description does not document
    verbs = sum(len(verbs) for _, verbs in classes.values())
    assert verbs == len(reached)


async def test_the_typed_spelling_reaches_the_documented_path_at_run_time() -> None:
    classes = _stub_classes()
    documented = {(method, path) for method, path in _operations()} - UNTYPED
    async with FakeWeChatPay() as server, server.client() as wxpay:
        for _method, path in sorted(documented):
            node: object = wxpay
            class_name = "TypedRoot"
            for segment in _segments(path):
                properties = classes[class_name][0]
                attribute = next(a for a in properties if attribute_segment(a) == segment)
                node = getattr(node, attribute)
                class_name = properties[attribute]
            # the same node as the bracket spelling of the documented path
            assert repr(node) == repr(wxpay["/".join(_segments(path))])


# -- what a type checker makes of it ----------------------------------------------------------

_NATIVE = (
    '{"appid": "wxd678efh567hg6787", "mchid": "1230000109", "description": "QQ公仔", '
    '"out_trade_no": "1217752501201407033233368018", "notify_url": "https://m.example/n", '
    '"amount": {"total": 100, "currency": "CNY"}}'
)
_PRE_SIGN = (
    '{"appid": "wxd678efh567hg6787", "sub_appid": "wxd678efh567hg6787", '
    '"sub_mchid": "1900000110", "service_id": 12535, "out_contract_code": "c-1", '
    '"notify_url": "https://m.example/n", "contract_display_account": "A", '
    '"prepay_id": "wx201410272009395522657a690389285100"'
)
_SEED = "wxpay.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign"

# One case a line: the code, then "# E: <part of the error>", "# N: <part of the note>" or
# nothing (the line must type-check).
CASES = f"""\
from wechatpay_chain import Node, WeChatPay

async def cases(wxpay: WeChatPay) -> None:
    r = await {_SEED}.post(json={_PRE_SIGN}}})
    reveal_type(r.json()["out_contract_code"])  # N: Revealed type is "str"
    await {_SEED}.post(json={_PRE_SIGN}, "notify_ulr": "x"}})  # E: Extra key "notify_ulr"
    await {_SEED}.post(json={_PRE_SIGN}, "sub_openid": 1}})  # E: TypedDict item "sub_openid" has type "str"
    await {_SEED}.post(json={{"appid": "wx"}})  # E: Missing keys
    wxpay.v3.pay.transactons  # E: "V3Pay" has no attribute "transactons"
    wxpay.v3.pay.transactions.nativ  # E: has no attribute "nativ"
    n = await wxpay.v3.pay.transactions.native.post(json={_NATIVE})
    reveal_type(n.json()["code_url"])  # N: Revealed type is "str"
    await wxpay.v3.pay.transactions.native.post(json={{**{_NATIVE}, "amount": {{"total": "100"}}}})  # E: TypedDict item "total" has type "int"
    await wxpay.v3.pay.transactions.native.get()  # E: has no attribute "get"
    t = wxpay.v3.pay.transactions.outTradeNo._out_trade_no_
    await t.get(out_trade_no="1217752501201407033233368018", params={{"mchid": "1230000109"}})
    await t.get(params={{"mchid": "1230000109"}})  # E: Missing named argument "out_trade_no"
    await t.get(out_trade_no=1217752501201407033233368018)  # E: has incompatible type "int"; expected "str"
    reveal_type(await t.close.post(out_trade_no="1", json={{"mchid": "1"}}))  # N: Response[None]
    await wxpay.v3.profitsharing.receivers.delete_.post(json={{"appid": "wx", "type": "MERCHANT_ID", "account": "1"}})
    await wxpay.v3.merchant.media.upload.post(file=b"png", filename="a.png")
    await wxpay.v3.merchant.media.upload.post(filename="a.png")  # E: Missing named argument "file"
    await wxpay.v3.pay.transactions.native.post(data=b"{{}}")
    await wxpay.v3.pay.transactions.native.request("POST", json={{"anything": 1}})
    reveal_type(wxpay["v3/pay/transactions/native"])  # N: Revealed type is "wechatpay_chain.chain.Node"
    reveal_type(wxpay.chain("v3/x"))  # N: Revealed type is "wechatpay_chain.chain.Node"
    reveal_type(wxpay.v3.pay["transactons"])  # N: Revealed type is "wechatpay_chain.chain.Node"
    x: Node = wxpay.v3["x/y"]
    await wxpay.hk.v3.transactions.app.post(json={{"anything": 1}})  # E: Extra key "anything"
    await wxpay.global_.v3.customs.orders.get(params={{"appid": "wx"}})
    await wxpay.v2.pay.micropay.post(xml={{"appid": "wx", "mch_id": "1", "body": "b", "out_trade_no": "o", "total_fee": "1", "spbill_create_ip": "127.0.0.1", "auth_code": "1"}})
    await wxpay.v2.pay.micropay.post(xml={{"appid": "wx", "auth_cod": "1"}})  # E: Extra key "auth_cod"
    reveal_type(wxpay.v2.pay.micropay.post)  # N: def (*, xml:
"""


def test_mypy_checks_paths_bodies_placeholders_and_answers(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    sample = tmp_path / "typed_calls.py"
    sample.write_text(CASES, encoding="utf-8")
    # A cache kept between runs (pytest's own cache directory): the first run reads the
    # stubs (a few seconds), later ones reuse them.
    pytest_cache = getattr(pytestconfig, "cache", None)  # absent with -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy") if pytest_cache is not None else tmp_path / "cache"
    stdout, stderr, _ = mypy.api.run(
        [
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            "--config-file",
            "",
            str(sample),
        ]
    )
    assert not stderr, stderr
    found: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        # By file name: mypy replays the messages of an unchanged module from its cache,
        # with the path it had when they were recorded (another run's tmp_path).
        match = re.match(r"(?:.*[\\/])?typed_calls\.py:(\d+): (?:error|note): (.*)", line)
        if match:
            # mypy 1 says "builtins.str", mypy 2 "str"
            message = match.group(2).replace("builtins.", "")
            found.setdefault(int(match.group(1)), []).append(message)
    expected: dict[int, str] = {}
    for number, line in enumerate(CASES.splitlines(), 1):
        marker = re.search(r"# [EN]: (.*)$", line)
        if marker:
            expected[number] = marker.group(1)
    missing = {
        number: (wanted, found.get(number))
        for number, wanted in expected.items()
        if not any(wanted in message for message in found.get(number, []))
    }
    unexpected = {number: found[number] for number in found.keys() - expected.keys()}
    assert (missing, unexpected) == ({}, {})
