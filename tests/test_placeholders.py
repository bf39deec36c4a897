"""Placeholder values and query parameters on the wire, against the fake server: a raw
``{+name}`` value is sent exactly as given or refused by name before anything is sent (never
changed: CR/LF are not stripped, a space never reaches the request line, ``../`` never leaves
its segment); a normal ``{name}`` value has its control characters percent-encoded; ``params``
that are not a mapping are a ``TypeError`` naming ``params``."""

from __future__ import annotations

import pytest

from wechatpay_chain import ApiError, WeChatPay
from wechatpay_chain.testing import FakeWeChatPay


async def target_of(server: FakeWeChatPay, wxpay: WeChatPay, path: str, value: str) -> str:
    """GET ``path`` with its ``{id}`` filled with ``value``; the target the server received."""
    before = len(server.requests)
    with pytest.raises(ApiError) as caught:  # the fake knows no /v3/x: a 404, signed
        await wxpay[path].get(path_params={"id": value})
    assert caught.value.code == "NOT_FOUND"  # not SIGN_ERROR: what was signed was sent
    assert len(server.requests) == before + 1
    return server.requests[-1].target


@pytest.mark.parametrize(
    "value",
    [
        "4200\r\n0001",
        "4200\n",
        "\r",
        "a\x00b",
        "a\tb",
        "a\x7fb",
        "a\x85b",
        "a\x9fb",
        "4200 0001",
        "4200?mchid=1",
        "4200#x",
        "../../pay/transactions",
        "a/../b",
        "..",
        ".",
        "%2e%2E",
        "a/%2E",
        "商户",
        "100%",
        "a%zzb",
    ],
)
async def test_a_raw_value_that_is_not_an_encoded_path_is_refused_unsent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, value: str
) -> None:
    with pytest.raises(ValueError, match=r"placeholder \{\+transaction_id\}"):
        await wechatpay_client["v3/x/{+transaction_id}/detail"].get(transaction_id=value)
    assert wechatpay_server.requests == []  # refused before anything was sent


async def test_a_dot_segment_made_with_the_literal_beside_it_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    # "a/" + the literal "." would send /v3/x/a/. and a server would drop the last segment.
    with pytest.raises(ValueError, match=r"placeholder \{\+id\} makes a dot segment"):
        await wechatpay_client["v3/x/{+id}."].get(id="a/")
    assert wechatpay_server.requests == []


@pytest.mark.parametrize(
    "value",
    ["4200000001", "already%2Fencoded", "a/b", "%E5%95%86%E6%88%B7", "a!$&'()*+,;=:@-._~b", ".a"],
)
async def test_a_raw_value_that_is_an_encoded_path_arrives_as_given(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, value: str
) -> None:
    target = await target_of(wechatpay_server, wechatpay_client, "v3/x/{+id}/detail", value)
    assert target == f"/v3/x/{value}/detail"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("4200\r\n0001", "4200%0D%0A0001"),
        ("a\x00b\tc", "a%00b%09c"),
        ("a\x7fb\x85c", "a%7Fb%C2%85c"),
        ("4200 0001?x#y", "4200%200001%3Fx%23y"),
        ("../pay", "..%2Fpay"),
        ("%2e%2e", "%252e%252e"),
    ],
)
async def test_a_normal_value_has_its_control_characters_encoded_not_stripped(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, value: str, encoded: str
) -> None:
    target = await target_of(wechatpay_server, wechatpay_client, "v3/x/{id}/detail", value)
    assert target == f"/v3/x/{encoded}/detail"


@pytest.mark.parametrize(
    "params",
    [[("mchid", "1900000109")], "mchid=1900000109", b"mchid=1900000109", [], "", {1: "x"}],
    ids=["list of pairs", "str", "bytes", "empty list", "empty str", "int key"],
)
async def test_params_that_are_not_a_mapping_of_names_are_refused_unsent(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay, params: object
) -> None:
    with pytest.raises(TypeError, match="params"):
        await wechatpay_client.v3.pay.transactions.id["4200000001"].get(params=params)
    assert wechatpay_server.requests == []
