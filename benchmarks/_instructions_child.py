"""One measured run for ``bench_instructions.py`` (run under valgrind, not by hand).

    _instructions_child.py LAYER COUNT KEY_DIRECTORY

Starts the fake server in a process of its own (valgrind does not follow it), makes 20
warm-up calls and then COUNT calls through LAYER, alternating the query and the close of
the end-to-end benchmark, with inline signing so that every instruction is on this thread:

* ``baseline``: the hand-written client of ``_e2e.py``;
* ``middlewares``: a plain aiohttp session with ``wxpay.middlewares`` (retry, signing,
  verifying), the target and headers written by hand;
* ``send``: the client below the chain (``WeChatPay.build_request`` and ``send``: target, body, headers,
  timeouts, the middlewares, errors, the ``Response``);
* ``library``: the whole library, the chain built on every call.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
from _e2e import (
    CLOSED,
    MCHID,
    QUERIED,
    Baseline,
    Call,
    baseline_call,
    create_orders,
    library_call,
)
from _fake_server import serve_in_subprocess
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from wechatpay_chain import WeChatPay

SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
WARM_UP = 20
QUERY = f"/v3/pay/transactions/out-trade-no/{QUERIED}?mchid={MCHID}"
CLOSE = f"/v3/pay/transactions/out-trade-no/{CLOSED}/close"


def _load(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _middlewares_call(url: str, session: aiohttp.ClientSession) -> Call:
    headers = {
        "Accept": "application/json",
        "User-Agent": "bench",
        "Wechatpay-Serial": PUBLIC_KEY_ID,
    }

    async def call(index: int) -> None:
        if index % 2:
            async with session.get(URL(url + QUERY, encoded=True), headers=headers) as answer:
                await answer.read()
        else:
            body = json.dumps({"mchid": MCHID}, separators=(",", ":")).encode()
            async with session.post(
                URL(url + CLOSE, encoded=True),
                data=body,
                headers={**headers, "Content-Type": "application/json"},
            ) as answer:
                await answer.read()

    return call


def _send_call(client: WeChatPay) -> Call:
    node = client.v3.pay.transactions.outTradeNo._out_trade_no_
    query, close = node._segments, node.close._segments

    async def call(index: int) -> None:
        if index % 2:
            await client.send(
                client.build_request(
                    "GET",
                    query,
                    params={"mchid": MCHID},
                    path_params={"out_trade_no": QUERIED},
                )
            )
        else:
            await client.send(
                client.build_request(
                    "POST",
                    close,
                    json={"mchid": MCHID},
                    path_params={"out_trade_no": CLOSED},
                )
            )

    return call


async def _run(
    url: str, layer: str, count: int, merchant: rsa.RSAPrivateKey, wechatpay: rsa.RSAPrivateKey
) -> None:
    client = WeChatPay(
        MCHID,
        SERIAL,
        merchant,
        {PUBLIC_KEY_ID: _public_pem(wechatpay)},
        base_url=url,
        sign_in_thread=False,
    )
    plain = aiohttp.ClientSession()
    with_middlewares = aiohttp.ClientSession(middlewares=client.middlewares)
    baseline = Baseline(url, MCHID, SERIAL, merchant, PUBLIC_KEY_ID, wechatpay.public_key(), plain)
    try:
        async with client:
            await create_orders(client)
            call = {
                "baseline": lambda: baseline_call(baseline),
                "middlewares": lambda: _middlewares_call(url, with_middlewares),
                "send": lambda: _send_call(client),
                "library": lambda: library_call(client),
            }[layer]()
            for index in range(WARM_UP + count):
                await call(index)
    finally:
        await plain.close()
        await with_middlewares.close()


def main() -> None:
    layer, count, keys = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    merchant, wechatpay = _load(keys / "merchant.pem"), _load(keys / "wechatpay.pem")
    config = {
        "mchid": MCHID,
        "serial": SERIAL,
        "public_key_id": PUBLIC_KEY_ID,
        "merchant_public_key": _public_pem(merchant).decode(),
        "wechatpay_private_key": (keys / "wechatpay.pem").read_text(),
    }
    with serve_in_subprocess(config) as server:
        asyncio.run(asyncio.wait_for(_run(server.url, layer, count, merchant, wechatpay), 600))


if __name__ == "__main__":
    main()
