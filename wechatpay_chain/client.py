"""``WeChatPay``: configuration, the aiohttp session's lifecycle, and the root of the chain."""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import platform
import random
import re
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

import aiohttp
import attrs
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._version import __version__
from .certificates import CERTIFICATES_TARGET, CertificateCache, CertificateManager
from .chain import Node, is_dunder
from .crypto import apiv3_key_bytes, rsa_oaep_decrypt, rsa_oaep_encrypt
from .endpoints._root import TypedRoot
from .errors import ApiError, ConfigError, ConnectError, RequestTimeoutError, TransportError
from .files import (
    Bills,
    Download,
    Opening,
    ProgressCallback,
    Upload,
    UploadPayload,
    open_download,
)
from .keys import KeySource
from .middleware import RetryMiddleware, SigningMiddleware, SignInThread, VerifyingMiddleware
from .notifications import Notifications
from .payments import Payments
from .response import Response
from .retries import RetryMode, RetryPolicy, is_idempotent_method
from .signing import Signer, new_nonce
from .uri import QueryValue, request_target, split_path
from .verifying import PublicKeyStore, Verifier

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "USER_AGENT", "WeChatPay"]

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
#: Per attempt. Generous for a payment API whose slowest documented calls answer in
#: seconds; the connect limit fails fast when a host is unreachable, so a retry or the
#: backup host still fits in the retry policy's deadline.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
#: The backup host of each primary (PROTOCOL.md section 10), used after connection failures.
BACKUP_HOSTS = {
    "api.mch.weixin.qq.com": "api2.mch.weixin.qq.com",
    "api.wechatpay.cn": "api2.wechatpay.cn",
}
#: Appended to the User-Agent of a request sent to the backup host, as the Java SDK does.
FAILOVER_USER_AGENT_SUFFIX = " (Retried-V1)"
# WeChat Pay closes idle connections after about 8 s; reusing one it already closed would
# cost a failed attempt, so the pool drops them first.
_KEEPALIVE_SECONDS = 5.0

USER_AGENT = (
    f"wechatpay-chain/{__version__} aiohttp/{aiohttp.__version__} "
    f"Python/{platform.python_version()} ({platform.system()})"
)

logger = logging.getLogger("wechatpay_chain")

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Compact UTF-8 JSON; one encoder, since json.dumps with options builds one per call.
_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_MCHID = re.compile(r"[0-9]{1,32}")
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")


def _check_config(
    mchid: object, serial: object, apiv3_key: str | bytes | None, base_url: object
) -> tuple[bytes | None, str]:
    if not isinstance(mchid, str) or not _MCHID.fullmatch(mchid):
        raise ConfigError("mchid: expected the merchant ID as a str of digits, e.g. '1900000109'")
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise ConfigError(
            "serial: expected the merchant API certificate serial number in hexadecimal "
            "(merchant platform > API security), e.g. '408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB'"
        )
    key = None if apiv3_key is None else apiv3_key_bytes(apiv3_key)
    if not isinstance(base_url, str):
        raise ConfigError("base_url: expected a str such as 'https://api.mch.weixin.qq.com'")
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ConfigError(f"base_url: expected http(s)://host[:port][/prefix]; got {base_url!r}")
    return key, base_url.rstrip("/")


def _as_timeout(timeout: float | aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError("timeout: expected seconds > 0 or an aiohttp.ClientTimeout")
    return aiohttp.ClientTimeout(total=float(timeout))


class WeChatPay(TypedRoot):
    """A WeChat Pay API v3 client for one merchant.

    Construction loads and checks the keys (so a bad configuration fails here, not at the
    first payment) and touches no network; the aiohttp session is opened on first use
    inside the running loop, or by ``async with``, and closed by :meth:`close`. A
    ``session`` passed in is used as it is and left open.
    """

    def __init__(
        self,
        mchid: str,
        serial: str,
        private_key: KeySource,
        public_keys: Mapping[str, KeySource] | None = None,
        *,
        apiv3_key: str | bytes | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - a frozen value
        failover_url: str | None = "auto",
        certificates: Literal["auto", "off"] = "auto",
        certificate_cache: CertificateCache | None = None,
        sign_in_thread: SignInThread = "auto",
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self._apiv3_key, self._base_url = _check_config(mchid, serial, apiv3_key, base_url)
        self._failover_url = _failover(self._base_url, failover_url)
        self._retry = retry if retry is not None else RetryPolicy(attempts=1)
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._mchid = mchid
        self._timeout = _as_timeout(timeout)
        self._aiohttp_timeout = _aiohttp_timeout(self._timeout)
        # The middlewares of a call with the client's own timeout, by retry mode and whether
        # the answer is verified: at most six tuples, built on first use.
        self._middlewares: dict[
            tuple[RetryMode, aiohttp.ClientTimeout, bool], tuple[aiohttp.ClientMiddlewareType, ...]
        ] = {}
        self._clock = clock
        self._signer = Signer(mchid, serial, private_key, clock=clock, nonce=nonce)
        self._public_keys = PublicKeyStore(public_keys)
        self._verifier = Verifier(self._public_keys, clock=clock)
        if sign_in_thread not in (True, False, "auto"):
            raise ConfigError(
                f"sign_in_thread: expected True, False or 'auto'; got {sign_in_thread!r}"
            )
        if certificates not in ("auto", "off"):
            raise ConfigError(f"certificates: expected 'auto' or 'off'; got {certificates!r}")
        # Platform certificates are managed when the APIv3 key (which decrypts them) is known.
        self._certificates = (
            CertificateManager(
                fetch=self._download_certificates,
                store=self._public_keys,
                cipher=AESGCM(self._apiv3_key),
                clock=clock,
                cache=certificate_cache,
            )
            if certificates == "auto" and self._apiv3_key is not None
            else None
        )
        learn = None if self._certificates is None else self._certificates.learn
        self._signing = SigningMiddleware(self._signer, in_thread=sign_in_thread)
        self._verifying = VerifyingMiddleware(self._verifier, learn)
        self._notifications = Notifications(self._verifier, self._apiv3_key, learn)
        self._payments = Payments(self._signer)
        self._session = session
        self._owns_session = session is None
        self._root = Node(self, ())  # keeps the chains built from it (see chain.py)
        self._closed = False

    # -- the root of the chain -------------------------------------------------------------

    def __getattr__(self, name: str) -> Node:
        # A first segment never starts with "_": refusing those keeps a misspelt private
        # attribute from silently becoming a path.
        if name.startswith("_") or is_dunder(name):
            raise AttributeError(name)
        node: Node = getattr(self._root, name)
        return node

    def __getitem__(self, path: str) -> Node:
        return Node(self, split_path(path))

    def chain(self, path: str) -> Node:
        """The node for a path written as in the docs: ``chain("v3/pay/transactions/native")``."""
        return Node(self, split_path(path))

    # -- configuration -------------------------------------------------------------------

    @property
    def mchid(self) -> str:
        return self._mchid

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def certificates(self) -> CertificateManager | None:
        """The platform certificate manager (``None`` with ``certificates="off"`` or without
        an APIv3 key)."""
        return self._certificates

    @property
    def public_keys(self) -> PublicKeyStore:
        """Every WeChat Pay key this client trusts, configured and downloaded."""
        return self._public_keys

    @property
    def failover_url(self) -> str | None:
        """The backup base URL tried after a connection failure, if any."""
        return self._failover_url

    @property
    def middlewares(self) -> tuple[aiohttp.ClientMiddlewareType, ...]:
        """Retry, signing and verifying, for an ``aiohttp.ClientSession(middlewares=...)``
        of your own (the default retry rules; no per-attempt timeout)."""
        return (RetryMiddleware(self._retry, rng=self._rng), self._signing, self._verifying)

    def __repr__(self) -> str:
        return f"<WeChatPay mchid={self._mchid!r} base_url={self._base_url!r}>"

    # -- helpers beside the chain ------------------------------------------------------------

    @property
    def notifications(self) -> Notifications:
        """Verify and decrypt webhooks with this client's keys."""
        return self._notifications

    @property
    def payments(self) -> Payments:
        """Signed parameters for JSAPI, mini-program and app payments."""
        return self._payments

    @property
    def bills(self) -> Bills:
        """Trade and fund-flow bills, applied for, downloaded, gunzipped and SHA-1-verified
        as they stream: ``await wxpay.bills.trade("2026-05-01")``."""
        return Bills(self)

    def download(
        self,
        url_or_target: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> Opening[Download]:
        """A signed ``GET`` of a file (a ``download_url``, or a target such as
        ``/v3/merchant-service/images/{media_id}``), streamed: ``await`` it for a
        :class:`~wechatpay_chain.files.Download`, or ``async with`` it. A URL outside this
        client's WeChat Pay hosts raises ``UntrustedHostError`` before anything is sent."""
        return Opening(
            lambda: open_download(self, url_or_target, on_progress=on_progress, timeout=timeout)
        )

    def encrypt(self, text: str) -> str:
        """Encrypt a sensitive request field for WeChat Pay (RSA-OAEP, Base64).

        It uses the preferred WeChat Pay key, the very key every request names in its
        ``Wechatpay-Serial`` header, so the two always agree.
        """
        serial = self._public_keys.preferred_serial
        if serial is None:
            raise ConfigError(
                "public_keys: encrypting a sensitive field needs a WeChat Pay public key"
            )
        return rsa_oaep_encrypt(self._public_keys[serial], text)

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a sensitive field WeChat Pay encrypted for this merchant (RSA-OAEP)."""
        return rsa_oaep_decrypt(self._signer.private_key, ciphertext)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> WeChatPay:
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client opened (a session passed in is left open)."""
        self._closed = True
        self._signing.stop()
        # The cached retry middlewares hold their deadlines' timers, and so the loop.
        self._middlewares.clear()
        if self._certificates is not None:
            await self._certificates.stop()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this WeChatPay client is closed; create a new one")
        if self._session is None:
            connector = aiohttp.TCPConnector(keepalive_timeout=_KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(connector=connector)
        if self._certificates is not None:
            self._certificates.start()  # once; it refreshes in the background until close()
        return self._session

    # -- sending ---------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        segments: tuple[str, ...],
        *,
        json: Any,
        data: bytes | str | None,
        params: Mapping[str, QueryValue] | None,
        headers: Mapping[str, str] | None,
        timeout: float | aiohttp.ClientTimeout | None,
        path_values: Mapping[str, object],
        retry: RetryMode = None,
        upload: Upload | None = None,
    ) -> Response:
        method = method.upper() if isinstance(method, str) else method
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}; got {method!r}")
        # Everything that can be wrong with the call is found before a byte is sent.
        if segments[:1] == ("v2",):
            raise NotImplementedError(
                "the v2 (XML) API is not supported yet: v2/ paths are reserved for it"
            )
        target = request_target(segments, path_values, params)
        body = _body_bytes(method, json, data)
        send_headers = self._request_headers(body, headers)
        if retry not in (None, "idempotent", "never"):
            raise ValueError(f"retry= takes None, 'idempotent' or 'never'; got {retry!r}")
        attempt_timeout = self._timeout if timeout is None else _as_timeout(timeout)
        # An upload's multipart body, built once: the file hashed (spooled if read-once).
        sent = body if upload is None else await upload.payload(json=json, data=data)
        exchange = _Exchange(method, target, sent, send_headers, attempt_timeout, retry)
        try:
            status, answer_headers, received = await self._exchange(self._base_url, exchange)
        except TransportError as error:
            if self._failover_url is None or not _may_fail_over(error, method, retry):
                raise
            logger.warning(
                "%s %s: %s; sending it to the backup host %s",
                method,
                target,
                error,
                self._failover_url,
            )
            exchange.headers["User-Agent"] = (
                exchange.headers["User-Agent"] + FAILOVER_USER_AGENT_SUFFIX
            )
            status, answer_headers, received = await self._exchange(self._failover_url, exchange)
        if not 200 <= status < 300:
            raise ApiError(
                status,
                body=received,
                headers=answer_headers,
                request_id=answer_headers.get("Request-ID"),
            )
        return Response(
            status=status, headers=answer_headers, body=received, method=method, target=target
        )

    def _request_headers(
        self, body: bytes | None, extra: Mapping[str, str] | None
    ) -> CIMultiDict[str]:
        headers = CIMultiDict({"Accept": "application/json", "User-Agent": USER_AGENT})
        serial = self._public_keys.preferred_serial
        if serial is not None:
            headers["Wechatpay-Serial"] = serial
        if body:  # WeChat Pay's v3 bodies are JSON; data= may say otherwise in headers=
            headers["Content-Type"] = "application/json"
        if extra:
            headers.update(extra)
        return headers

    async def _download_certificates(self) -> tuple[int, Mapping[str, str], bytes]:
        """``GET /v3/certificates``, signed, its answer left for the manager to verify
        (at bootstrap no key is held that could)."""
        exchange = _Exchange(
            "GET", CERTIFICATES_TARGET, None, self._request_headers(None, None), self._timeout, None
        )
        return await self._exchange(self._base_url, exchange, verify=False)

    async def _exchange(
        self, base_url: str, exchange: _Exchange, *, verify: bool = True
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One call to one host, with its retries: status, headers and body, or raise."""
        method, target, timeout = exchange.method, exchange.target, exchange.attempt_timeout
        middlewares = self._middlewares.get((exchange.retry, timeout, verify))
        if middlewares is None:
            retry = RetryMiddleware(self._retry, exchange.retry, timeout.total, self._rng)
            middlewares = (
                (retry, self._signing, self._verifying) if verify else (retry, self._signing)
            )
            if timeout is self._timeout:  # the usual case, kept; a per-call timeout is not
                self._middlewares[exchange.retry, timeout, verify] = middlewares
        session = self._get_session()
        # The whole call's bound: every attempt may take its time, and no attempt starts
        # after the policy's deadline (see _aiohttp_timeout).
        ends = (
            None
            if timeout.total is None
            else time.monotonic() + self._retry.deadline + timeout.total
        )
        try:
            async with session.request(
                method,
                URL(base_url + target, encoded=True),
                data=exchange.body,
                headers=exchange.headers,
                # Built once for the client's own timeout, the usual case.
                timeout=self._aiohttp_timeout
                if timeout is self._timeout
                else _aiohttp_timeout(timeout),
                allow_redirects=False,
                raise_for_status=False,
                middlewares=middlewares,
            ) as answer:
                # Read already (and verified) within the attempt, nearly always.
                body = (
                    await answer.read()
                    if ends is None or answer.content.at_eof()
                    else await _read_by(answer, ends)
                )
                return answer.status, answer.headers, body
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise ConnectError(
                f"{method} {target}: cannot connect to {base_url}: {error}"
            ) from error
        except asyncio.TimeoutError as error:
            raise RequestTimeoutError(
                f"{method} {target}: no complete answer within the timeout"
            ) from error
        except aiohttp.ClientError as error:
            raise TransportError(f"{method} {target}: {type(error).__name__}: {error}") from error


@attrs.define
class _Exchange:
    """A request built once, sent to the primary host and perhaps to the backup."""

    method: str
    target: str
    body: bytes | UploadPayload | None
    headers: CIMultiDict[str]
    attempt_timeout: aiohttp.ClientTimeout
    retry: RetryMode


def _aiohttp_timeout(attempt: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """What aiohttp is told: the connect and socket limits, and no total. The attempts are
    bounded one by one by the retry middleware (``total`` is the attempt's time) and
    together by the policy's deadline; a body not read within its attempt is read by
    :func:`_read_by`. An aiohttp total as well would only add a loop timer to every call,
    about 1 % of a call's time at concurrency 1 (docs/performance.md)."""
    return attrs.evolve(attempt, total=None)


async def _read_by(answer: aiohttp.ClientResponse, ends: float) -> bytes:
    """The body of an answer not read within its attempt (a final error's, an unsigned
    download's), read by ``ends`` (monotonic)."""
    return await asyncio.wait_for(answer.read(), max(ends - time.monotonic(), 0.0))


def _may_fail_over(error: TransportError, method: str, mode: RetryMode) -> bool:
    if mode == "never":
        return False
    # Nothing was sent when the connection failed: any method may go to the backup host.
    return isinstance(error, ConnectError) or is_idempotent_method(method) or mode == "idempotent"


def _failover(base_url: str, failover_url: str | None) -> str | None:
    if failover_url != "auto":
        if failover_url is not None:
            _check_config("0", "0", None, failover_url)
            return failover_url.rstrip("/")
        return None
    url = URL(base_url)
    # Only WeChat Pay's own hosts have a known backup; a proxy or a fake server has none.
    backup = (
        BACKUP_HOSTS.get(url.host or "")
        if url.scheme == "https" and url.path in ("", "/")
        else None
    )
    return None if backup is None else f"https://{backup}"


def _body_bytes(method: str, json: Any, data: bytes | str | None) -> bytes | None:
    if json is not None and data is not None:
        raise TypeError("pass json= or data=, not both")
    if json is not None:
        if method == "GET":
            raise TypeError("a GET request carries no body")
        # Serialised once: these very bytes are signed and sent.
        return _JSON.encode(json).encode()
    if data is not None:
        if method == "GET":
            raise TypeError("a GET request carries no body")
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, bytes):
            return data
        raise TypeError(f"data= takes bytes or str, not {type(data).__name__}")
    return None if method == "GET" else b""
