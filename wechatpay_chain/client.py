"""``WeChatPay``: configuration, lifecycle, and the root of the chain.

A verb builds a :class:`~wechatpay_chain._request.Request` (:meth:`WeChatPay.build_request`)
and the client's :class:`~wechatpay_chain._transport.Transport` sends it
(:meth:`WeChatPay.send`); ``_transport.py`` holds the way of one request.
"""

from __future__ import annotations

import ipaddress
import platform
import re
import ssl
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

import aiohttp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from yarl import URL

from ._client_cert import ClientCertSource, client_ssl_context, load_client_cert
from ._request import (
    METHODS,
    Request,
    check_retry_mode,
    check_timeout,
    request_body,
    request_headers,
)
from ._transport import Transport
from ._version import __version__
from .apiv2 import CONTENT_TYPE, prepare_request
from .certificates import CERTIFICATES_TARGET, CertificateCache, CertificateManager
from .chain import Node, is_dunder
from .crypto import apiv3_key_bytes, rsa_oaep_decrypt, rsa_oaep_encrypt
from .endpoints import endpoint_facts
from .endpoints._root import TypedRoot
from .errors import ApiError, ConfigError
from .files import Bills, Download, Opening, ProgressCallback, Upload
from .files.downloads import DOWNLOAD_TIMEOUT
from .keys import KeySource
from .middleware import MAX_RESPONSE_BODY, RetryMiddleware, SignInThread
from .notifications import Notifications
from .payments import Payments
from .response import Response
from .retries import RetryMode, RetryPolicy
from .signing import MessageSigner, Signer, is_message_signer, new_nonce
from .uri import QueryValue, request_target, split_path
from .verifying import PublicKeyStore, Verifier

__all__ = [
    "BACKUP_HOSTS",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "REGIONS",
    "USER_AGENT",
    "WeChatPay",
]

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
#: Per attempt, the answer's body included. Generous for a payment API whose slowest
#: documented calls answer in seconds; the connect limit fails fast when a host is
#: unreachable, so a retry or the backup host still fits in the retry policy's deadline.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
#: The backup host of each primary (PROTOCOL.md section 10), used after connection failures.
BACKUP_HOSTS = {
    "api.mch.weixin.qq.com": "api2.mch.weixin.qq.com",
    "api.wechatpay.cn": "api2.wechatpay.cn",
    # The Hong Kong / overseas access point has no backup of its own; the mainland primary
    # also serves the /hk/v3 and /v3/global families (PROTOCOL.md section 10).
    "apihk.mch.weixin.qq.com": "api.mch.weixin.qq.com",
}
#: Named base URLs, each with its failover pair from ``BACKUP_HOSTS``:
#: ``WeChatPay(..., base_url="hk")``. ``cn`` is the mainland primary (backup ``api2``),
#: ``cn-wechatpay`` its newer domain (backup ``api2.wechatpay.cn``), ``hk`` (or ``global``)
#: the Hong Kong access point of cross-border and overseas merchants (backup: the mainland
#: primary).
REGIONS = {
    "cn": "https://api.mch.weixin.qq.com",
    "cn-wechatpay": "https://api.wechatpay.cn",
    "hk": "https://apihk.mch.weixin.qq.com",
    "global": "https://apihk.mch.weixin.qq.com",
}

USER_AGENT = (
    f"wechatpay-chain/{__version__} aiohttp/{aiohttp.__version__} "
    f"Python/{platform.python_version()} ({platform.system()})"
)
_BASE_HEADERS = {"Accept": "application/json", "User-Agent": USER_AGENT}
_V2_HEADERS = {
    "Accept": "text/xml, application/xml",
    "User-Agent": USER_AGENT,
    "Content-Type": CONTENT_TYPE,
    # v2 answers are read as sent and their sign checked; nothing is inflated.
    "Accept-Encoding": "identity",
}


_MCHID = re.compile(r"[0-9]{1,32}")
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(name: str, base_url: object, allow_http: bool) -> str:
    if not isinstance(base_url, str):
        raise ConfigError(f"{name}: expected a str such as 'https://api.mch.weixin.qq.com'")
    base_url = REGIONS.get(base_url, base_url)
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ConfigError(f"{name}: expected https://host[:port][/prefix]; got {base_url!r}")
    if url.user is not None or url.password is not None:
        raise ConfigError(f"{name}: credentials do not belong in the URL")
    if url.scheme == "http" and not (allow_http or _is_loopback(url.host)):
        raise ConfigError(
            f"{name}: {base_url!r} is plain http: requests, signatures and answers would "
            "cross the network in clear. Use https (plain http is accepted for loopback "
            "hosts, such as the fake server, or with allow_http=True)"
        )
    return base_url.rstrip("/")


def _failover(base_url: str, failover_url: str | None, allow_http: bool) -> str | None:
    if failover_url != "auto":
        if failover_url is None:
            return None
        return _check_base_url("failover_url", failover_url, allow_http)
    url = URL(base_url)
    # Only WeChat Pay's own hosts have a known backup; a proxy or a fake server has none.
    backup = (
        BACKUP_HOSTS.get(url.host or "")
        if url.scheme == "https" and url.path in ("", "/")
        else None
    )
    return None if backup is None else f"https://{backup}"


def _check_callable(name: str, value: object) -> None:
    if not callable(value):
        raise ConfigError(f"{name}: expected a callable; got {value!r}")


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}: expected a number of bytes > 0; got {value!r}")
    return value


class WeChatPay(TypedRoot):
    """A WeChat Pay API v3 client for one merchant.

    Construction loads and checks the keys and every option (so a bad configuration fails
    here, not at the first payment) and touches no network; the aiohttp session is opened
    on first use inside the running loop, or by ``async with``, and closed by
    :meth:`close`. A ``session`` passed in is used as it is and left open. A client belongs
    to the event loop it first runs in (see :class:`~wechatpay_chain.SyncWeChatPay` for
    blocking code).
    """

    def __init__(
        self,
        mchid: str,
        serial: str | None = None,
        private_key: KeySource | MessageSigner | None = None,
        public_keys: Mapping[str, KeySource] | None = None,
        *,
        apiv3_key: str | bytes | None = None,
        apiv2_key: str | None = None,
        apiv2_sign_type: str | None = None,
        client_cert: ClientCertSource | None = None,
        client_cert_password: str | bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - a frozen value
        failover_url: str | None = "auto",
        certificates: Literal["auto", "off"] = "auto",
        certificate_cache: CertificateCache | None = None,
        sign_in_thread: SignInThread = "auto",
        max_response_body: int = MAX_RESPONSE_BODY,
        allow_http: bool = False,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        if not isinstance(mchid, str) or not _MCHID.fullmatch(mchid):
            raise ConfigError(
                "mchid: expected the merchant ID as a str of digits, e.g. '1900000109'"
            )
        self._mchid = mchid
        # The merchant API certificate (apiclient_cert.pem or .p12): presented in TLS to the
        # v2 endpoints that require it, and the source of serial and key when they are omitted.
        certificate = (
            None
            if client_cert is None
            else load_client_cert(
                client_cert,
                mchid=mchid,
                private_key=None if is_message_signer(private_key) else private_key,  # type: ignore[arg-type]
                password=client_cert_password,
            )
        )
        if certificate is not None:
            serial = serial if serial is not None else certificate.serial
            private_key = private_key if private_key is not None else certificate.private_key
        if private_key is None:
            raise ConfigError(
                "private_key: the merchant API private key (apiclient_key.pem), or a "
                "client_cert (apiclient_cert.p12) that carries it, is required"
            )
        if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
            raise ConfigError(
                "serial: expected the merchant API certificate serial number in hexadecimal "
                "(merchant platform > API security), e.g. '408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB'"
            )
        if apiv2_key is not None and (not isinstance(apiv2_key, str) or not apiv2_key):
            raise ConfigError("apiv2_key: expected the APIv2 key as a non-empty str")
        if apiv2_sign_type not in (None, "MD5", "HMAC-SHA256"):
            raise ConfigError(
                f"apiv2_sign_type: expected None, 'MD5' or 'HMAC-SHA256'; got {apiv2_sign_type!r}"
            )
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context: expected an ssl.SSLContext; got {ssl_context!r}")
        self._apiv2_key = apiv2_key
        self._apiv2_sign_type = apiv2_sign_type
        self._has_client_cert = certificate is not None
        self._nonce = nonce
        apiv3 = None if apiv3_key is None else apiv3_key_bytes(apiv3_key)
        base = _check_base_url("base_url", base_url, allow_http)
        failover = _failover(base, failover_url, allow_http)
        self._timeout = check_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"retry: expected a RetryPolicy or None; got {retry!r} (per call, "
                "retry='idempotent' or 'never' goes to the verb)"
            )
        _check_callable("clock", clock)
        _check_callable("nonce", nonce)
        if sign_in_thread not in (True, False, "auto"):
            raise ConfigError(
                f"sign_in_thread: expected True, False or 'auto'; got {sign_in_thread!r}"
            )
        if certificates not in ("auto", "off"):
            raise ConfigError(f"certificates: expected 'auto' or 'off'; got {certificates!r}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigError(f"session: expected an aiohttp.ClientSession; got {session!r}")
        max_body = _check_size("max_response_body", max_response_body)
        self._clock = clock
        self._signer = Signer(mchid, serial, private_key, clock=clock, nonce=nonce)
        self._public_keys = PublicKeyStore(
            public_keys,
            # The merchant's own key is never a WeChat Pay key (unknown for an external signer).
            merchant_key=None if self._signer.external else self._signer.private_key.public_key(),  # type: ignore[union-attr]
        )
        self._verifier = Verifier(self._public_keys, clock=clock)
        # Platform certificates are managed when the APIv3 key (which decrypts them) is known.
        self._certificates = (
            CertificateManager(
                fetch=self._download_certificates,
                store=self._public_keys,
                cipher=AESGCM(apiv3),
                clock=clock,
                cache=certificate_cache,
            )
            if certificates == "auto" and apiv3 is not None
            else None
        )
        learn = None if self._certificates is None else self._certificates.learn
        self._transport = Transport(
            base_url=base,
            failover_url=failover,
            timeout=self._timeout,
            retry=retry if retry is not None else RetryPolicy(attempts=1),
            signer=self._signer,
            verifier=self._verifier,
            learn=learn,
            sign_in_thread=sign_in_thread,
            max_body=max_body,
            session=session,
            on_open=None if self._certificates is None else self._certificates.start,
            apiv2_key=apiv2_key,
            # The client's own TLS context: the user's ssl_context is never changed, and two
            # merchants in one process present two certificates.
            ssl=client_ssl_context(certificate, ssl_context)
            if certificate is not None
            else ssl_context,
        )
        self._notifications = Notifications(self._verifier, apiv3, learn, apiv2_key=apiv2_key)
        self._payments = Payments(self._signer, apiv2_key=apiv2_key)
        self._bills = Bills(
            query=self._query, fetch=self._fetch_download, fetch_v2=self._fetch_v2_download
        )
        self._root = Node(self, ())  # keeps the chains built from it (see chain.py)

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
        return self._transport.base_url

    @property
    def failover_url(self) -> str | None:
        """The backup base URL tried after a connection failure, if any."""
        return self._transport.failover_url

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
    def middlewares(self) -> tuple[aiohttp.ClientMiddlewareType, ...]:
        """Retry, signing and verifying, for an ``aiohttp.ClientSession(middlewares=...)``
        of your own (the default retry rules; no per-attempt timeout). They sign only
        requests to this client's WeChat Pay hosts and never follow a redirect."""
        transport = self._transport
        return (
            RetryMiddleware(transport.retry, rng=transport.rng),
            transport.signing,
            transport.verifying,
        )

    def __repr__(self) -> str:
        # Never raises, not even for a client whose constructor failed half-way.
        mchid = self.__dict__.get("_mchid", "?")
        transport = self.__dict__.get("_transport")
        base_url = "?" if transport is None else transport.base_url
        return f"<WeChatPay mchid={mchid!r} base_url={base_url!r}>"

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
        return self._bills

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
        return Opening(lambda: self._fetch_download(url_or_target, on_progress, timeout))

    def encrypt(self, text: str) -> str:
        """Encrypt a sensitive request field for WeChat Pay (RSA-OAEP, Base64).

        It uses the preferred WeChat Pay key, the very key every request names in its
        ``Wechatpay-Serial`` header, so the two always agree.
        """
        serial = self._public_keys.preferred_serial
        if serial is None:
            if self._certificates is not None:
                raise ConfigError(
                    "encrypt: no WeChat Pay key is known yet. In certificate mode the "
                    "platform certificates are downloaded on first use: call "
                    "'await wxpay.certificates.refresh()' (or make any call) first, or "
                    "configure public_keys={PUB_KEY_ID: key}"
                )
            raise ConfigError(
                "encrypt: encrypting a sensitive field needs a WeChat Pay public key: "
                "configure public_keys={PUB_KEY_ID: key}, or an apiv3_key for certificates"
            )
        return rsa_oaep_encrypt(self._public_keys[serial], text)

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a sensitive field WeChat Pay encrypted for this merchant (RSA-OAEP)."""
        if self._signer.external:
            raise ConfigError(
                "decrypt: the merchant key is held by an external signer, which only signs; "
                "decrypt the field where the key is"
            )
        return rsa_oaep_decrypt(self._signer.private_key, ciphertext)  # type: ignore[arg-type]

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> WeChatPay:
        try:
            self._transport.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client opened (a session passed in is left open). Calls
        in flight end with :class:`~wechatpay_chain.errors.ClientClosedError`; calling it
        again does nothing."""
        self._transport.signing.stop()
        if self._certificates is not None:
            await self._certificates.stop()
        await self._transport.close()

    # -- requests --------------------------------------------------------------------------

    def build_request(
        self,
        method: str,
        path: str | tuple[str, ...],
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
        retry: RetryMode = None,
        path_params: Mapping[str, object] | None = None,
        upload: Upload | None = None,
        xml: Mapping[str, object] | None = None,
    ) -> Request:
        """The :class:`~wechatpay_chain._request.Request` a verb sends: every argument
        checked, the target encoded and the body serialised, before anything is sent."""
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(METHODS))}; got {method!r}")
        method = method.upper()
        segments = split_path(path) if isinstance(path, str) else path
        if segments[:1] == ("v2",):
            if json is not None or data is not None or upload is not None:
                raise TypeError("an APIv2 (v2/) call takes its body as xml={...}")
            return self._build_v2_request(
                method, segments, xml, params, headers, timeout, retry, path_params
            )
        if xml is not None:
            raise TypeError("xml= is the body of an APIv2 call (a v2/ path); v3 takes json=")
        target = request_target(segments, path_params or {}, params)
        if upload is not None and (json is not None or data is not None):
            raise TypeError("pass file= or json=/data=, not both: an upload's body is multipart")
        body = request_body(method, json, data)
        return Request(
            method,
            target,
            body,
            request_headers(_BASE_HEADERS, self._public_keys.preferred_serial, body, headers),
            None if timeout is None else check_timeout(timeout),
            check_retry_mode(retry),
            upload,
        )

    def _build_v2_request(  # noqa: PLR0917 - build_request's own arguments, passed on
        self,
        method: str,
        segments: tuple[str, ...],
        xml: Mapping[str, object] | None,
        params: Mapping[str, QueryValue] | None,
        headers: Mapping[str, str] | None,
        timeout: Any,
        retry: RetryMode,
        path_params: Mapping[str, object] | None,
    ) -> Request:
        """An APIv2 call: the ``v2/`` dropped from the URL, the XML body signed with the
        APIv2 key, the endpoint's facts (client certificate, host, signed answer) applied."""
        if self._apiv2_key is None:
            raise ConfigError("apiv2_key: an APIv2 (v2/) call needs the client's APIv2 key")
        if xml is None:
            raise TypeError("an APIv2 (v2/) call needs its fields as xml={...}")
        if not isinstance(xml, Mapping):
            raise TypeError(f"xml= takes a mapping of fields, not {type(xml).__name__}")
        facts = endpoint_facts(method, segments)
        if facts.certificate_required and not self._has_client_cert:
            raise ConfigError(
                f"client_cert: {method} {'/'.join(segments)} requires the merchant API "
                "certificate in TLS: pass client_cert= (apiclient_cert.p12 or .pem)"
            )
        body, sign_type = prepare_request(
            xml,
            mchid=self._mchid,
            apiv2_key=self._apiv2_key,
            sign_type=self._apiv2_sign_type,
            nonce=self._nonce,
            sign_types=facts.v2_sign_types,
            nonce_field=facts.v2_nonce,
        )
        base = _V2_HEADERS if not headers else {**_V2_HEADERS, **headers}
        return Request(
            method,
            request_target(segments[1:], path_params or {}, params),
            body,
            request_headers(base, None, None, None),
            None if timeout is None else check_timeout(timeout),
            check_retry_mode(retry),
            verify=not facts.unsigned,
            api="v2",
            sign_type=sign_type,
            base_url=self._v2_host(facts.base_uri),
        )

    def _v2_host(self, base_uri: str | None) -> str | None:
        # An operation served by another WeChat Pay host goes there only from the production
        # hosts: a fake server, a proxy or a test host answers every path itself.
        if base_uri is None or URL(self.base_url).host not in BACKUP_HOSTS:
            return None
        return base_uri.rstrip("/")

    async def send(self, request: Request) -> Response:
        """Send a request built by :meth:`build_request` and return its verified answer."""
        return await self._transport.send(request)

    async def _query(self, path: str, params: Mapping[str, str | None]) -> Response:
        return await self.send(self.build_request("GET", path, params=params))

    async def _fetch_download(
        self,
        url_or_target: str,
        on_progress: ProgressCallback | None,
        timeout: float | aiohttp.ClientTimeout | None,
    ) -> Download:
        if not isinstance(url_or_target, str) or not url_or_target:
            raise TypeError("download() takes a download_url or a request target such as '/v3/...'")
        url = self._transport.url_of(url_or_target)  # refuses a host that is not ours
        request = Request(
            "GET",
            str(url),
            None,
            request_headers(_BASE_HEADERS, self._public_keys.preferred_serial, None, None),
            DOWNLOAD_TIMEOUT if timeout is None else check_timeout(timeout),
            stream=True,
        )
        return await self._transport.open_stream(request, on_progress)

    async def _fetch_v2_download(
        self,
        path: str,
        fields: Mapping[str, object],
        on_progress: ProgressCallback | None,
        timeout: float | aiohttp.ClientTimeout | None,
    ) -> Download:
        request = self.build_request(
            "POST",
            path,
            xml={**fields, "mch_id": self._mchid},  # the helper's own body: mch_id is ours
            timeout=DOWNLOAD_TIMEOUT if timeout is None else timeout,
        )
        return await self._transport.open_stream(request, on_progress)

    async def _download_certificates(self) -> tuple[int, Mapping[str, str], bytes]:
        """``GET /v3/certificates``, signed, its answer left for the manager to verify
        (at bootstrap no key is held that could)."""
        request = Request(
            "GET",
            CERTIFICATES_TARGET,
            None,
            request_headers(_BASE_HEADERS, self._public_keys.preferred_serial, None, None),
            verify=False,
        )
        try:
            response = await self._transport.send(request)
        except ApiError as error:
            return error.status, error.headers, error.body
        return response.status, response.headers, response.body
