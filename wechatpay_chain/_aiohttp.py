"""What the library needs from aiohttp beyond a plain request: the one mapping from its
exceptions to ours, and reading an answer's body within a size limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp

from ._wire import HEADER_REQUEST_ID
from .errors import (
    BodyTooLargeError,
    ConnectError,
    RequestTimeoutError,
    TransportError,
    WeChatPayError,
)

__all__ = ["as_transport_error", "read_limited", "read_prefix", "transport_errors"]


def as_transport_error(error: BaseException, method: str, target: str) -> WeChatPayError:
    """Ours for one of aiohttp's (or asyncio's timeout): the only place this is decided.

    A ``WeChatPayError`` is returned as it is (a middleware already decided)."""
    if isinstance(error, WeChatPayError):
        return error
    if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return ConnectError(f"{method} {target}: cannot connect: {error}")
    if isinstance(error, asyncio.TimeoutError):
        return RequestTimeoutError(f"{method} {target}: no complete answer within the timeout")
    return TransportError(f"{method} {target}: {type(error).__name__}: {error}")


@contextlib.contextmanager
def transport_errors(method: str, target: str) -> Iterator[None]:
    """Raise aiohttp's errors (and timeouts) inside the block as ours."""
    try:
        yield
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        raise as_transport_error(error, method, target) from error


async def read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body of ``response``, refused with :class:`BodyTooLargeError` past ``limit``
    bytes (as announced by ``Content-Length``, or as read); the connection is then dropped.

    What was read is kept where ``response.read()`` finds it, so that code above this (an
    application's own, on its own session) reads the same verified bytes again.
    """
    announced = response.content_length
    if announced is not None and announced > limit:
        response.close()
        raise BodyTooLargeError(
            announced, limit, what=what, request_id=response.headers.get(HEADER_REQUEST_ID)
        )
    if announced is not None and "Content-Encoding" not in response.headers:
        # The framing bounds it: aiohttp reads no more than Content-Length bytes.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()
            raise BodyTooLargeError(
                size,
                limit,
                at_least=True,
                what=what,
                request_id=response.headers.get(HEADER_REQUEST_ID),
            )
    body = b"".join(chunks)
    # aiohttp caches a read body in ``_body``; setting it is the one way to hand the bytes
    # read here to ``response.read()``. At the end of the stream aiohttp has put the
    # connection back in its pool already (releasing the response here would make a later
    # read() fail).
    response._body = body
    return body


async def read_prefix(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most the first ``limit`` bytes of ``response``'s body (an error answer's): what
    does not fit is not read. aiohttp drops a connection whose answer was not read to the
    end when the response is released, rather than drain it. Reading again gives the same
    prefix."""
    if response._body is not None:  # read already, by a middleware below the caller
        return bytes(response._body)
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    response._body = body  # see read_limited
    return body
