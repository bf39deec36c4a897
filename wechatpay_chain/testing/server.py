"""``FakeWeChatPay``: a real HTTP server on loopback that speaks WeChat Pay's protocol.

It holds its own WeChat Pay key pair and public-key ID, checks every request's
``Authorization`` against the merchant's public key as WeChat Pay does, signs every answer,
keeps orders, refunds and password-exempt pre-sign sessions, and lets a test add routes, read
what it received and inject faults. Nothing in it is specific to this library's client:
any WeChat Pay client in any language can be pointed at :attr:`FakeWeChatPay.url`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote

import attrs
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from multidict import CIMultiDictProxy, MultiDictProxy

from .._loop_thread import LoopThread
from ..certificates import CERTIFICATES_TARGET
from ..client import WeChatPay
from ..crypto import apiv3_key_bytes, rsa_oaep_decrypt, rsa_oaep_encrypt
from ..errors import ConfigError, DecryptionError
from ..keys import KeySource, load_private_key, load_public_key
from ..signing import AUTHORIZATION_SCHEME, request_message
from ..uri import SEGMENT_SAFE
from ..verifying import MAX_CLOCK_SKEW
from .contracts import ContractState
from .faults import Fault
from .files import BillState, MediaState, signed_body
from .keypairs import generate_private_key
from .messages import ApiFailure, RecordedRequest, Reply, param_error
from .notify import ANSWER_WITHIN_SECONDS, RETRY_SCHEDULE, Delivery, NotificationSender
from .platform import KeyMode, WeChatPayKeys
from .state import PaymentState
from .tls import IssuedCertificate, TestCA
from .v2 import ApiV2Fake

if TYPE_CHECKING:
    from ..sync import SyncWeChatPay

__all__ = ["FakeWeChatPay", "MerchantCredentials", "RouteHandler", "generate_private_key"]

T = TypeVar("T")
#: How long the test's thread waits for the server's loop (start, stop, a helper).
_THREAD_TIMEOUT = 30.0

RouteHandler = Callable[[RecordedRequest, Mapping[str, str]], Reply | Awaitable[Reply]]

_AUTH_PARAMETER = re.compile(r'(\w+)="([^"]*)"')
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@attrs.frozen
class MerchantCredentials:
    """The merchant the fake server recognises. ``private_key_pem`` is ``None`` when the
    server was given only the merchant's public key (a client of your own holds the key)."""

    mchid: str
    serial: str
    public_key: rsa.RSAPublicKey = attrs.field(repr=False)
    private_key_pem: bytes | None = attrs.field(repr=False, default=None)


@attrs.define
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler


@attrs.define
class _Injection:
    fault: Fault
    remaining: int
    method: str | None
    path: str | None


def _compile_template(template: str) -> re.Pattern[str]:
    if not template.startswith("/"):
        template = "/" + template
    parts = _PLACEHOLDER.split(template)
    # Even indexes are literal text, matched in the form a client sends it (percent-encoded
    # like a path segment); odd indexes are placeholder names.
    regex = "".join(
        re.escape(quote(part, safe="/" + SEGMENT_SAFE)) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


class FakeWeChatPay:
    """A fake WeChat Pay API server for tests and demos::

        async with FakeWeChatPay() as server:
            async with server.client() as wxpay:
                r = await wxpay.v3.pay.transactions.native.post(json={...})
            assert server.requests[-1].target == "/v3/pay/transactions/native"

    Give ``mchid``, ``serial`` and ``merchant_private_key`` (or only ``merchant_public_key``)
    to accept your own merchant's signatures; by default throwaway keys are generated.
    ``clock`` is the server's time, for its timestamps and its 5-minute skew check.
    ``mode`` is how WeChat Pay verifies for this merchant: ``"public_key"`` (new merchants;
    ``/v3/certificates`` answers 404), ``"certificates"`` (platform certificates, rotated by
    :meth:`rotate_certificate`) or ``"both"`` (the migration).
    ``fast`` is for benchmarks only: identical answers within one second reuse one set of
    signed headers (same nonce and Request-ID), so that the server's RSA signing is not the
    bottleneck; the client still verifies every answer in full.
    """

    def __init__(
        self,
        *,
        mchid: str = "1900000109",
        serial: str | None = None,
        merchant_private_key: KeySource | None = None,
        merchant_public_key: KeySource | None = None,
        public_key_id: str | None = None,
        wechatpay_private_key: KeySource | None = None,
        apiv3_key: str | None = None,
        apiv2_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        mode: KeyMode = "public_key",
        fast: bool = False,
        tls: bool = False,
    ) -> None:
        self._fast_headers: dict[tuple[int, bytes, int, str], dict[str, str]] | None = (
            {} if fast else None
        )
        if merchant_private_key is not None:
            merchant_key: rsa.RSAPrivateKey | None = load_private_key(merchant_private_key)
        elif merchant_public_key is None:
            merchant_key = generate_private_key()
        else:
            merchant_key = None
        #: With ``tls=True``: the test CA, which issued the server's certificate and the
        #: merchant's API certificate (``client_certificate``, for the merchant's key).
        self.ca: TestCA | None = TestCA() if tls else None
        self.client_certificate: IssuedCertificate | None = (
            self.ca.client(mchid, merchant_key)
            if self.ca is not None and merchant_key is not None
            else None
        )
        if serial is None and self.client_certificate is not None:
            serial = self.client_certificate.serial
        self.merchant = MerchantCredentials(
            mchid=mchid,
            serial=serial or secrets.token_hex(20).upper(),
            public_key=merchant_key.public_key()
            if merchant_key
            else load_public_key(merchant_public_key),  # type: ignore[arg-type]
            private_key_pem=_pem(merchant_key) if merchant_key else None,
        )
        self._merchant_key = merchant_key
        self._wechatpay_key = (
            load_private_key(wechatpay_private_key)
            if wechatpay_private_key is not None
            else generate_private_key()
        )
        self.public_key_id = public_key_id or "PUB_KEY_ID_01" + "".join(
            secrets.choice("0123456789") for _ in range(26)
        )
        self.public_key_pem: bytes = self._wechatpay_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: The merchant's APIv3 key as this server knows it (notifications, certificates).
        self.apiv3_key = apiv3_key or secrets.token_urlsafe(24)[:32]
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        #: The merchant's APIv2 key as this server knows it; :attr:`v2` is the XML API.
        self.apiv2_key = apiv2_key or secrets.token_hex(16)
        self.v2 = ApiV2Fake(
            mchid=mchid,
            apiv2_key=self.apiv2_key,
            clock=clock,
            record=self.requests.append,
            client_serial=None
            if self.client_certificate is None
            else self.client_certificate.serial,
        )
        #: WeChat Pay's keys: the public key, platform certificates, or both (``mode``).
        self.keys = WeChatPayKeys(mode, self._wechatpay_key, self.public_key_id, clock)
        self._notifier = NotificationSender(self.keys.signer(), apiv3_key_bytes(self.apiv3_key))
        self.state = PaymentState(mchid=mchid, clock=clock, notify=self._notify_in_background)
        self.contracts = ContractState(self.state)
        #: Media uploads received (:class:`~wechatpay_chain.testing.files.MediaState`).
        self.media = MediaState()
        #: Bills: their size, download tokens, corruption (``testing.files.BillState``).
        self.bills = BillState(mchid=mchid, clock=clock, url=lambda: self.url)
        self._host = host
        self._port = port
        self._routes: list[_Route] = []
        self._builtin_routes = [
            _Route(method, _compile_template(template), handler)
            for method, template, handler in [
                *self.state.routes(),
                *self.contracts.routes(),
                *self.media.routes(),
                *self.bills.routes(),
                ("POST", "/v3/security/echo", self._echo),
                ("GET", CERTIFICATES_TARGET, self._certificates),
            ]
        ]
        self._injections: list[_Injection] = []
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        #: The loop thread of serve_in_thread(), while it serves.
        self._thread: LoopThread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, once started."""
        if self._url is None:
            raise RuntimeError(
                "the fake server is not started: use 'async with FakeWeChatPay() as server'"
            )
        return self._url

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.v2.add_routes(app)  # APIv2 (XML) first: its paths carry no Authorization
        # Any path, even with a %0A in it.
        app.router.add_route("*", "/{tail:(?s:.*)}", self._handle)
        # A short shutdown: a test's server stops with its test, whatever is still open.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(
            socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            await web.SockSite(
                runner,
                sock,
                ssl_context=None if self.ca is None else self.ca.server_context(self._host),
            ).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        port = sock.getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"{'http' if self.ca is None else 'https'}://{host}:{port}"

    @property
    def open_connections(self) -> int:
        """How many client connections are open right now (a leak check for tests)."""
        server = self._runner.server if self._runner is not None else None
        return 0 if server is None else len(server.connections)

    async def stop(self) -> None:
        await self._notifier.close()
        await self.v2.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeWeChatPay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what a test uses ------------------------------------------------------------------

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[FakeWeChatPay]:
        """Serve from a background thread with an event loop of its own, and yield the server::

            with FakeWeChatPay().serve_in_thread() as fake:
                with fake.sync_client() as wxpay:
                    wxpay.v3.pay.transactions.native.post(json={...})
                fake.pay("T1")

        For blocking code and for frameworks that run an event loop of their own (Starlette's
        ``TestClient``, Django's test client). The test's thread uses the server as usual:
        :meth:`pay`, :meth:`sign_contract`, :meth:`inject` and :meth:`route` run on the
        server's loop; :meth:`run` runs a coroutine there (``fake.run(fake.notify(...))``);
        :attr:`requests` and :attr:`deliveries` can be read at any time.
        """
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("this fake server is already serving")
        thread = LoopThread("wechatpay-chain-fake")
        try:
            thread.run(self.start(), timeout=_THREAD_TIMEOUT)
            self._thread = thread
            yield self
        finally:
            self._thread = None
            try:
                if thread.alive:
                    thread.run(self.stop(), timeout=_THREAD_TIMEOUT)
            finally:
                thread.stop()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 60.0) -> T:
        """Run ``coroutine`` on the server's loop and return its result: for a test's thread
        while :meth:`serve_in_thread` serves (``fake.run(fake.notify(url, ...))``)."""
        thread = self._thread
        if thread is None:
            coroutine.close()
            raise RuntimeError("FakeWeChatPay.run is for a server started by serve_in_thread()")
        return thread.run(coroutine, timeout=timeout)

    def _on_loop(self, function: Callable[[], T]) -> T:
        """``function()`` on the server's loop when it serves from a thread and this is
        another thread: the state it touches is the loop's, and notifications start there."""
        thread = self._thread
        if thread is None or thread.in_thread():
            return function()

        async def call() -> T:
            return function()

        return thread.run(call(), timeout=_THREAD_TIMEOUT)

    def client_options(self, **overrides: Any) -> dict[str, Any]:
        """The arguments :meth:`client` and :meth:`sync_client` pass to the client: the
        merchant's keys, the server's URL, its APIv3 and APIv2 keys, its clock (and, with
        ``tls=True``, the client certificate and the CA), then ``overrides``."""
        if self.merchant.private_key_pem is None and "private_key" not in overrides:
            raise ConfigError(
                "this fake server knows only the merchant's public key: pass private_key="
            )
        options: dict[str, Any] = {
            "mchid": self.merchant.mchid,
            "serial": self.merchant.serial,
            "private_key": self._merchant_key,
            # In certificate mode the client starts with no key and downloads the certificates.
            "public_keys": {}
            if self.keys.mode == "certificates"
            else {self.public_key_id: self._wechatpay_key.public_key()},
            "base_url": self.url,
            "apiv3_key": self.apiv3_key,
            "apiv2_key": self.apiv2_key,
            "clock": self.clock,
        }
        if self.ca is not None and self.client_certificate is not None:
            options["client_cert"] = self.client_certificate.cert_pem
            options["ssl_context"] = self.ca.client_context()
        options.update(overrides)
        return options

    def client(self, **overrides: Any) -> WeChatPay:
        """A new :class:`~wechatpay_chain.WeChatPay` for this server's merchant, bound to it.

        Each call makes a new client, which opens its connections in the loop that first
        uses it: with :meth:`serve_in_thread`, any loop of the test's may use it."""
        return WeChatPay(**self.client_options(**overrides))

    def sync_client(self, **overrides: Any) -> SyncWeChatPay:
        """A new :class:`~wechatpay_chain.sync.SyncWeChatPay` for this server's merchant."""
        from ..sync import SyncWeChatPay  # noqa: PLC0415 - only for the tests that block

        return SyncWeChatPay(**self.client_options(**overrides))

    def route(self, method: str, template: str, handler: RouteHandler) -> None:
        """Answer ``method template`` (``{name}`` placeholders allowed) with ``handler``.

        The handler gets the :class:`RecordedRequest` and the placeholder values, and returns
        a :class:`Reply` (or raises :class:`ApiFailure`); it may be a coroutine function.
        Routes added here take precedence over the built-in ones.
        """
        route = _Route(method.upper(), _compile_template(template), handler)
        self._on_loop(lambda: self._routes.insert(0, route))

    def inject(
        self, fault: Fault, *, times: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Apply ``fault`` to the next ``times`` authenticated requests matching ``method`` and ``path``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        injection = _Injection(fault, times, method.upper() if method else None, path)
        self._on_loop(lambda: self._injections.append(injection))

    def pay(
        self, out_trade_no: str, *, openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    ) -> dict[str, Any]:
        """Play the user who pays an order: returns the transaction as a query would, and
        sends ``TRANSACTION.SUCCESS`` to the order's ``notify_url`` (see :attr:`deliveries`)."""
        return self._on_loop(lambda: self.state.pay(out_trade_no, openid=openid))

    def sign_contract(
        self, out_contract_code: str, *, openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    ) -> dict[str, Any]:
        """Play the user who accepts the password-exempt contract offered by a pre-sign.

        For the after-payment modes the user must have paid the pre-signed order first
        (:meth:`pay`). Returns the contract and sends ``ENTRUST.SIGN`` to the pre-sign's
        ``notify_url``.
        """
        return self._on_loop(lambda: self.contracts.sign(out_contract_code, openid=openid))

    # -- notifications ---------------------------------------------------------------------

    @property
    def notification_time_scale(self) -> float:
        """Multiplies the resend schedule (15 s, 15 s, 30 s, 3 min, ... 6 h): 0.001 makes a
        day of resends last 87 s, 0.00001 under a second."""
        return self._notifier.time_scale

    @notification_time_scale.setter
    def notification_time_scale(self, scale: float) -> None:
        if scale < 0:
            raise ValueError("the time scale cannot be negative")
        self._notifier.time_scale = scale

    @property
    def deliveries(self) -> list[Delivery]:
        """Every notification sent, with every attempt to deliver it."""
        return self._notifier.deliveries

    async def notify(
        self,
        url: str,
        *,
        event_type: str,
        resource: Any,
        summary: str = "",
        original_type: str = "transaction",
        fault: Fault | None = None,
        wait: bool = True,
    ) -> Delivery:
        """Send a notification to ``url`` as WeChat Pay does, resending until a 2xx answer.

        ``fault`` spoils the first send only (``probe``, ``tamper_body``, ``wrong_key``,
        ``wrong_serial``, ``stale_timestamp``, ``unsigned``, ``bad_ciphertext``); the resends
        are correct, as WeChat Pay's are. With ``wait`` it returns once delivered or given up.
        """
        delivery = self._notifier.send(
            url,
            event_type=event_type,
            resource=resource,
            summary=summary,
            original_type=original_type,
            fault=fault,
        )
        if not wait:
            return delivery
        # Long enough for the whole schedule at this time scale, each attempt answered late.
        limit = (
            sum(RETRY_SCHEDULE) * self._notifier.time_scale
            + (len(RETRY_SCHEDULE) + 1) * ANSWER_WITHIN_SECONDS
        )
        return await delivery.wait(timeout=limit + 1)

    def build_notification(
        self,
        *,
        event_type: str,
        resource: Any,
        summary: str = "",
        original_type: str = "transaction",
        fault: Fault | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The headers and raw body of a notification, to post or verify yourself."""
        return self._notifier.build(
            event_type=event_type,
            resource=resource,
            summary=summary,
            original_type=original_type,
            fault=fault,
        )

    def _notify_in_background(
        self, url: str, event_type: str, resource: Any, summary: str, original_type: str
    ) -> None:
        self._notifier.send(
            url,
            event_type=event_type,
            resource=resource,
            summary=summary,
            original_type=original_type,
            fault=None,
        )

    # -- platform certificates ----------------------------------------------------------------

    def rotate_certificate(self) -> str:
        """Issue a new platform certificate (new key); answers are signed with it from now on,
        unless a request names an older one. Returns its serial."""
        if self.keys.mode == "public_key":
            raise ValueError("a public-key-mode server has no platform certificates to rotate")
        return self._on_loop(self._rotate)

    def _rotate(self) -> str:
        platform = self.keys.add_certificate()
        self._notifier.signer = self.keys.signer()
        return platform.serial

    def _certificates(self, request: RecordedRequest, _: Mapping[str, str]) -> Reply:
        if self.keys.mode == "public_key":
            raise ApiFailure(
                404,
                "RESOURCE_NOT_EXISTS",
                "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥。",
            )
        return Reply(200, self.keys.download(apiv3_key_bytes(self.apiv3_key)))

    # -- the sensitive-field self-test -------------------------------------------------------

    def _echo(self, request: RecordedRequest, _: Mapping[str, str]) -> Reply:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("echo_message"), str):
            raise param_error("/echo_message", "echo_message 为必填参数")
        answer: dict[str, Any] = {"echo_message": body["echo_message"]}
        encrypted = body.get("encrypted_echo_message")
        if encrypted is not None:
            if not request.headers.get("Wechatpay-Serial"):
                raise ApiFailure(
                    400, "PARAM_ERROR", "HTTP header缺少微信支付平台证书序列号(Wechatpay-Serial)"
                )
            try:
                # With the key the request's Wechatpay-Serial names, as WeChat Pay does.
                key = self.keys.signer(request.headers.get("Wechatpay-Serial")).key
                plaintext = rsa_oaep_decrypt(key, encrypted)
            except DecryptionError:
                raise ApiFailure(400, "PARAM_ERROR", "平台私钥解密失败") from None
            # Answered encrypted for the merchant, so the round trip tests decryption too.
            answer["encrypted_echo_message"] = rsa_oaep_encrypt(self.merchant.public_key, plaintext)
        if isinstance(body.get("notify_url"), str):
            self._notify_in_background(
                body["notify_url"],
                "SECURITY_ECHO.SUCCESS",
                {"echo_message": body["echo_message"]},
                "回调测试",
                "security_echo",
            )
        return Reply(200, answer)

    # -- handling --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            target=request.raw_path,
            path=unquote(request.rel_url.raw_path),
            query=MultiDictProxy(request.rel_url.query.copy()),
            headers=CIMultiDictProxy(request.headers.copy()),
            body=body,
        )
        self.requests.append(recorded)
        fault: Fault | None = None
        try:
            self._authenticate(recorded)
            fault = self._take_fault(recorded)
            if fault is not None:
                if fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                elif fault.kind == "drop":
                    if request.transport is not None:
                        request.transport.abort()
                    # Nothing more can be written; aiohttp discards the answer below.
                    return web.Response(status=500)
                elif fault.kind == "raw":
                    return web.Response(
                        status=fault.status, body=fault.body, content_type=fault.content_type
                    )
                elif fault.kind == "error":
                    failure = ApiFailure(fault.status, fault.code, fault.message)
                    if fault.seconds:
                        failure.headers["Retry-After"] = f"{fault.seconds:g}"
                    raise failure
            reply = await self._dispatch(recorded)
        except ApiFailure as failure:
            reply = failure.reply()
        if reply.stream is not None:  # a file: streamed and unsigned, as WeChat Pay sends them
            return await reply.stream(request)
        response = self._signed_response(reply, fault, request.headers.get("Wechatpay-Serial"))
        if fault is not None and fault.kind in (
            "reset_mid_body",
            "truncated_body",
            "stall_mid_body",
        ):
            return await self._in_two_halves(request, response, fault)
        return response

    @staticmethod
    async def _in_two_halves(
        request: web.Request, complete: web.Response, fault: Fault
    ) -> web.StreamResponse:
        body = bytes(complete.body or b"")  # type: ignore[arg-type]
        partial = web.StreamResponse(status=complete.status, headers=complete.headers)
        partial.content_length = len(body)
        await partial.prepare(request)
        half = len(body) // 2
        await partial.write(body[:half])
        if fault.kind == "stall_mid_body":
            await asyncio.sleep(fault.seconds)
            await partial.write(body[half:])
            await partial.write_eof()
        elif request.transport is not None:
            # An RST (reset) or a plain FIN (truncated): the client reads a short body either way.
            request.transport.abort() if fault.kind == "reset_mid_body" else request.transport.close()
        return partial

    async def _dispatch(self, recorded: RecordedRequest) -> Reply:
        raw_path = recorded.target.split("?", 1)[0]
        path_matched = False
        for route in (*self._routes, *self._builtin_routes):
            match = route.pattern.match(raw_path)
            if match is None:
                continue
            path_matched = True
            if route.method != recorded.method:
                continue
            values = {name: unquote(value) for name, value in match.groupdict().items()}
            reply = route.handler(recorded, values)
            return await reply if inspect.isawaitable(reply) else reply
        if path_matched:
            raise ApiFailure(
                405, "METHOD_NOT_ALLOWED", f"{recorded.method} is not allowed on {raw_path}"
            )
        raise ApiFailure(404, "NOT_FOUND", f"{recorded.method} {raw_path}: 请求的资源不存在")

    def _take_fault(self, recorded: RecordedRequest) -> Fault | None:
        for injection in self._injections:
            if injection.method not in (None, recorded.method):
                continue
            if injection.path not in (None, recorded.path):
                continue
            injection.remaining -= 1
            if injection.remaining == 0:
                self._injections.remove(injection)
            return injection.fault
        return None

    def _authenticate(self, recorded: RecordedRequest) -> None:
        headers = recorded.headers
        if not headers.get("Accept") or not headers.get("User-Agent"):
            raise ApiFailure(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent")
        authorization = headers.get("Authorization", "")
        scheme, _, parameter_text = authorization.partition(" ")
        parameters = dict(_AUTH_PARAMETER.findall(parameter_text))
        required = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")
        if scheme != AUTHORIZATION_SCHEME or any(not parameters.get(name) for name in required):
            raise ApiFailure(
                401,
                "SIGN_ERROR",
                "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
            )
        if parameters["mchid"] != self.merchant.mchid:
            raise ApiFailure(401, "SIGN_ERROR", "商户号与Authorization中的mchid不匹配")
        if parameters["serial_no"].upper() != self.merchant.serial.upper():
            raise ApiFailure(
                401, "SIGN_ERROR", "商户证书序列号有误。请使用签名私钥匹配的证书序列号"
            )
        timestamp = parameters["timestamp"]
        if not timestamp.isdigit() or abs(int(timestamp) - int(self.clock())) > MAX_CLOCK_SKEW:
            raise ApiFailure(
                401, "SIGN_ERROR", "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"
            )
        # An upload is signed over its meta part, any other request over its body.
        message = request_message(
            recorded.method,
            recorded.target,
            int(timestamp),
            parameters["nonce_str"],
            signed_body(recorded),
        )
        try:
            signature = base64.b64decode(parameters["signature"], validate=True)
            self.merchant.public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise self._sign_error(
                recorded, timestamp, parameters["nonce_str"], len(message)
            ) from None
        serial = headers.get("Wechatpay-Serial")
        if serial is not None and not self.keys.knows(serial):
            raise ApiFailure(
                400, "PARAM_ERROR", "Wechatpay-Serial 对应的微信支付公钥或平台证书不存在"
            )

    @staticmethod
    def _sign_error(
        recorded: RecordedRequest, timestamp: str, nonce: str, length: int
    ) -> ApiFailure:
        # WeChat Pay echoes what it verified, abridged; the most useful debugging aid there is.
        body = recorded.body.decode("utf-8", "replace")
        shown = f"{recorded.method}\n{recorded.target}\n{timestamp}\n{nonce[:4]}...\n{body[:64]}\n"
        detail = {
            "detail": {"issue": "sign not match"},
            "field": "signature",
            "location": "authorization",
            "sign_information": {
                "method": recorded.method,
                "sign_message_length": length,
                "truncated_sign_message": shown,
                "url": recorded.target,
            },
        }
        return ApiFailure(401, "SIGN_ERROR", "错误的签名，验签失败", detail)

    def _signed_response(
        self, reply: Reply, fault: Fault | None, requested: str | None
    ) -> web.Response:
        body = reply.encoded()
        signer = self.keys.signer(requested)
        cache = self._fast_headers
        if cache is None or fault is not None:
            headers = signer.headers(body, fault, failed=reply.status >= 400)
        else:  # fast mode (benchmarks only): one signature per distinct answer per second
            key = (reply.status, body, int(self.clock()), signer.public_key_id)
            if key not in cache:
                if len(cache) >= 256:
                    cache.clear()
                cache[key] = signer.headers(body, failed=reply.status >= 400)
            headers = dict(cache[key])
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if fault is not None and fault.kind == "tamper_body":
            if body:
                body = body[:-1] + (b"_" if body[-1:] == b" " else b" ")
            else:  # nothing to tamper with: break the signed nonce instead
                headers["Wechatpay-Nonce"] = secrets.token_hex(16)
        headers.update(reply.headers)
        return web.Response(status=reply.status, body=body, headers=headers)
