"""The path chain, row by row of DESIGN.md's table, checked on the wire.

Each call goes to the fake server over loopback; the target it received is the proof. Paths
the fake server does not serve answer an API error, which is fine here: the request still
arrived and passed the server's signature check over that exact target (a target re-encoded
after signing would have been answered 401 SIGN_ERROR instead).
"""

from __future__ import annotations

import copy
import gc
import pickle
import tracemalloc
from collections.abc import Awaitable
from typing import Any

import pytest

from wechatpay_chain import ApiError, Node, Response, WeChatPay
from wechatpay_chain.testing import FakeWeChatPay, RecordedRequest, Reply


async def arrived(server: FakeWeChatPay, call: Awaitable[Response]) -> str:
    """Send ``call``; return the request target the server received."""
    before = len(server.requests)
    code = None
    try:
        await call
    except ApiError as error:
        code = error.code
    assert code != "SIGN_ERROR"  # the signed target differed from the sent one
    assert len(server.requests) == before + 1
    return server.requests[-1].target


@pytest.mark.parametrize(
    ("build", "target"),
    [
        # attribute: camelCase / PascalCase -> kebab-case
        (lambda w: w.v3.pay.transactions.outTradeNo, "/v3/pay/transactions/out-trade-no"),
        (lambda w: w.v3.pay.transactions.OutTradeNo, "/v3/pay/transactions/out-trade-no"),
        (
            lambda w: w.v3.passwordExemptContract.contracts.qs.preEntrustSign.payRedirectSign,
            "/v3/password-exempt-contract/contracts/qs/pre-entrust-sign/pay-redirect-sign",
        ),
        # underscores and digits are real segments
        (lambda w: w.v3.merchant.media.video_upload, "/v3/merchant/media/video_upload"),
        (lambda w: w.v3.applyment4sub.applyment, "/v3/applyment4sub/applyment"),
        # one trailing underscore dropped (keywords, and the verbs' own names)
        (lambda w: w.v3.global_.return_.import_.try_, "/v3/global/return/import/try"),
        (lambda w: w.v3.profitsharing.receivers.delete_, "/v3/profitsharing/receivers/delete"),
        (lambda w: w.v3.profitsharing.receivers.post_, "/v3/profitsharing/receivers/post"),
        # segments named like other helpers are plain segments on a node
        (lambda w: w.v3.pay.transactions.close, "/v3/pay/transactions/close"),
        (lambda w: w.v3.merchant.media.upload, "/v3/merchant/media/upload"),
        (lambda w: w.v3.bill.chain, "/v3/bill/chain"),
        # strings are split on "/" verbatim: no case folding ever
        (lambda w: w["v3/marketing/N123/AbC"], "/v3/marketing/N123/AbC"),
        (lambda w: w.chain("v3/marketing/N123/AbC"), "/v3/marketing/N123/AbC"),
        (lambda w: w.chain("/v3/pay/transactions/native"), "/v3/pay/transactions/native"),
        (lambda w: w.v3["marketing/N123"].busifavor, "/v3/marketing/N123/busifavor"),
        # the two real endpoints that end in "/" keep it
        (lambda w: w["v3/applyment4sub/applyment/"], "/v3/applyment4sub/applyment/"),
        (lambda w: w.chain("v3/ecommerce/applyments/"), "/v3/ecommerce/applyments/"),
        # values go straight into the chain, percent-encoded when sent
        (lambda w: w.v3.pay.transactions.id["4200000000"], "/v3/pay/transactions/id/4200000000"),
        (
            lambda w: w.v3.refund.domestic.refunds["退款 1"],
            "/v3/refund/domestic/refunds/%E9%80%80%E6%AC%BE%201",
        ),
        (lambda w: w.v3.x["a%b?c#d"], "/v3/x/a%25b%3Fc%23d"),
    ],
)
async def test_written_path_reaches_the_server_as(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, build: Any, target: str
) -> None:
    node = build(wechatpay_client)
    assert await arrived(wechatpay_server, node.get()) == target


async def test_placeholder_attribute_is_filled_by_keyword(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client.v3.pay.transactions.outTradeNo._out_trade_no_
    assert repr(node) == "<wechatpay_chain.Node 'v3/pay/transactions/out-trade-no/{out_trade_no}'>"
    target = await arrived(
        wechatpay_server, node.get(out_trade_no="T-1", params={"mchid": "1900000109"})
    )
    assert target == "/v3/pay/transactions/out-trade-no/T-1?mchid=1900000109"


async def test_placeholder_name_is_kept_as_written(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client.v3.things._thingId_  # type: ignore[attr-defined]
    assert await arrived(wechatpay_server, node.get(thingId="7")) == "/v3/things/7"


async def test_template_string_placeholders(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client[
        "v3/password-exempt-contract/contracts/service-id/{service_id}/out-contract-code/{out_contract_code}"
    ]
    target = await arrived(wechatpay_server, node.get(service_id=12535, out_contract_code="C 1/2"))
    assert (
        target
        == "/v3/password-exempt-contract/contracts/service-id/12535/out-contract-code/C%201%2F2"
    )


async def test_placeholder_values_are_one_segment_in_utf8(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client["v3/x/{value}"]
    assert (
        await arrived(wechatpay_server, node.get(value="a/b?c=d&e#f"))
        == "/v3/x/a%2Fb%3Fc%3Dd%26e%23f"
    )
    assert (
        await arrived(wechatpay_server, node.get(value="商户 🙂"))
        == "/v3/x/%E5%95%86%E6%88%B7%20%F0%9F%99%82"
    )
    # and the server decodes it back to exactly what was given
    assert wechatpay_server.requests[-1].path == "/v3/x/商户 🙂"


async def test_reserved_placeholder_is_inserted_as_is(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client["v3/x/{+encoded}"]
    assert (
        await arrived(wechatpay_server, node.get(encoded="already%2Fencoded"))
        == "/v3/x/already%2Fencoded"
    )


async def test_path_params_fill_names_that_collide_with_options(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    node = wechatpay_client["v3/x/{json}/{timeout}"]
    target = await arrived(
        wechatpay_server, node.post(json={"a": 1}, path_params={"json": "j", "timeout": 5})
    )
    assert target == "/v3/x/j/5"
    assert wechatpay_server.requests[-1].body == b'{"a":1}'


@pytest.mark.parametrize(
    ("path", "keywords", "message"),
    [
        ("v3/pay/transactions/id/{transaction_id}", {}, "unfilled placeholder 'transaction_id'"),
        (
            "v3/pay/transactions/id/{transaction_id}",
            {"transactionid": "1", "transaction_id": "2"},
            "no placeholder named 'transactionid'",
        ),
        ("v3/pay/transactions/native", {"mchid": "1900000109"}, "no placeholder named 'mchid'"),
        ("v3/x/{a}", {"a": None}, "takes a str or int"),
        ("v3/x/{a}", {"a": True}, "takes a str or int"),
    ],
)
async def test_bad_placeholder_keywords_raise_type_error_before_sending(
    wechatpay_server: FakeWeChatPay,
    wechatpay_client: WeChatPay,
    path: str,
    keywords: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(TypeError, match=message):
        await wechatpay_client[path].get(**keywords)
    assert wechatpay_server.requests == []


async def test_same_placeholder_twice_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(TypeError, match="both as keyword and in path_params"):
        await wechatpay_client["v3/x/{a}"].get(a="1", path_params={"a": "2"})
    with pytest.raises(ValueError, match="empty"):
        await wechatpay_client["v3/x/{a}"].get(a="")
    assert wechatpay_server.requests == []


async def test_query_params_keep_order_drop_none_repeat_lists(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    params: dict[str, Any] = {
        "z": "last?&=",
        "a": 1,
        "skip": None,
        "flag": True,
        "ids": ["1", "2"],
        "json": '{"k":"中"}',
    }
    snapshot = copy.deepcopy(params)
    target = await arrived(wechatpay_server, wechatpay_client.v3.x.get(params=params))  # type: ignore[attr-defined]
    assert target == (
        "/v3/x?z=last%3F%26%3D&a=1&flag=true&ids=1&ids=2&json=%7B%22k%22%3A%22%E4%B8%AD%22%7D"
    )
    assert params == snapshot
    assert wechatpay_server.requests[-1].query.getall("ids") == ["1", "2"]


async def test_dunder_lookups_never_mint_segments(wechatpay_client: WeChatPay) -> None:
    node = wechatpay_client.v3.pay
    for name in (
        "__deepcopy__",
        "__getstate__x__",
        "__len__",
        "__iter__",
        "__await__",
        "__fspath__",
    ):
        with pytest.raises(AttributeError):
            getattr(node, name)
    assert not callable(node)
    with pytest.raises(AttributeError):
        getattr(wechatpay_client, "__deepcopy__")  # noqa: B009 - the lookup itself is the test
    with pytest.raises(AttributeError):
        getattr(wechatpay_client, "_private_typo")  # noqa: B009
    assert repr(node) == "<wechatpay_chain.Node 'v3/pay'>"


async def test_nodes_are_immutable_and_cheap(wechatpay_client: WeChatPay) -> None:
    node = wechatpay_client.v3.pay
    with pytest.raises(AttributeError):
        node.transactions = "x"  # type: ignore[misc, assignment]
    with pytest.raises(AttributeError):
        del node.transactions
    assert copy.copy(node) is not node
    assert repr(copy.copy(node)) == repr(node)
    assert repr(node.transactions) == "<wechatpay_chain.Node 'v3/pay/transactions'>"
    # building a child leaves the parent as it was
    assert repr(node) == "<wechatpay_chain.Node 'v3/pay'>"
    assert isinstance(node, Node)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        pickle.dumps(node)  # bound to a live client: not something to pickle


async def test_node_public_members_are_only_the_verbs(wechatpay_client: WeChatPay) -> None:
    public = {name for name in dir(Node) if not name.startswith("_")}
    assert public == {"get", "post", "put", "patch", "delete", "request"}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "get"])
async def test_every_verb_and_request(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, method: str
) -> None:
    seen: list[RecordedRequest] = []

    def answer(request: RecordedRequest, values: Any) -> Reply:
        seen.append(request)
        return Reply(200, {"method": request.method, "id": values["item_id"]})

    wechatpay_server.route(method, "/v3/items/{item_id}", answer)
    node = wechatpay_client.v3.items._item_id_  # type: ignore[attr-defined]
    verb = getattr(node, method.lower())
    body: dict[str, Any] = {} if method.upper() == "GET" else {"json": {"n": 1}}
    by_verb = await verb(item_id="i1", **body)
    by_request = await node.request(method, item_id="i2", **body)
    assert by_verb.json() == {"method": method.upper(), "id": "i1"}
    assert by_request.json() == {"method": method.upper(), "id": "i2"}
    expected_body = b"" if method.upper() == "GET" else b'{"n":1}'
    assert [request.body for request in seen] == [expected_body, expected_body]


async def test_unknown_method_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        await wechatpay_client.v3.x.request("TRACE")  # type: ignore[attr-defined]
    assert wechatpay_server.requests == []


async def test_bad_path_strings(wechatpay_client: WeChatPay) -> None:
    with pytest.raises(ValueError, match="empty path"):
        wechatpay_client.chain("")
    with pytest.raises(TypeError):
        wechatpay_client[3]  # type: ignore[index]


@pytest.mark.parametrize("value", [".", ".."])
async def test_dot_segments_are_refused_before_sending(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, value: str
) -> None:
    with pytest.raises(ValueError, match="would change which endpoint"):
        await wechatpay_client.v3.pay.transactions.id._transaction_id_.get(transaction_id=value)
    with pytest.raises(ValueError, match="would change which endpoint"):
        await wechatpay_client.v3.pay.transactions.id[value].get()
    assert wechatpay_server.requests == []


async def test_chains_built_from_many_names_keep_memory_bounded(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    # Nodes remember the children they built (the same chain in a hot handler is then a few
    # look-ups), but only so many: names made from data must not grow memory for ever.
    parent = wechatpay_client.v3.items  # type: ignore[attr-defined]

    def build(first: int, count: int) -> None:
        for n in range(first, first + count):
            assert repr(getattr(parent, f"item{n}")) == f"<wechatpay_chain.Node 'v3/items/item{n}'>"

    build(0, 3000)  # every cache on the way is full after this
    tracemalloc.start()
    try:
        build(3000, 3000)  # the caches' entries are now ones traced (and freed when replaced)
        gc.collect()
        before = tracemalloc.take_snapshot()
        build(6000, 3000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes kept after 3000 more distinct names"
    # The cached chain still reaches the server as written.
    target = await arrived(wechatpay_server, parent.item1.get())
    assert target == "/v3/items/item1"
