"""Hostile and broken servers, and careless callers: every case runs a real misbehaving
server on 127.0.0.1 (or the fake) and asserts what reached it, not only what the caller saw.

No credential sent astray, no write resent, no memory bomb, no answer lost, nothing sent
from the wrong loop or process.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import (
    ApiError,
    BodyTooLargeError,
    ClientClosedError,
    ConfigError,
    InvalidResponseError,
    LoopMismatchError,
    RetryPolicy,
    TransportError,
    UntrustedHostError,
    WeChatPay,
)
from wechatpay_chain.testing import FakeWeChatPay
from wechatpay_chain.testing.signer import WeChatPaySigner

MCHID = "1900000109"
SERIAL = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, deadline=2.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """A small aiohttp server on 127.0.0.1 that records what reached it."""

    def __init__(self, wechatpay_key: rsa.RSAPrivateKey) -> None:
        self.app = web.Application()
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.signer = WeChatPaySigner(wechatpay_key, PUBLIC_KEY_ID, time.time)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def on(self, method: str, path: str, handler: Handler) -> None:
        async def recording(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.method, request.path, request.headers.get("Authorization")))
            return await handler(request)

        self.app.router.add_route(method, path, recording)

    def signed(self, body: bytes, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=body,
            headers=self.signer.headers(body),
            content_type="application/json",
        )

    async def start(self) -> str:
        # A short shutdown: a handler still sleeping (a hanging server) is not waited for.
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest_asyncio.fixture
async def hostile(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> AsyncIterator[Hostile]:
    server = Hostile(wechatpay_keys[1])
    yield server
    await server.stop()


def client_for(
    url: str, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], **options: Any
) -> WeChatPay:
    merchant_key, wechatpay_key = wechatpay_keys
    return WeChatPay(
        MCHID,
        SERIAL,
        merchant_key,
        {PUBLIC_KEY_ID: wechatpay_key.public_key()},
        base_url=url,
        **options,
    )


# -- 1. redirects never carry a signature -------------------------------------------------


async def test_a_redirect_on_the_applications_own_session_is_not_followed_nor_signed(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    elsewhere = Hostile(wechatpay_keys[1])

    async def steal(request: web.Request) -> web.Response:
        return web.Response(text="{}")

    elsewhere.on("GET", "/steal", steal)
    other = await elsewhere.start()
    other = other.replace("127.0.0.1", "localhost")  # another origin

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(other + "/steal")

    hostile.on("GET", "/v3/certificates", redirect)
    url = await hostile.start()
    wxpay = client_for(url, wechatpay_keys)
    try:
        async with aiohttp.ClientSession(middlewares=wxpay.middlewares) as session:
            with pytest.raises(ApiError) as raised:
                async with session.get(url + "/v3/certificates"):
                    pass
        assert raised.value.status == 302
        assert len(hostile.seen) == 1
        assert hostile.seen[0][2] is not None  # signed, for WeChat Pay
        assert elsewhere.seen == []  # the other host received nothing at all
        # Nor would the middlewares sign a request sent there directly.
        async with aiohttp.ClientSession(middlewares=wxpay.middlewares) as session:
            with pytest.raises(UntrustedHostError):
                await session.get(other + "/steal")
        assert elsewhere.seen == []
    finally:
        await wxpay.close()
        await elsewhere.stop()


async def test_a_redirect_on_the_clients_own_session_is_an_api_error(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("http://localhost:9/v3/pay/transactions/native")

    hostile.on("POST", "/v3/pay/transactions/native", redirect)
    async with client_for(await hostile.start(), wechatpay_keys) as wxpay:
        with pytest.raises(ApiError) as raised:
            await wxpay["v3/pay/transactions/native"].post(json={"a": 1})
    assert raised.value.status == 307
    assert len(hostile.seen) == 1


# -- 2. a write reaches the server at most once -------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_write_whose_connection_drops_after_the_body_is_sent_once(
    method: str, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    # A raw server: it reads each request whole, counts it, and drops the connection
    # without answering, on a fresh connection and on a pooled one alike.
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        received.append(head.split(b" ", 1)[0])
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client_for(f"http://127.0.0.1:{port}", wechatpay_keys, retry=FAST) as wxpay:
            with pytest.raises(TransportError):
                await wxpay["v3/x"].request(method, json={"out_refund_no": "r-1"})
        assert received == [method.encode()]
    finally:
        server.close()
        await server.wait_closed()


# -- 3. bounded bodies --------------------------------------------------------------------


async def test_a_2xx_answer_larger_than_the_limit_is_refused_unread(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    big = b'{"a":"' + b"x" * (2 * 1024 * 1024) + b'"}'

    async def huge(request: web.Request) -> web.StreamResponse:
        # Chunked, so the size is known only by reading.
        response = web.StreamResponse(headers=hostile.signer.headers(big))
        await response.prepare(request)
        for start in range(0, len(big), 65536):
            await response.write(big[start : start + 65536])
        await response.write_eof()
        return response

    hostile.on("GET", "/v3/big", huge)
    async with client_for(
        await hostile.start(), wechatpay_keys, max_response_body=1024 * 1024
    ) as wxpay:
        with pytest.raises(BodyTooLargeError) as raised:
            await wxpay["v3/big"].get()
    assert raised.value.limit == 1024 * 1024
    assert len(hostile.seen) == 1


async def test_an_error_body_is_kept_only_up_to_its_prefix(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, body=b"e" * (8 * 1024 * 1024))

    hostile.on("POST", "/v3/x", error)
    async with client_for(await hostile.start(), wechatpay_keys) as wxpay:
        with pytest.raises(ApiError) as raised:
            await wxpay["v3/x"].post(json={})
    assert raised.value.status == 500
    assert len(raised.value.body) == 64 * 1024


async def test_compression_is_not_asked_for_and_a_compressed_answer_is_not_inflated(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))  # 64 MiB from about 64 KiB
    asked: list[str | None] = []

    async def compressed(request: web.Request) -> web.Response:
        asked.append(request.headers.get("Accept-Encoding"))
        headers = {**hostile.signer.headers(bomb), "Content-Encoding": "gzip"}
        return web.Response(body=bomb, headers=headers)

    hostile.on("GET", "/v3/zip", compressed)
    async with client_for(await hostile.start(), wechatpay_keys) as wxpay:
        response = await wxpay["v3/zip"].get()
    assert asked == ["identity"]
    assert response.body == bomb  # the bytes as sent and signed, never inflated


# -- 5. a per-call timeout bounds the whole call ------------------------------------------


async def test_a_per_call_timeout_bounds_an_error_body_that_drips(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        response.content_length = 100
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"e")
            await asyncio.sleep(0.1)
        return response

    hostile.on("POST", "/v3/slow", drip)
    async with client_for(await hostile.start(), wechatpay_keys) as wxpay:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await wxpay["v3/slow"].post(json={}, timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert len(hostile.seen) == 1  # a POST: not sent again


async def test_a_per_call_timeout_bounds_the_retries_too(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    hostile.on("GET", "/v3/slow", slow)
    policy = RetryPolicy(attempts=5, backoff=0.01, max_backoff=0.02, deadline=30)
    async with client_for(await hostile.start(), wechatpay_keys, retry=policy) as wxpay:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await wxpay["v3/slow"].get(timeout=0.6)
        elapsed = time.monotonic() - started
    assert elapsed < 1.2


# -- 6. malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b'{"a": ', "not JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
    ],
)
async def test_a_signed_but_malformed_answer_is_a_typed_error(
    body: bytes,
    says: str,
    hostile: Hostile,
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    async def malformed(request: web.Request) -> web.Response:
        return hostile.signed(body)

    hostile.on("GET", "/v3/odd", malformed)
    async with client_for(await hostile.start(), wechatpay_keys) as wxpay:
        response = await wxpay["v3/odd"].get()
    with pytest.raises(InvalidResponseError, match=says) as raised:
        response.json()
    assert isinstance(raised.value, ValueError)
    assert raised.value.status == 200
    assert raised.value.request_id == response.request_id is not None


# -- 7. close() with calls in flight --------------------------------------------------------


async def test_close_ends_calls_in_flight_with_a_typed_error_and_sends_nothing_again(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(10)
        return web.Response(text="late")

    hostile.on("GET", "/v3/hang", hang)
    wxpay = client_for(await hostile.start(), wechatpay_keys, retry=FAST)
    calls = [asyncio.ensure_future(wxpay["v3/hang"].get()) for _ in range(3)]
    await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(0.05)
    await wxpay.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert all(isinstance(outcome, ClientClosedError) for outcome in outcomes), outcomes
    await asyncio.sleep(0.1)
    assert len(hostile.seen) == 3  # each sent once, none retried after close
    await wxpay.close()  # idempotent
    with pytest.raises(ClientClosedError):
        await wxpay["v3/hang"].get()
    assert len(hostile.seen) == 3


# -- 8. a forked child never uses the parent's connections ----------------------------------


class ServerThread:
    """A :class:`Hostile` server in a loop of its own thread, so that it answers while the
    test's thread waits (for a child process, say)."""

    def __init__(self, server: Hostile) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_a_forked_child_opens_a_connection_of_its_own(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    server = Hostile(wechatpay_keys[1])
    peers: list[int] = []  # the client's port of each request's connection

    async def certificates(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return server.signed(b'{"data":[]}')

    server.on("GET", "/v3/x", certificates)
    with ServerThread(server) as url:
        # With an APIv3 key: the certificate manager's background task starts in each loop.
        wxpay = client_for(url, wechatpay_keys, apiv3_key="a" * 32)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(wxpay["v3/x"].get())  # the parent's pooled connection
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: a loop of its own, the same client object
                code = 1
                try:
                    os.close(read_end)

                    async def child_part() -> None:
                        await wxpay["v3/x"].get()
                        await wxpay.close()

                    asyncio.run(child_part())
                    code = 0
                finally:
                    os.write(write_end, bytes([code]))
                    os._exit(code)
            os.close(write_end)
            outcome = os.read(read_end, 1)
            os.close(read_end)
            os.waitpid(pid, 0)
            assert outcome == b"\x00"
            # The parent's pooled connection still serves the parent.
            loop.run_until_complete(wxpay["v3/x"].get())
            loop.run_until_complete(wxpay.close())
        finally:
            loop.close()
    assert len(peers) == 3
    assert peers[1] != peers[0]  # the child's own connection
    assert peers[2] == peers[0]  # the parent's, untouched by the child


# -- the loop a client belongs to ---------------------------------------------------------


def test_a_client_used_from_a_second_event_loop_refuses_before_sending(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    server = Hostile(wechatpay_keys[1])

    async def created(request: web.Request) -> web.Response:
        return server.signed(b'{"code_url":"weixin://x"}')

    server.on("POST", "/v3/pay/transactions/native", created)
    with ServerThread(server) as url:
        wxpay = client_for(url, wechatpay_keys)
        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(wxpay["v3/pay/transactions/native"].post(json={"n": 1}))
            # asyncio.run() per call, as a Django view or a Celery task would do it:
            with pytest.raises(LoopMismatchError, match="SyncWeChatPay"):
                asyncio.run(wxpay["v3/pay/transactions/native"].post(json={"n": 2}))
            first.run_until_complete(wxpay.close())
        finally:
            first.close()
    assert len(server.seen) == 1  # the second call sent nothing


# -- 10, 11. configuration values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": aiohttp.ClientTimeout(total=-1)}, "timeout"),
        ({"timeout": aiohttp.ClientTimeout(total=float("inf"))}, "timeout"),
        ({"retry": 3}, "retry"),
        ({"retry": "idempotent"}, "retry"),
        ({"clock": None}, "clock"),
        ({"nonce": "abc"}, "nonce"),
        ({"max_response_body": 0}, "max_response_body"),
        ({"base_url": "http://api.mch.weixin.qq.com"}, "plain http"),
        ({"failover_url": "http://api2.mch.weixin.qq.com"}, "plain http"),
        ({"base_url": "https://user:pw@api.mch.weixin.qq.com"}, "credentials"),
    ],
)
def test_bad_configuration_values_are_refused_at_construction(
    options: dict[str, Any], names: str, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    merchant_key, wechatpay_key = wechatpay_keys
    with pytest.raises(ConfigError, match=names):
        WeChatPay(
            MCHID, SERIAL, merchant_key, {PUBLIC_KEY_ID: wechatpay_key.public_key()}, **options
        )


def test_plain_http_is_accepted_for_loopback_and_with_the_opt_in(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    merchant_key, _ = wechatpay_keys
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"):
        assert WeChatPay(MCHID, SERIAL, merchant_key, base_url=url).base_url == url
    opted = WeChatPay(
        MCHID, SERIAL, merchant_key, base_url="http://proxy.internal", allow_http=True
    )
    assert opted.base_url == "http://proxy.internal"


async def test_bad_call_values_are_refused_before_sending(wechatpay_server: FakeWeChatPay) -> None:
    async with wechatpay_server.client() as wxpay:
        with pytest.raises(ValueError, match="NaN and Infinity are not JSON"):
            await wxpay["v3/pay/transactions/native"].post(json={"amount": {"total": float("nan")}})
        with pytest.raises(TypeError, match="GET request carries no body"):
            await wxpay["v3/certificates"].get(json={"a": 1})
        with pytest.raises(ConfigError, match="timeout"):
            await wxpay["v3/certificates"].get(timeout=-1)
        with pytest.raises(ConfigError, match="retry="):
            await wxpay["v3/certificates"].get(retry="always")
    assert wechatpay_server.requests == []


# -- 13. unsigned answers only where documented, exactly -----------------------------------


async def test_only_the_documented_download_paths_may_answer_unsigned(
    hostile: Hostile, wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async def unsigned(request: web.Request) -> web.Response:
        return web.Response(body=b"file bytes")

    hostile.on("GET", "/{tail:.*}", unsigned)
    url = await hostile.start()
    async with client_for(url, wechatpay_keys) as wxpay:
        async with wxpay.download("/v3/billdownload/file?token=t") as download:
            assert await download.read() == b"file bytes"
        for lookalike in ("/v3/pay/partner/v3/billdownload/file", "/x/v3/billdownload/file"):
            with pytest.raises(Exception, match="unsigned message"):
                async with wxpay.download(lookalike) as download:
                    await download.read()


# -- 14. repr never raises ----------------------------------------------------------------


def test_repr_of_a_half_built_client_or_signer_never_raises() -> None:
    from wechatpay_chain.signing import Signer

    with pytest.raises(ConfigError):
        WeChatPay(MCHID, SERIAL, "not a key")
    client = WeChatPay.__new__(WeChatPay)
    assert repr(client) == "<WeChatPay mchid='?' base_url='?'>"
    signer = Signer.__new__(Signer)
    assert "Signer" in repr(signer)


def test_regions_are_named_base_urls_with_their_failover_pairs(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    merchant_key, _ = wechatpay_keys
    pairs = {
        name: (client.base_url, client.failover_url)
        for name in ("cn", "cn-wechatpay", "hk", "global")
        for client in [WeChatPay(MCHID, SERIAL, merchant_key, base_url=name)]
    }
    assert pairs == {
        "cn": ("https://api.mch.weixin.qq.com", "https://api2.mch.weixin.qq.com"),
        "cn-wechatpay": ("https://api.wechatpay.cn", "https://api2.wechatpay.cn"),
        "hk": ("https://apihk.mch.weixin.qq.com", "https://api.mch.weixin.qq.com"),
        "global": ("https://apihk.mch.weixin.qq.com", "https://api.mch.weixin.qq.com"),
    }


async def test_encrypt_before_any_certificate_is_known_says_what_to_do(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    merchant_key, _ = wechatpay_keys
    wxpay = WeChatPay(MCHID, SERIAL, merchant_key, apiv3_key="a" * 32)  # certificate mode
    with pytest.raises(ConfigError, match=r"certificates\.refresh\(\)"):
        wxpay.encrypt("张三")
    bare = WeChatPay(MCHID, SERIAL, merchant_key, certificates="off")
    with pytest.raises(ConfigError, match="public_keys="):
        bare.encrypt("张三")
