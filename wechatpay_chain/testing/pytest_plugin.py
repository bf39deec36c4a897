"""pytest fixtures for testing code that calls WeChat Pay, registered through ``pytest11``.

``wechatpay_server`` is a started :class:`FakeWeChatPay`; ``wechatpay_client`` is a
``WeChatPay`` bound to it, closed after the test. Both are async fixtures run by
pytest-asyncio (``pip install 'wechatpay-chain[testing]'``; ``asyncio_mode = "auto"`` or
mark the tests with ``@pytest.mark.asyncio``). ``wechatpay_thread_server`` serves from a
thread of its own and ``wechatpay_sync_client`` is a ``SyncWeChatPay`` for it: plain
fixtures for blocking code. RSA keys are generated once per test session, so a fresh
server per test costs milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ..client import WeChatPay
    from ..sync import SyncWeChatPay
    from .server import FakeWeChatPay

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures then explain what is missing
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture(scope="session")
def wechatpay_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The merchant's and WeChat Pay's throwaway private keys, shared by the session."""
    # Imports are inside the fixtures: pytest loads this plugin in every run of every
    # project where the package is installed, and most of those runs never use it.
    from .keypairs import generate_private_key  # noqa: PLC0415

    return generate_private_key(), generate_private_key()


@pytest.fixture
def wechatpay_thread_server(
    wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> Iterator[FakeWeChatPay]:
    """A fake WeChat Pay server serving from a background thread (``serve_in_thread``), for
    blocking code and for frameworks with a loop of their own; no pytest-asyncio needed."""
    from .server import FakeWeChatPay  # noqa: PLC0415 - see wechatpay_keys

    merchant_key, wechatpay_key = wechatpay_keys
    server = FakeWeChatPay(merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key)
    with server.serve_in_thread():
        yield server


@pytest.fixture
def wechatpay_sync_client(wechatpay_thread_server: FakeWeChatPay) -> Iterator[SyncWeChatPay]:
    """A ``SyncWeChatPay`` for the threaded fake server's merchant, closed after the test."""
    with wechatpay_thread_server.sync_client() as client:
        yield client


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def wechatpay_server(
        wechatpay_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    ) -> AsyncIterator[FakeWeChatPay]:
        """A started fake WeChat Pay server on 127.0.0.1 with a fresh state."""
        from .server import FakeWeChatPay  # noqa: PLC0415 - see wechatpay_keys

        merchant_key, wechatpay_key = wechatpay_keys
        async with FakeWeChatPay(
            merchant_private_key=merchant_key, wechatpay_private_key=wechatpay_key
        ) as server:
            yield server

    @pytest_asyncio.fixture
    async def wechatpay_client(wechatpay_server: FakeWeChatPay) -> AsyncIterator[WeChatPay]:
        """A ``WeChatPay`` client for the fake server's merchant."""
        async with wechatpay_server.client() as client:
            yield client

else:  # pragma: no cover

    @pytest.fixture
    def wechatpay_server() -> None:
        pytest.fail("the wechatpay_server fixture needs pytest-asyncio: pip install pytest-asyncio")

    @pytest.fixture
    def wechatpay_client() -> None:
        pytest.fail("the wechatpay_client fixture needs pytest-asyncio: pip install pytest-asyncio")
