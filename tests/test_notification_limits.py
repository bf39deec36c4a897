"""Webhooks, hardened: the APIv3 key checked up front, wrong-shaped arguments refused by name,
a bounded body (refused before its signature is checked, and never read into memory beyond
the limit by the aiohttp and Starlette adapters, over real loopback HTTP), and a malformed
signed body always an ``InvalidNotificationError``."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from wechatpay_chain import WeChatPay
from wechatpay_chain.crypto import aes_gcm_decrypt, aes_gcm_encrypt, apiv3_key_bytes
from wechatpay_chain.errors import (
    BodyTooLargeError,
    ConfigError,
    InvalidNotificationError,
    MissingSignatureHeaderError,
    WeChatPayError,
)
from wechatpay_chain.notifications import (
    DEFAULT_MAX_BODY,
    Notification,
    Notifications,
    failure,
    success,
    verify_and_decrypt,
)
from wechatpay_chain.testing import FakeWeChatPay
from wechatpay_chain.testing.signer import WeChatPaySigner
from wechatpay_chain.verifying import Verifier

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
RESOURCE = {"out_trade_no": "limit-1", "trade_state": "SUCCESS"}


def _verifier(server: FakeWeChatPay) -> Verifier:
    return Verifier({server.public_key_id: server.public_key_pem})


def _sign(server: FakeWeChatPay, keys: Keys, body: bytes) -> dict[str, str]:
    return WeChatPaySigner(keys[1], server.public_key_id, server.clock).headers(body)


def _padded(server: FakeWeChatPay, keys: Keys, size: int) -> tuple[dict[str, str], bytes]:
    """A genuine signed notification grown to exactly ``size`` bytes by an extra field."""
    _, body = server.build_notification(event_type="TRANSACTION.SUCCESS", resource=RESOURCE)
    head = body[:-1] + b',"pad":"'
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    return _sign(server, keys, body), body


# -- the APIv3 key ---------------------------------------------------------------------------


def test_a_str_apiv3_key_works_like_its_utf8_bytes(wechatpay_server: FakeWeChatPay) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=RESOURCE
    )
    verifier = _verifier(wechatpay_server)
    as_text = verify_and_decrypt(
        headers, body, verifier=verifier, apiv3_key=wechatpay_server.apiv3_key
    )
    as_bytes = verify_and_decrypt(
        headers, body, verifier=verifier, apiv3_key=wechatpay_server.apiv3_key.encode()
    )
    assert as_text.resource == as_bytes.resource == RESOURCE


@pytest.mark.parametrize(
    "key",
    [b"k" * 16, b"k" * 24, b"k" * 31, b"k" * 33, "k" * 16, "密" * 11, b"", 32, None],
    ids=["16 bytes", "24 bytes", "31 bytes", "33 bytes", "16 chars", "33 UTF-8 bytes", "empty", "int", "None"],
)  # fmt: skip
def test_an_apiv3_key_that_is_not_32_bytes_is_refused_before_any_verification(
    wechatpay_server: FakeWeChatPay, key: Any
) -> None:
    # Unsigned headers: an up-front check raises ConfigError, a late one would say "unsigned".
    with pytest.raises(ConfigError, match="apiv3_key") as caught:
        verify_and_decrypt({}, b"{}", verifier=_verifier(wechatpay_server), apiv3_key=key)
    if isinstance(key, (str, bytes)) and key:  # the key itself is never echoed
        assert (key if isinstance(key, str) else key.decode()) not in str(caught.value)


def test_a_32_character_non_ascii_key_is_refused_by_its_byte_length() -> None:
    with pytest.raises(ConfigError, match="96 bytes"):
        apiv3_key_bytes("密" * 32)


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 31, "k" * 24])
def test_the_aes_helpers_refuse_a_key_that_is_not_32_bytes(key: str | bytes) -> None:
    # AES would otherwise run as AES-128 or AES-192 without a word.
    with pytest.raises(ConfigError, match="32-byte"):
        aes_gcm_encrypt(key, nonce="n" * 12, plaintext=b"x")
    with pytest.raises(ConfigError, match="32-byte"):
        aes_gcm_decrypt(key, nonce="n" * 12, ciphertext="AAAA")


def test_the_aes_helpers_take_a_str_key_as_its_utf8_bytes() -> None:
    sealed = aes_gcm_encrypt("k" * 32, nonce="n" * 12, plaintext=b"secret", associated_data="a")
    assert aes_gcm_decrypt(b"k" * 32, nonce="n" * 12, ciphertext=sealed, associated_data="a") == (
        b"secret"
    )


# -- wrong-shaped arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("verifier", {"PUB_KEY_ID_01": "pub_key.pem"}, TypeError),
        ("verifier", None, TypeError),
        ("headers", [("Wechatpay-Serial", "x")], TypeError),
        ("headers", "Wechatpay-Serial: x", TypeError),
        ("max_body", 0, ConfigError),
        ("max_body", -1, ConfigError),
        ("max_body", True, ConfigError),
        ("max_body", "1048576", ConfigError),
    ],
)
def test_wrong_shaped_arguments_are_refused_by_name(
    wechatpay_server: FakeWeChatPay, argument: str, value: Any, error: type[Exception]
) -> None:
    headers, body = wechatpay_server.build_notification(event_type="X", resource=RESOURCE)
    arguments: dict[str, Any] = {
        "headers": headers,
        "body": body,
        "verifier": _verifier(wechatpay_server),
        "apiv3_key": wechatpay_server.apiv3_key,
        argument: value,
    }
    with pytest.raises(error, match=argument) as caught:
        verify_and_decrypt(**arguments)
    assert not isinstance(caught.value, AttributeError)


def test_notifications_refuses_a_verifier_that_is_not_one(
    wechatpay_server: FakeWeChatPay,
) -> None:
    with pytest.raises(TypeError, match="verifier"):
        Notifications({"PUB_KEY_ID_01": "pub_key.pem"}, wechatpay_server.apiv3_key)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="apiv3_key"):
        Notifications(_verifier(wechatpay_server), b"short")
    with pytest.raises(ConfigError, match="max_body"):
        Notifications(_verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=0)


# -- the body limit ------------------------------------------------------------------------------


def test_a_signed_body_over_the_default_limit_is_refused(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys
) -> None:
    verifier = _verifier(wechatpay_server)
    headers, body = _padded(wechatpay_server, wechatpay_keys, DEFAULT_MAX_BODY)
    # exactly at the limit: accepted
    notification = verify_and_decrypt(
        headers, body, verifier=verifier, apiv3_key=wechatpay_server.apiv3_key
    )
    assert notification.resource == RESOURCE
    headers, body = _padded(wechatpay_server, wechatpay_keys, DEFAULT_MAX_BODY + 1)
    with pytest.raises(BodyTooLargeError) as caught:
        verify_and_decrypt(headers, body, verifier=verifier, apiv3_key=wechatpay_server.apiv3_key)
    error = caught.value
    assert (error.size, error.limit, error.at_least) == (
        DEFAULT_MAX_BODY + 1,
        DEFAULT_MAX_BODY,
        False,
    )
    assert str(error) == "the notification body of 1048577 bytes exceeds the limit of 1048576 bytes"
    assert isinstance(error, WeChatPayError)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (type(copy), copy.size, copy.limit, str(copy)) == (
        BodyTooLargeError, error.size, error.limit, str(error),
    )  # fmt: skip


def test_the_limit_comes_before_the_signature_and_the_json(
    wechatpay_server: FakeWeChatPay,
) -> None:
    # Unsigned, and not even JSON: the size alone decides.
    with pytest.raises(BodyTooLargeError):
        verify_and_decrypt(
            {},
            b"\xff" * 2049,
            verifier=_verifier(wechatpay_server),
            apiv3_key=wechatpay_server.apiv3_key,
            max_body=2048,
        )
    with pytest.raises(MissingSignatureHeaderError):  # and within it, the signature is next
        verify_and_decrypt(
            {},
            b"\xff" * 2048,
            verifier=_verifier(wechatpay_server),
            apiv3_key=wechatpay_server.apiv3_key,
            max_body=2048,
        )


async def test_the_limit_is_configured_where_notifications_is_built(
    wechatpay_server: FakeWeChatPay, wechatpay_client: WeChatPay
) -> None:
    assert wechatpay_client.notifications.max_body == DEFAULT_MAX_BODY
    headers, body = wechatpay_server.build_notification(event_type="X", resource=RESOURCE)
    small = Notifications(
        _verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=len(body) - 1
    )
    with pytest.raises(BodyTooLargeError) as caught:
        await small.parse(headers, body)
    assert caught.value.size == len(body)
    exact = Notifications(
        _verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=len(body)
    )
    assert (await exact.parse(headers, body)).resource == RESOURCE


# -- a malformed signed body ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"id":"\xff\xfe"}',
        b"\xef\xbb\xbf\xff",
        b'{"id": "EV-1",',
        b"1" * 5000,
        b"",
    ],
    ids=["nested lists", "nested objects", "bad UTF-8", "BOM then bad UTF-8", "truncated", "huge int", "empty"],
)  # fmt: skip
def test_a_malformed_signed_body_is_an_invalid_notification(
    wechatpay_server: FakeWeChatPay, wechatpay_keys: Keys, body: bytes
) -> None:
    with pytest.raises(WeChatPayError) as caught:
        verify_and_decrypt(
            _sign(wechatpay_server, wechatpay_keys, body),
            body,
            verifier=_verifier(wechatpay_server),
            apiv3_key=wechatpay_server.apiv3_key,
        )
    assert type(caught.value) is InvalidNotificationError


# -- the adapters, over loopback HTTP ------------------------------------------------------------

LIMIT = 4096
Parse = Callable[[], Awaitable[Notification]]


class Handler:
    """What a webhook app did: the notifications it parsed and the errors it refused."""

    def __init__(self) -> None:
        self.parsed: list[Notification] = []
        self.errors: list[WeChatPayError] = []

    async def answer(self, parse: Parse) -> tuple[int, bytes]:
        try:
            self.parsed.append(await parse())
        except BodyTooLargeError as error:
            self.errors.append(error)
            answer = failure("too large", status=413)
        except WeChatPayError as error:
            self.errors.append(error)
            answer = failure("refused", status=400)
        else:
            answer = success()
        return answer.status, answer.body


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_aiohttp(
    notifications: Notifications, handler: Handler, *, read_first: bool = False
) -> AsyncIterator[str]:
    async def notify(request: web.Request) -> web.Response:
        if read_first:  # a middleware that read the body before the handler
            await request.read()
        status, body = await handler.answer(lambda: notifications.from_aiohttp(request))
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = _bound_socket()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/notify"
    finally:
        await runner.cleanup()
        sock.close()


@contextlib.asynccontextmanager
async def serve_starlette(
    notifications: Notifications, handler: Handler, *, read_first: bool = False
) -> AsyncIterator[str]:
    async def notify(request: StarletteRequest) -> StarletteResponse:
        if read_first:
            await request.body()
        status, body = await handler.answer(lambda: notifications.from_starlette(request))
        return StarletteResponse(status_code=status, content=body)

    app = Starlette(routes=[Route("/notify", notify, methods=["POST"])])
    sock = _bound_socket()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + 5.0
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped before it started")
            assert loop.time() < deadline, "uvicorn did not start within 5 s"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/notify"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5.0)
        sock.close()


SERVERS = {"aiohttp": serve_aiohttp, "starlette": serve_starlette}


async def _post(url: str, data: Any, headers: dict[str, str] | None = None) -> int | None:
    """POST and return the status; ``None`` when the server closed on a body still sending."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=20)
            ) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError:
            return None


async def _chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize("framework", SERVERS)
async def test_an_announced_length_over_the_limit_is_refused_unread(
    wechatpay_server: FakeWeChatPay, framework: str
) -> None:
    notifications = Notifications(
        _verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=LIMIT
    )
    handler = Handler()
    async with SERVERS[framework](notifications, handler) as url:
        status = await _post(url, b"x" * (LIMIT * 16))
    assert status in (413, None)
    [error] = handler.errors
    assert isinstance(error, BodyTooLargeError)
    assert (error.size, error.limit, error.at_least) == (LIMIT * 16, LIMIT, False)


@pytest.mark.parametrize("framework", SERVERS)
async def test_a_chunked_body_over_the_limit_is_read_no_further(
    wechatpay_server: FakeWeChatPay, framework: str
) -> None:
    notifications = Notifications(
        _verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=LIMIT
    )
    handler = Handler()
    total = 1024 * 1024
    async with SERVERS[framework](notifications, handler) as url:
        status = await _post(url, _chunks(total))  # no Content-Length: counted as it comes
    assert status in (413, None)
    [error] = handler.errors
    assert isinstance(error, BodyTooLargeError)
    assert error.at_least
    assert error.limit == LIMIT
    if framework == "aiohttp":
        assert error.size == LIMIT + 1  # read with a cap: not one byte more
    else:
        assert LIMIT < error.size < total // 4  # Starlette's chunks, then it stopped


@pytest.mark.parametrize("framework", SERVERS)
@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read before"])
async def test_a_notification_within_the_limit_is_parsed(
    wechatpay_server: FakeWeChatPay, framework: str, read_first: bool
) -> None:
    headers, body = wechatpay_server.build_notification(
        event_type="TRANSACTION.SUCCESS", resource=RESOURCE
    )
    notifications = Notifications(
        _verifier(wechatpay_server), wechatpay_server.apiv3_key, max_body=len(body)
    )
    handler = Handler()
    async with SERVERS[framework](notifications, handler, read_first=read_first) as url:
        assert await _post(url, body, headers) == 204
        assert await _post(url, body + b" ", headers) == 413  # one byte over
    assert [notification.resource for notification in handler.parsed] == [RESOURCE]
    assert [type(error) for error in handler.errors] == [BodyTooLargeError]
