"""aiohttp client middlewares: retry, sign every request, verify every answer.

They work on any ``aiohttp.ClientSession`` (aiohttp >= 3.12)::

    async with aiohttp.ClientSession(middlewares=wxpay.middlewares) as session:
        ...

Order matters: retry wraps signing, which wraps verifying, so that every attempt is
signed afresh and every attempt's answer is read and verified within the attempt's time.
They hold on any session, the application's own included:

* a request to a host outside the client's WeChat Pay hosts is never signed (it is refused
  with :class:`~wechatpay_chain.errors.UntrustedHostError` before it is sent);
* a redirect is never followed: a 3xx answer is an :class:`~wechatpay_chain.errors.ApiError`;
* only :class:`RetryMiddleware`'s rules send a request again (aiohttp's own resend of a
  "idempotent" PUT on a dropped pooled connection is stopped: the error that ends the
  attempts is raised as ours, which aiohttp does not retry);
* answers are read within a size limit, and compressed answers are not asked for.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp
import attrs
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

from ._aiohttp import as_transport_error, read_limited, read_prefix
from ._deadlines import Deadlines, raise_if_expired
from ._signing_thread import SigningThread
from ._wire import HEADER_SERIAL
from .errors import ApiError, ClientClosedError, UnknownSerialError, UntrustedHostError
from .retries import RetryMode, RetryPolicy, retry_after_seconds, retryable_error, retryable_status
from .signing import Signer
from .verifying import Verifier

__all__ = [
    "ERROR_BODY_LIMIT",
    "MAX_RESPONSE_BODY",
    "RetryMiddleware",
    "SignInThread",
    "SigningMiddleware",
    "VerifyingMiddleware",
]

logger = logging.getLogger("wechatpay_chain")
# Deadlines need Task.uncancel (3.11); 3.10 bounds an attempt with wait_for.
_TASKS_UNCANCEL = sys.version_info >= (3, 11)

#: The largest answer read by default (a JSON answer; downloads stream): WeChat Pay's
#: largest documented JSON answers (a page of a list) are tens of KiB.
MAX_RESPONSE_BODY = 4 * 1024 * 1024
#: How much of an error answer's body is kept (``ApiError.body``); the rest is not read.
ERROR_BODY_LIMIT = 64 * 1024


def _anywhere(url: URL) -> bool:
    return True


def _nothing_unsigned(method: str, url: URL) -> bool:
    return False


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
    #: Whether a URL is on one of the client's WeChat Pay hosts; nothing else is signed.
    allowed: Callable[[URL], bool] = attrs.field(default=_anywhere, repr=False)
    # Working state, not configuration: left out of repr, equality and hashing.
    _thread: SigningThread = attrs.field(init=False, repr=False, eq=False)
    _in_flight: _InFlight = attrs.field(init=False, repr=False, eq=False, factory=_InFlight)

    def __attrs_post_init__(self) -> None:
        if self.in_thread not in (True, False, "auto"):
            raise ValueError(f"in_thread takes True, False or 'auto'; got {self.in_thread!r}")
        object.__setattr__(self, "_thread", SigningThread(self.signer.private_key))
        if self.signer.external and self.in_thread == "auto":
            # A key held elsewhere answers over a device or the network: never on the loop.
            object.__setattr__(self, "in_thread", True)

    def stop(self) -> None:
        """End the worker thread (a later request starts it again if it needs one)."""
        self._thread.stop()

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if not self.allowed(request.url):
            raise UntrustedHostError(
                f"refusing to sign a request to {request.url.origin()}: it is not one of the "
                "client's WeChat Pay hosts"
            )
        # The signature covers the body as received; a compressed answer would also have to
        # be inflated, unbounded, before it could be checked.
        request.headers["Accept-Encoding"] = "identity"
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
    """Reads every answer within the attempt, and verifies every 2xx before anything above
    it sees a byte.

    A 2xx body is read up to ``max_body`` bytes (a larger one is a
    :class:`~wechatpay_chain.errors.BodyTooLargeError`) and verified; a failure raises a
    :class:`~wechatpay_chain.errors.VerificationError` and drops the connection: nothing
    unverified is returned. Of an error answer, the first ``ERROR_BODY_LIMIT`` bytes are
    read; a redirect raises :class:`~wechatpay_chain.errors.ApiError` rather than being
    followed. The documented unsigned downloads (``unsigned``) are left unread, for the
    caller to stream. ``check=False`` reads without verifying (the certificate download,
    which is verified with the keys it brings).
    """

    verifier: Verifier
    #: Called with a serial no key is held for; ``True`` when it taught one (a certificate
    #: download), and the answer is verified again.
    learn: Callable[[str], Awaitable[bool]] | None = None
    #: Whether ``(method, url)`` is a documented unsigned download of the client's hosts.
    unsigned: Callable[[str, URL], bool] = attrs.field(default=_nothing_unsigned, repr=False)
    max_body: int = MAX_RESPONSE_BODY
    check: bool = True

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)
        try:
            status = response.status
            if not 200 <= status < 300:
                await read_prefix(response, ERROR_BODY_LIMIT)
                if 300 <= status < 400:
                    # Never followed: the next hop would get the request, and perhaps a
                    # signature, meant for WeChat Pay.
                    raise ApiError.from_answer(status, response.headers, await response.read())
                return response
            if request.method == "GET" and self.unsigned(request.method, request.url):
                return response
            body = await read_limited(response, self.max_body, "the answer")
            if self.check:
                try:
                    self.verifier.verify(response.headers, body)
                except UnknownSerialError as unknown:
                    if self.learn is None:
                        raise
                    try:
                        learned = await self.learn(response.headers[HEADER_SERIAL].strip())
                    except UnknownSerialError as why:  # it says why it could not learn
                        raise UnknownSerialError(str(why), request_id=unknown.request_id) from None
                    if not learned:
                        raise
                    self.verifier.verify(response.headers, body)
        except BaseException:
            response.close()
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
    #: The whole call's time, all attempts included (a per-call ``timeout=``); ``None``:
    #: only the policy's deadline bounds them.
    budget: float | None = None
    #: Whether the client was closed: then nothing is sent again.
    closed: Callable[[], bool] | None = attrs.field(default=None, repr=False, eq=False)
    _deadlines: Deadlines = attrs.field(init=False, factory=Deadlines, repr=False, eq=False)

    async def __call__(  # noqa: PLR0912 - one frame per request: the hot path of every call
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        method = request.method
        attempts = self.policy.attempts
        first = time.monotonic()
        ends = None if self.budget is None else first + self.budget
        for attempt in range(1, attempts + 1):
            started = first if attempt == 1 else time.monotonic()
            limit = self.attempt_timeout
            if ends is not None:
                limit = ends - started if limit is None else min(limit, ends - started)
                if limit <= 0:
                    raise _ours(asyncio.TimeoutError(), request)
            try:
                if limit is None:
                    response = await handler(request)
                elif _TASKS_UNCANCEL:
                    # asyncio.timeout's semantics with one timer for all attempts (see
                    # _deadlines.py); not wait_for's extra task either.
                    deadline = self._deadlines.start(limit)
                    try:
                        response = await handler(request)
                    except asyncio.CancelledError as cancelled:
                        raise_if_expired(deadline, cancelled)
                        raise
                    finally:
                        self._deadlines.finish(deadline)
                else:  # pragma: no cover - Python 3.10
                    response = await asyncio.wait_for(handler(request), limit)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                _log_attempt(method, request, None, error, attempt, attempts, started)
                # The error that ends the attempts is raised as ours: aiohttp resends an
                # "idempotent" method (PUT included) by itself on some of its own errors,
                # and only this policy may decide that.
                if attempt == attempts or not retryable_error(error, method, self.mode):
                    raise _ours(error, request) from error
                wait = self.policy.delay(attempt + 1, self.rng)
                if not self._may_wait(first, ends, wait):
                    raise _ours(error, request) from error
                await asyncio.sleep(wait)
                self._check_open(request)
                continue
            if logger.isEnabledFor(logging.DEBUG):
                _log_attempt(method, request, response, None, attempt, attempts, started)
            if attempt == attempts or not retryable_status(response.status, method, self.mode):
                return response
            named = retry_after_seconds(response.headers.get("Retry-After"))
            wait = named if named is not None else self.policy.delay(attempt + 1, self.rng)
            if not self._may_wait(first, ends, wait):
                return response  # the answer stands: waiting longer would break the deadline
            response.release()
            await asyncio.sleep(wait)
            self._check_open(request)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _may_wait(self, first: float, ends: float | None, wait: float) -> bool:
        now = time.monotonic()
        if self.closed is not None and self.closed():
            return False
        return now - first + wait <= self.policy.deadline and (ends is None or now + wait < ends)

    def _check_open(self, request: ClientRequest) -> None:
        if self.closed is not None and self.closed():
            raise ClientClosedError(
                f"{request.method} {request.url.raw_path_qs}: the client was closed; not sent again"
            )


def _ours(error: BaseException, request: ClientRequest) -> BaseException:
    return as_transport_error(error, request.method, request.url.raw_path_qs)


def _log_attempt(  # noqa: PLR0917 - one log line's fields, called from two places
    method: str,
    request: ClientRequest,
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
            request.url.raw_path_qs,
            outcome,
            request_id or "-",
            attempt,
            attempts,
            (time.monotonic() - started) * 1000,
        )
