"""aiohttp client middlewares: retry, sign every request, verify every 2xx response.

They work on any ``aiohttp.ClientSession`` (aiohttp >= 3.12)::

    async with aiohttp.ClientSession(middlewares=wxpay.middlewares) as session:
        ...

Order matters: retry wraps signing, which wraps verifying, so that every attempt is
signed afresh and every attempt's answer is verified.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp
import attrs
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from .deadlines import Deadlines, raise_if_expired
from .errors import UnknownSerialError
from .retries import RetryMode, RetryPolicy, retry_after_seconds, retryable_error, retryable_status
from .signing import Signer
from .signing_thread import SigningThread
from .verifying import Verifier

__all__ = [
    "RetryMiddleware",
    "SignInThread",
    "SigningMiddleware",
    "VerifyingMiddleware",
    "is_unsigned_download",
]

logger = logging.getLogger("wechatpay_chain")
# Deadlines need Task.uncancel (3.11); 3.10 bounds an attempt with wait_for.
_TASKS_UNCANCEL = sys.version_info >= (3, 11)

# Endpoints whose 2xx answer is a file stream that WeChat Pay does not sign (PROTOCOL.md
# section 2.5). Matched at the end of the path so that a base URL with a path prefix works.
_UNSIGNED_DOWNLOADS = re.compile(
    r"(?:/v3/billdownload/file"
    r"|/v3/transferdownload/(?:elecvoucherfile|signfile)"
    r"|/v3/new-tax-control-fapiao/download"
    r"|/(?:hk/)?v3/statements|/v3/global/statements"
    r"|/v3/(?:global/)?merchant-service/images/(?!upload$)[^/]+)$"
)


def is_unsigned_download(method: str, path: str) -> bool:
    """Whether ``method path`` is one of the documented unsigned download endpoints."""
    return method == "GET" and _UNSIGNED_DOWNLOADS.search(path) is not None


#: Where :class:`SigningMiddleware` computes the RSA signature: ``"auto"`` on the loop while
#: the request is the only one in flight and in the worker thread otherwise, ``True``
#: always in the thread, ``False`` always on the loop.
SignInThread = bool | Literal["auto"]


@attrs.define(eq=False)
class _InFlight:
    count: int = 0


@attrs.frozen
class SigningMiddleware:
    """Adds ``Authorization`` over the request target and body exactly as they are sent.

    ``in_thread`` says where the RSA signature is computed (see :data:`SignInThread`).
    The default, ``"auto"``, signs a lone request on the loop (a hand-over to a thread
    would only add its latency) and, once other requests are in flight, in one worker
    thread that signs whatever is waiting as a batch (:mod:`wechatpay_chain.signing_thread`),
    so that the loop serves their answers meanwhile. ``docs/performance.md`` has the
    numbers behind this choice.
    """

    signer: Signer
    in_thread: SignInThread = "auto"
    # Working state, not configuration: left out of repr, equality and hashing.
    _thread: SigningThread = attrs.field(init=False, repr=False, eq=False)
    _in_flight: _InFlight = attrs.field(init=False, repr=False, eq=False, factory=_InFlight)

    def __attrs_post_init__(self) -> None:
        if self.in_thread not in (True, False, "auto"):
            raise ValueError(f"in_thread takes True, False or 'auto'; got {self.in_thread!r}")
        object.__setattr__(self, "_thread", SigningThread(self.signer.private_key))

    def stop(self) -> None:
        """End the worker thread (a later request starts it again if it needs one)."""
        self._thread.stop()

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        # A media upload signs its meta JSON, not the multipart body (PROTOCOL.md section 7).
        signed = getattr(request.body, "signed_body", None)
        if isinstance(signed, bytes):
            body = signed
        else:
            body = b"" if isinstance(request.body, bytes) else await request.body.as_bytes()
        # In flight: every request past this point and not yet answered, those waiting for
        # their signature included (were only sent ones counted, a backlog at the worker
        # would read as an idle client and send the next signature to the loop).
        in_flight = self._in_flight
        others = in_flight.count
        in_flight.count += 1
        try:
            if self.in_thread is False or (self.in_thread == "auto" and others == 0):
                request.headers["Authorization"] = self.signer.authorization(
                    request.method, request.url.raw_path_qs, body
                )
            else:
                draft = self.signer.draft(request.method, request.url.raw_path_qs, body)
                request.headers["Authorization"] = draft.authorization(
                    await self._thread.sign(draft.message)
                )
            return await handler(request)
        finally:
            in_flight.count -= 1


@attrs.frozen
class VerifyingMiddleware:
    """Reads and verifies every 2xx body before anything above it sees a byte.

    A failure raises a :class:`~wechatpay_chain.errors.VerificationError` and releases the
    connection; nothing unverified is returned. Non-2xx answers pass through unverified (they
    are errors either way), and so do the unsigned downloads.
    """

    verifier: Verifier
    #: Called with a serial no key is held for; ``True`` when it taught one (a certificate
    #: download), and the answer is verified again.
    learn: Callable[[str], Awaitable[bool]] | None = None

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)
        if not 200 <= response.status < 300 or is_unsigned_download(
            request.method, request.url.raw_path
        ):
            return response
        try:
            body = await response.read()
            try:
                self.verifier.verify(response.headers, body)
            except UnknownSerialError:
                if self.learn is None or not await self.learn(
                    response.headers["Wechatpay-Serial"].strip()
                ):
                    raise
                self.verifier.verify(response.headers, body)
        except BaseException:
            response.release()
            raise
        return response


@attrs.frozen
class RetryMiddleware:
    """Sends a request again when :mod:`wechatpay_chain.retries` says it is safe.

    Placed before :class:`SigningMiddleware`, so that every attempt is signed afresh (new
    timestamp and nonce) and every answer verified. ``attempt_timeout`` bounds each
    attempt; the policy's ``deadline`` bounds them all. Logs each attempt at DEBUG on the
    ``wechatpay_chain`` logger: method, target, status or error, Request-ID, attempt and
    elapsed time; never a header's value.
    """

    policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    mode: RetryMode = None
    attempt_timeout: float | None = None
    rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)
    _deadlines: Deadlines = attrs.field(init=False, factory=Deadlines, repr=False, eq=False)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        method, target = request.method, request.url.raw_path_qs
        attempts = self.policy.attempts
        first = time.monotonic()
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                if self.attempt_timeout is None:
                    response = await handler(request)
                elif _TASKS_UNCANCEL:
                    # asyncio.timeout's semantics with one timer for all attempts (see
                    # deadlines.py); not wait_for's extra task either.
                    deadline = self._deadlines.start(self.attempt_timeout)
                    try:
                        response = await handler(request)
                    except asyncio.CancelledError as cancelled:
                        raise_if_expired(deadline, cancelled)
                        raise
                    finally:
                        self._deadlines.finish(deadline)
                else:  # pragma: no cover - Python 3.10
                    response = await asyncio.wait_for(handler(request), self.attempt_timeout)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                _log_attempt(method, target, None, error, attempt, attempts, started)
                if attempt == attempts or not retryable_error(error, method, self.mode):
                    raise
                wait = self.policy.delay(attempt + 1, self.rng)
                if time.monotonic() - first + wait > self.policy.deadline:
                    raise
                await asyncio.sleep(wait)
                continue
            _log_attempt(method, target, response, None, attempt, attempts, started)
            if attempt == attempts or not retryable_status(response.status, method, self.mode):
                return response
            named = retry_after_seconds(response.headers.get("Retry-After"))
            wait = named if named is not None else self.policy.delay(attempt + 1, self.rng)
            if time.monotonic() - first + wait > self.policy.deadline:
                return response  # the answer stands: waiting longer would break the deadline
            response.release()
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _log_attempt(  # noqa: PLR0917 - one log line's fields, called from two places
    method: str,
    target: str,
    response: ClientResponse | None,
    error: BaseException | None,
    attempt: int,
    attempts: int,
    started: float,
) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        outcome = str(response.status) if response is not None else type(error).__name__
        request_id = response.headers.get("Request-ID") if response is not None else None
        logger.debug(
            "%s %s -> %s (Request-ID %s, attempt %d/%d, %.1f ms)",
            method,
            target,
            outcome,
            request_id or "-",
            attempt,
            attempts,
            (time.monotonic() - started) * 1000,
        )
