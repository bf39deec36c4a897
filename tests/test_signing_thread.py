"""Where the RSA signature is computed (``sign_in_thread``), end to end against the fake
server: on the event loop's thread, in the signing worker thread, or by load ("auto")."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain import ConfigError, WeChatPay
from wechatpay_chain.testing import FakeWeChatPay

WORKER_NAME = "wechatpay-chain-signing"


class RecordingKey(rsa.RSAPrivateKey):
    """A private key that notes the thread of every signature, the way a key kept in a
    hardware module wraps its device; ``fail`` makes every signature raise."""

    def __init__(self, key: rsa.RSAPrivateKey, *, fail: bool = False) -> None:
        self.key = key
        self.fail = fail
        self.threads: list[str] = []

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("the signing device is unplugged")
        return self.key.sign(data, padding, algorithm)

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        return self.key.decrypt(ciphertext, padding)

    @property
    def key_size(self) -> int:
        return self.key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self.key.public_key()

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        return self.key.private_numbers()

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        return self.key.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> RecordingKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RecordingKey:
        return self


def recording_key(server: FakeWeChatPay, *, fail: bool = False) -> RecordingKey:
    pem = server.merchant.private_key_pem
    assert pem is not None
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return RecordingKey(key, fail=fail)


async def echo_many(wxpay: WeChatPay, count: int) -> list[int]:
    responses = await asyncio.gather(
        *(wxpay.v3.security.echo.post(json={"echo_message": str(n)}) for n in range(count))
    )
    return [response.status for response in responses]


def workers() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == WORKER_NAME}


async def workers_gone(started: set[threading.Thread], timeout: float = 5.0) -> bool:
    """Whether the signing threads this test started (not before it) end within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(thread.is_alive() for thread in started):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_inline_signs_every_request_on_the_loop_thread(
    wechatpay_server: FakeWeChatPay,
) -> None:
    key = recording_key(wechatpay_server)
    async with wechatpay_server.client(private_key=key, sign_in_thread=False) as wxpay:
        assert await echo_many(wxpay, 30) == [200] * 30  # the server verified each signature
    assert key.threads == [threading.current_thread().name] * 30


async def test_in_thread_signs_every_request_in_the_worker(
    wechatpay_server: FakeWeChatPay,
) -> None:
    key = recording_key(wechatpay_server)
    before = workers()
    async with wechatpay_server.client(private_key=key, sign_in_thread=True) as wxpay:
        assert await echo_many(wxpay, 1) == [200]
        assert await echo_many(wxpay, 30) == [200] * 30
        started = workers() - before
    assert key.threads == [WORKER_NAME] * 31
    assert len(started) == 1
    assert await workers_gone(started), "the signing thread outlived close()"


async def test_auto_signs_a_lone_request_inline_and_concurrent_ones_in_the_worker(
    wechatpay_server: FakeWeChatPay,
) -> None:
    key = recording_key(wechatpay_server)
    loop_thread = threading.current_thread().name
    before = workers()
    async with wechatpay_server.client(private_key=key) as wxpay:  # "auto" is the default
        for _ in range(3):
            assert await echo_many(wxpay, 1) == [200]
        assert key.threads == [loop_thread] * 3  # one at a time: no hand-over to a thread
        assert await echo_many(wxpay, 40) == [200] * 40
        started = workers() - before
    concurrent = key.threads[3:]
    assert len(concurrent) == 40
    # The first of a burst finds nothing in flight; the others are signed off the loop.
    assert concurrent.count(WORKER_NAME) >= 30
    assert set(concurrent) <= {loop_thread, WORKER_NAME}
    assert await workers_gone(started), "the signing thread outlived close()"


@pytest.mark.parametrize("sign_in_thread", [False, True])
async def test_a_failing_signature_raises_and_nothing_is_sent(
    wechatpay_server: FakeWeChatPay, sign_in_thread: bool
) -> None:
    key = recording_key(wechatpay_server, fail=True)
    async with wechatpay_server.client(private_key=key, sign_in_thread=sign_in_thread) as wxpay:
        outcomes = await asyncio.gather(
            *(wxpay.v3.security.echo.post(json={"echo_message": str(n)}) for n in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert {str(outcome) for outcome in outcomes} == {"the signing device is unplugged"}
    assert wechatpay_server.requests == []


async def test_a_client_closed_mid_signature_leaves_no_thread_behind(
    wechatpay_server: FakeWeChatPay,
) -> None:
    before = workers()
    async with wechatpay_server.client(sign_in_thread=True) as wxpay:
        calls = [
            asyncio.ensure_future(wxpay.v3.security.echo.post(json={"echo_message": str(n)}))
            for n in range(20)
        ]
        deadline = time.monotonic() + 5
        while not (started := workers() - before) and time.monotonic() < deadline:  # noqa: ASYNC110 - threads have no event to await
            await asyncio.sleep(0.001)  # until the worker has been handed signatures
        assert started, "no signing thread started"
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert await workers_gone(started), "the signing thread outlived close()"


def test_sign_in_thread_takes_only_its_three_values(wechatpay_server: FakeWeChatPay) -> None:
    with pytest.raises(ConfigError, match="'auto'"):
        wechatpay_server.client(sign_in_thread="sometimes")


async def _sign_and_send_in_the_child(
    url: str, middlewares: tuple[aiohttp.ClientMiddlewareType, ...], key: RecordingKey
) -> int:
    """In a forked child: one request through the parent's signing middleware, on a loop
    of the child's own. 0 when it was signed in a worker thread and answered, else 2."""
    async with (
        aiohttp.ClientSession(middlewares=middlewares) as session,
        session.post(
            url + "/v3/security/echo",
            data=b'{"echo_message":"child"}',
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        ) as answer,
    ):
        await answer.read()
        status = answer.status
    return 0 if status == 200 and key.threads[-1] == WORKER_NAME else 2


async def test_a_forked_process_signs_with_a_worker_of_its_own(
    wechatpay_server: FakeWeChatPay,
) -> None:
    # The worker thread of the parent does not exist in a child forked after it started
    # (a pre-fork server, say): the child's first signature must start a new one, not wait
    # for ever on a thread that is gone.
    key = recording_key(wechatpay_server)
    async with wechatpay_server.client(private_key=key, sign_in_thread=True) as wxpay:
        assert await echo_many(wxpay, 1) == [200]
        assert workers(), "no signing thread in the parent"
        readable, writable = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
            child = os.fork()
        if child == 0:  # pragma: no cover - the child process, which never returns
            outcome = 1
            try:
                outcome = asyncio.run(
                    asyncio.wait_for(
                        _sign_and_send_in_the_child(wechatpay_server.url, wxpay.middlewares, key),
                        10,
                    )
                )
            finally:
                os.write(writable, bytes([outcome]))
                os._exit(0)
        os.close(writable)
        # The parent's loop serves the child's request meanwhile.
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, os.read, readable, 1)
        try:
            reported = await asyncio.wait_for(asyncio.shield(reading), 20)
        finally:
            os.kill(child, signal.SIGKILL)  # a child that hangs; harmless once it has exited
            await reading  # returns once the child's end of the pipe is closed
            os.close(readable)
            await loop.run_in_executor(None, os.waitpid, child, 0)
    assert reported == bytes([0]), "the child's request was not signed in a worker of its own"
    assert [request.body for request in wechatpay_server.requests][-1] == (
        b'{"echo_message":"child"}'
    )
