"""``Transport``: how a :class:`~wechatpay_chain._request.Request` reaches WeChat Pay.

The way of one request, in this file::

    Transport.send(request)
      -> the session of this process and this event loop (refused on another loop)
      -> the upload's multipart body, built once (its file hashed)
      -> session.request(..., middlewares=(retry, sign, verify))   # middleware.py
           retry: attempts within the timeout and the policy's deadline
           sign:  Authorization over the target and body exactly as sent
           verify: the answer read within its size limit and verified within the attempt
      -> on a connection failure, the same request to the backup host
      -> Response, or ApiError for an answer outside 2xx, or a TransportError

It owns the aiohttp session and its connector, the timeouts, the failover, the cached
middleware tuples and (with :mod:`wechatpay_chain._aiohttp`) the mapping of aiohttp's
errors. Nothing else touches the session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl as ssl_module
from collections.abc import Awaitable, Callable

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._aiohttp import as_transport_error, read_limited, read_prefix, transport_errors
from ._request import Request
from .apiv2 import MAX_XML_SIZE, check_answer, is_xml
from .errors import (
    ApiError,
    ClientClosedError,
    ConnectError,
    InvalidResponseError,
    LoopMismatchError,
    TransportError,
    UntrustedHostError,
    WeChatPayError,
)
from .files.downloads import Download
from .files.uploads import ProgressCallback
from .middleware import (
    ERROR_BODY_LIMIT,
    MAX_RESPONSE_BODY,
    RetryMiddleware,
    SigningMiddleware,
    SignInThread,
    VerifyingMiddleware,
)
from .response import Response
from .retries import RetryMode, RetryPolicy, is_idempotent_method
from .signing import Signer
from .verifying import Verifier

__all__ = ["FAILOVER_USER_AGENT_SUFFIX", "Transport"]

logger = logging.getLogger("wechatpay_chain")

#: Appended to the User-Agent of a request sent to the backup host, as the Java SDK does.
FAILOVER_USER_AGENT_SUFFIX = " (Retried-V1)"
# WeChat Pay closes idle connections after about 8 s; reusing one it already closed would
# cost a failed attempt, so the pool drops them first.
_KEEPALIVE_SECONDS = 5.0

# Endpoints whose 2xx answer is a file stream that WeChat Pay does not sign (PROTOCOL.md
# section 2.5), matched on the whole path below the base URL.
_UNSIGNED_DOWNLOADS = re.compile(
    r"/v3/billdownload/file"
    r"|/v3/transferdownload/(?:elecvoucherfile|signfile)"
    r"|/v3/new-tax-control-fapiao/download"
    r"|/(?:hk/)?v3/statements|/v3/global/statements"
    r"|/v3/(?:global/)?merchant-service/images/(?!upload$)[^/]+"
)


class _Forks:
    """Counts the forks this process came through, so that a transport can tell that its
    session (and its sockets) belong to a parent process."""

    generation = 0

    @classmethod
    def forked(cls) -> None:
        cls.generation += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_Forks.forked)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    # yarl keeps the scheme and the host in lower case, and the port explicit or default.
    return (url.scheme, url.raw_host, url.port)


@attrs.define(eq=False)
class Transport:
    """Sends :class:`~wechatpay_chain._request.Request` values for one client.

    ``session``, when given, is the application's: used as it is and never closed.
    Otherwise the transport opens one in the event loop of its first call, with a
    connector of its own. A client belongs to that loop: a call from another loop is
    refused before anything is sent (:class:`~wechatpay_chain.errors.LoopMismatchError`),
    and a forked child drops the parent's session unclosed (its sockets are the parent's)
    and opens its own.
    """

    base_url: str
    failover_url: str | None
    timeout: aiohttp.ClientTimeout
    retry: RetryPolicy
    signer: Signer
    verifier: Verifier
    #: Called with a serial no key is held for (the certificate manager's learn).
    learn: Callable[[str], Awaitable[bool]] | None = None
    sign_in_thread: SignInThread = "auto"
    max_body: int = MAX_RESPONSE_BODY
    session: aiohttp.ClientSession | None = None
    #: The APIv2 key, which checks the ``sign`` of v2 answers.
    apiv2_key: str | None = attrs.field(default=None, repr=False)
    #: The TLS context of the transport's own connector (the client certificate's, or the
    #: user's trust store); ``None``: the default verification.
    ssl: ssl_module.SSLContext | None = attrs.field(default=None, repr=False)
    rng: random.Random = attrs.field(factory=random.Random)  # jitter, not secrets
    #: Called once the first session exists (the certificate manager's start).
    on_open: Callable[[], None] | None = None

    #: The middlewares, which sign only for this transport's hosts.
    signing: SigningMiddleware = attrs.field(init=False)
    verifying: VerifyingMiddleware = attrs.field(init=False)
    _owns_session: bool = attrs.field(init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _forks: int = attrs.field(init=False, factory=lambda: _Forks.generation)
    _closed: bool = attrs.field(init=False, default=False)
    # A parent's sessions, kept unclosed in a forked child: closing them would act on the
    # parent's connections.
    _inherited: list[aiohttp.ClientSession] = attrs.field(init=False, factory=list)
    # The middlewares of a call with the client's own timeout, by retry mode and whether
    # the answer is verified: at most six tuples, built on first use.
    _middlewares: dict[tuple[RetryMode, bool, str], tuple[aiohttp.ClientMiddlewareType, ...]] = (
        attrs.field(init=False, factory=dict)
    )
    _aiohttp_timeout: aiohttp.ClientTimeout = attrs.field(init=False)
    _trusted: frozenset[tuple[str, str | None, int | None]] = attrs.field(init=False)
    # The base URLs' paths, below which the unsigned download endpoints are matched.
    _prefixes: tuple[str, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._owns_session = self.session is None
        self._aiohttp_timeout = _aiohttp_timeout(self.timeout)
        hosts = (
            [self.base_url]
            if self.failover_url is None
            else [
                self.base_url,
                self.failover_url,
            ]
        )
        self._trusted = frozenset(_origin(URL(host)) for host in hosts)
        self._prefixes = tuple(dict.fromkeys(URL(host).raw_path.rstrip("/") for host in hosts))
        self.signing = SigningMiddleware(self.signer, self.sign_in_thread, allowed=self.trusts)
        self.verifying = VerifyingMiddleware(
            self.verifier, self.learn, unsigned=self.is_unsigned_download, max_body=self.max_body
        )

    # -- hosts ------------------------------------------------------------------------------

    def trusts(self, url: URL) -> bool:
        """Whether ``url`` is on one of the client's WeChat Pay hosts (scheme, host, port),
        the only places a signed request goes."""
        # aiohttp takes credentials out of a URL before the middlewares see it; url_of
        # refuses them in a download URL.
        return (url.scheme, url.raw_host, url.port) in self._trusted

    def is_unsigned_download(self, method: str, url: URL) -> bool:
        """Whether ``method url`` is one of the documented unsigned download endpoints of
        the client's hosts (the whole path below the base URL, not a suffix)."""
        if method != "GET":
            return False
        path = url.raw_path
        return any(
            path.startswith(prefix) and _UNSIGNED_DOWNLOADS.fullmatch(path, len(prefix))
            for prefix in self._prefixes
        ) and self.trusts(url)

    def url_of(self, target: str) -> URL:
        """The URL of a request target (``/v3/...``) or of an absolute URL, which must be on
        one of the client's hosts (:class:`UntrustedHostError` otherwise)."""
        if "://" not in target:
            path = target if target.startswith("/") else "/" + target
            return URL(self.base_url + path, encoded=True)
        url = URL(target)
        if not self.trusts(url) or url.raw_user is not None or url.raw_password is not None:
            allowed = ", ".join(
                str(URL(host).origin()) for host in (self.base_url, self.failover_url) if host
            )
            raise UntrustedHostError(
                f"refusing to send the signed request to {url.origin()}: it goes only to the "
                f"configured WeChat Pay hosts ({allowed})"
            )
        return url

    # -- lifecycle --------------------------------------------------------------------------

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called (the retry middleware asks before a resend)."""
        return self._closed

    def open(self) -> aiohttp.ClientSession:
        """The session for a call in the running loop, opened on first use; refuses a
        closed client and a second event loop before anything is sent."""
        if self._closed:
            raise ClientClosedError("this WeChatPay client is closed; create a new one")
        if self._forks != _Forks.generation:
            self._leave_parent()
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                raise LoopMismatchError(
                    "this WeChatPay client belongs to the event loop it first ran in, and "
                    "this call runs in another (asyncio.run() per call does this): nothing "
                    "was sent. Create the client inside the loop that uses it (one per "
                    "asyncio.run(), or one for the application's loop), or use "
                    "SyncWeChatPay from blocking code"
                )
            self._loop = loop
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    keepalive_timeout=_KEEPALIVE_SECONDS,
                    ssl=True if self.ssl is None else self.ssl,
                ),
                # Answers are signed over the bytes as sent; nothing is inflated.
                auto_decompress=False,
            )
            if self.on_open is not None:
                self.on_open()
        return self.session

    def _leave_parent(self) -> None:
        self._forks = _Forks.generation
        self._loop = None
        self._middlewares.clear()  # their deadline timers belong to the parent's loop
        if self.session is None:
            return
        if not self._owns_session:
            raise TransportError(
                "the aiohttp session given to this client was opened before fork(): its "
                "connections are the parent's. Give the child process a session of its own"
            )
        self._inherited.append(self.session)
        self.session = None

    async def close(self) -> None:
        """Close the session the transport opened (idempotent); calls in flight end with
        :class:`~wechatpay_chain.errors.ClientClosedError` and nothing is sent again."""
        self._closed = True
        # The cached retry middlewares hold their deadlines' timers, and so the loop.
        self._middlewares.clear()
        loop, self._loop = self._loop, None
        session, self.session = self.session, None
        if session is None or not self._owns_session:
            return
        if self._forks != _Forks.generation:
            self._inherited.append(session)  # the parent's: left alone
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is a coroutine
            running = None
        if loop is not None and (loop is not running or loop.is_closed()):
            # Its loop is gone (or not this one): its connections cannot be closed from
            # here, and their sockets go with the loop's garbage.
            session.detach()
            return
        await session.close()

    # -- sending ----------------------------------------------------------------------------

    async def send(self, request: Request) -> Response:
        """Send ``request`` (to the backup host after a connection failure, when allowed)
        and return its verified answer."""
        session = self.open()
        body = request.body if request.upload is None else await request.upload.payload()
        headers = request.headers
        try:
            status, answer_headers, received = await self._exchange(
                session, request.base_url or self.base_url, request, body, headers
            )
        except TransportError as error:
            if not self._may_fail_over(error, request):
                raise
            logger.warning(
                "%s %s: %s; sending it to the backup host %s",
                request.method,
                request.target,
                error,
                self.failover_url,
            )
            status, answer_headers, received = await self._exchange(
                session, self.failover_url or "", request, body, _failover_headers(headers)
            )
        if request.api == "v2":
            self._check_v2(request, status, answer_headers, received)
        elif not 200 <= status < 300:
            raise ApiError.from_answer(status, answer_headers, received)
        return Response(
            status=status,
            headers=answer_headers,
            body=received,
            method=request.method,
            target=request.target,
        )

    def _check_v2(
        self, request: Request, status: int, headers: CIMultiDictProxy[str], body: bytes
    ) -> None:
        """An APIv2 answer: its ``sign`` checked (with the request's algorithm) before its
        codes; a failure is an ``ApiError`` with every field. A file endpoint's answer (a
        bill) is XML only when it is an error."""
        if 200 <= status < 300 and not request.verify and not is_xml(body[:64]):
            return  # a file (CSV, gzip), unsigned by design, as the endpoint table says
        check_answer(
            body,
            apiv2_key=self.apiv2_key or "",
            sign_type=request.sign_type or "MD5",
            signed=request.verify,
            status=status,
            headers=headers,
        )

    async def open_stream(
        self, request: Request, on_progress: ProgressCallback | None = None
    ) -> Download:
        """Send a download and return the open answer as a :class:`Download`, for the caller
        to stream and close: a v3 ``GET`` of a file (a signed one is read and verified
        already), or an APIv2 bill, whose first bytes tell a file from an XML error."""
        session = self.open()
        v2 = request.api == "v2"
        url = (
            URL((request.base_url or self.base_url) + request.target, encoded=True)
            if v2
            else self.url_of(request.target)
        )
        timeout = request.timeout if request.timeout is not None else self.timeout
        retry = self._middlewares_for(request.retry, True, timeout, request.api)[0]
        try:
            response = await session.request(
                request.method,
                url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
                raise_for_status=False,
                read_bufsize=1024 * 1024,  # flow control: a MiB in memory at the most
                # An APIv2 file is neither signed nor read here: the caller streams it.
                middlewares=(retry,) if v2 else self._middlewares_for(request.retry, True, timeout),
            )
        except Exception as error:
            raise self._as_ours(error, request) from error
        buffered, head = None, b""
        try:
            if not 200 <= response.status < 300:
                with transport_errors(request.method, request.target):
                    body = await read_prefix(response, ERROR_BODY_LIMIT)
                raise ApiError.from_answer(response.status, response.headers, body)
            with transport_errors(request.method, request.target):
                if v2:
                    head = await _first_bytes(response, 64)
                    if is_xml(head):  # an error, as XML: read whole and raised
                        rest = await read_limited(response, MAX_XML_SIZE, "the XML answer")
                        self._check_v2(request, response.status, response.headers, head + rest)
                        raise InvalidResponseError(
                            "an XML answer where a file was expected",
                            status=response.status,
                            request_id=response.headers.get("Request-ID"),
                        )
                elif not self.is_unsigned_download(request.method, url):
                    buffered = await response.read()  # read and verified by the middleware
        except BaseException:
            response.close()
            raise
        return Download(
            response,
            target=url.raw_path_qs,
            on_progress=on_progress,
            buffered=buffered,
            head=head,
        )

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        request: Request,
        body: object,
        headers: CIMultiDictProxy[str],
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One call to one host, with its retries: status, headers and body, or raise."""
        own_timeout = request.timeout is None
        middlewares = self._middlewares_for(
            request.retry, request.verify, None if own_timeout else request.timeout, request.api
        )
        try:
            async with session.request(
                request.method,
                URL(base_url + request.target, encoded=True),
                data=body,
                headers=headers,
                # Built once for the client's own timeout, the usual case.
                timeout=self._aiohttp_timeout if own_timeout else _aiohttp_timeout(request.timeout),  # type: ignore[arg-type]
                allow_redirects=False,
                raise_for_status=False,
                middlewares=middlewares,
            ) as answer:
                # Read (and verified) by the middlewares, within the attempt.
                return answer.status, answer.headers, await answer.read()
        except Exception as error:
            raise self._as_ours(error, request) from error

    def _as_ours(self, error: Exception, request: Request) -> Exception:
        if self._closed and not isinstance(error, ClientClosedError):
            return ClientClosedError(
                f"{request.method} {request.target}: the client was closed while the call "
                "was in flight; its outcome at WeChat Pay is unknown"
            )
        if isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, WeChatPayError)):
            return as_transport_error(error, request.method, request.target)
        return error

    def _middlewares_for(
        self,
        mode: RetryMode,
        verify: bool,
        timeout: aiohttp.ClientTimeout | None,
        api: str = "v3",
    ) -> tuple[aiohttp.ClientMiddlewareType, ...]:
        if timeout is None:
            cached = self._middlewares.get((mode, verify, api))
            if cached is not None:
                return cached
        attempt = (self.timeout if timeout is None else timeout).total
        retry = RetryMiddleware(
            self.retry,
            mode,
            attempt,
            self.rng,
            # A per-call timeout bounds the whole call, all attempts and bodies included.
            budget=None if timeout is None else timeout.total,
            closed=self.is_closed,
        )
        middlewares: tuple[aiohttp.ClientMiddlewareType, ...]
        if api == "v2":
            # No Authorization: a v2 body carries its own sign. The answer is read within its
            # attempt and limit here, its sign checked by _check_v2.
            middlewares = (retry, attrs.evolve(self.verifying, check=False))
        elif verify:
            middlewares = (retry, self.signing, self.verifying)
        else:
            middlewares = (retry, self.signing, attrs.evolve(self.verifying, check=False))
        if timeout is None:
            self._middlewares[mode, verify, api] = middlewares
        return middlewares

    def _may_fail_over(self, error: TransportError, request: Request) -> bool:
        if self.failover_url is None or self._closed or request.retry == "never":
            return False
        # Nothing was sent when the connection failed: any method may go to the backup host.
        if request.base_url is not None:
            return False  # another host's operation: it has no backup of its own
        return (
            isinstance(error, ConnectError)
            or is_idempotent_method(request.method)
            or request.retry == "idempotent"
        )


def _failover_headers(headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
    copy = CIMultiDict(headers)
    copy["User-Agent"] = copy.get("User-Agent", "") + FAILOVER_USER_AGENT_SUFFIX
    return CIMultiDictProxy(copy)


def _aiohttp_timeout(attempt: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """What aiohttp is told: the connect and socket limits, and no total. The attempts are
    bounded one by one by the retry middleware (``total`` is the attempt's time, its body
    included) and together by the policy's deadline. An aiohttp total as well would only
    add a loop timer to every call, about 1 % of a call's time at concurrency 1
    (docs/performance.md)."""
    return attrs.evolve(attempt, total=None)


async def _first_bytes(response: aiohttp.ClientResponse, count: int) -> bytes:
    """Up to ``count`` bytes from the start of ``response``'s body (fewer at its end)."""
    head = b""
    while len(head) < count:
        chunk = await response.content.read(count - len(head))
        if not chunk:
            break
        head += chunk
    return head
