"""Shared fixtures. The fake server and client fixtures come from the package's own pytest
plugin (``wechatpay_server``, ``wechatpay_client``, ``wechatpay_keys``), so every test here
also exercises what users get."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The official vectors (copied from shared/vectors into tests/data)."""
    document: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
    return document


@pytest_asyncio.fixture(autouse=True)
async def _no_loop_errors() -> AsyncIterator[None]:
    """Fail a test whose loop reported an error: an unclosed aiohttp session or connector,
    a task exception nobody retrieved, a callback that raised."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not reported, [context.get("message") for context in reported]
