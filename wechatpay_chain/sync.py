"""``SyncWeChatPay``: the same client for blocking code (Django, Flask, Celery, scripts).

It is the async :class:`~wechatpay_chain.WeChatPay` underneath, not a second
implementation: one private event loop runs in one daemon thread, the async client is built
and used only there, and each blocking verb hands that loop the very coroutine the async
chain would run, then waits for its result. Every thread of the process shares the loop and
its connection pool. After ``fork()`` the child starts a loop and a client of its own from
the stored arguments and never touches the parent's connections.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._loop_thread import LoopThread, running_loop
from .chain import Node
from .client import WeChatPay
from .errors import ConfigError, WeChatPayError
from .response import Response
from .sync_files import SyncBills, SyncDownload
from .uri import attribute_segment, split_path

if TYPE_CHECKING:
    import aiohttp

    from .certificates import CertificateManager
    from .files import Download, ProgressCallback
    from .notifications import Notification
    from .payments import Payments
    from .verifying import PublicKeyStore

__all__ = ["SyncCertificates", "SyncNode", "SyncNotifications", "SyncWeChatPay"]

T = TypeVar("T")

logger = logging.getLogger("wechatpay_chain")

#: How long close() (or the exit of the process) waits for the async client to close.
CLOSE_TIMEOUT = 10.0
#: Children a node remembers, as in chain.py.
MAX_CACHED_CHILDREN = 256

# Guards starting and stopping loop threads (never a call). Made afresh in a forked child,
# where a copy held by a thread of the parent would stay locked forever.
_lifecycle = threading.Lock()
# A forked child's copies of the parent's loop and client: never used, never closed (closing
# them would touch the parent's sockets), and kept from the garbage collector, whose
# finalisers would warn about them.
_abandoned: list[object] = []


def _after_fork_in_child() -> None:
    global _lifecycle  # noqa: PLW0603 - the module's one lock, replaced in the child
    _lifecycle = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


@attrs.define
class _Running:
    """The loop thread and the async client living on it, in one process."""

    thread: LoopThread
    client: WeChatPay


@attrs.define
class _Holder:
    """What the finaliser needs, without a reference to the SyncWeChatPay itself."""

    arguments: tuple[tuple[Any, ...], dict[str, Any]] = attrs.field(repr=False)
    running: _Running | None = None
    closed: bool = False


async def _build(arguments: tuple[tuple[Any, ...], dict[str, Any]]) -> WeChatPay:
    # Built inside the loop thread: the client is only ever used on its own loop.
    args, kwargs = arguments
    return WeChatPay(*args, **kwargs)


def _start(arguments: tuple[tuple[Any, ...], dict[str, Any]]) -> _Running:
    thread = LoopThread("wechatpay-chain-sync")
    try:
        client = thread.run(_build(arguments))
    except BaseException:
        thread.stop()
        raise
    return _Running(thread, client)


def _stop(running: _Running) -> None:
    """Close the async client on its loop, then end the loop thread; bounded."""
    thread = running.thread
    if thread.pid != os.getpid():
        _abandoned.append(running)
        return
    if thread.in_thread():  # dropped by code running on the loop itself: no waiting there
        thread.spawn(running.client.close())
        thread.stop()
        return
    try:
        thread.run(running.client.close(), timeout=CLOSE_TIMEOUT)
    except Exception as error:  # closing goes on whatever happened
        logger.warning("closing the SyncWeChatPay's client: %s", error)
    finally:
        thread.stop()


def _finalize(holder: _Holder) -> None:
    """At garbage collection or at the exit of the process: close what is still open."""
    holder.closed = True
    running, holder.running = holder.running, None
    if running is not None:
        _stop(running)


def _refuse_in_running_loop() -> None:
    if running_loop() is not None:
        raise WeChatPayError(
            "SyncWeChatPay blocks, and this thread is running an event loop that it would "
            "stall: in async code use WeChatPay and await its verbs"
        )


class SyncWeChatPay:
    """:class:`~wechatpay_chain.WeChatPay` for blocking code::

        wxpay = SyncWeChatPay(mchid=..., serial=..., private_key=..., public_keys=...)
        r = wxpay.v3.pay.transactions.native.post(json={...})

    The constructor takes ``WeChatPay``'s arguments (except ``session=``: an aiohttp
    session belongs to one event loop, and this client runs its own), checks them at once,
    and starts the loop thread. One client serves every thread of the process; create it
    once (at import or start-up) and share it. :meth:`close` or ``with`` ends it; a process
    that exits without closing it exits cleanly all the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "session" in kwargs:
            raise ConfigError(
                "session: SyncWeChatPay runs its own event loop in a thread, and an aiohttp "
                "session belongs to the loop that opened it; use WeChatPay to bring a session"
            )
        holder = _Holder(arguments=(args, dict(kwargs)))
        running = _start(holder.arguments)  # a bad configuration fails here, as in WeChatPay
        holder.running = running
        self._holder = holder
        self._mchid = running.client.mchid
        self._base_url = running.client.base_url
        self._root = SyncNode(self, ())
        weakref.finalize(self, _finalize, holder)

    # -- the root of the chain -------------------------------------------------------------

    def __getattr__(self, name: str) -> SyncNode:
        # As WeChatPay: a first segment never starts with "_" (a misspelt private name).
        if name.startswith("_"):
            raise AttributeError(name)
        node: SyncNode = getattr(self._root, name)
        return node

    def __getitem__(self, path: str) -> SyncNode:
        return SyncNode(self, split_path(path))

    def chain(self, path: str) -> SyncNode:
        """The node for a path written as in the docs: ``chain("v3/pay/transactions/native")``."""
        return SyncNode(self, split_path(path))

    # -- configuration ---------------------------------------------------------------------

    @property
    def mchid(self) -> str:
        return self._mchid

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        return self._holder.closed

    @property
    def public_keys(self) -> PublicKeyStore:
        """Every WeChat Pay key this client trusts, configured and downloaded."""
        return self._running().client.public_keys

    @property
    def certificates(self) -> SyncCertificates | None:
        """The platform certificates (``None`` with ``certificates="off"`` or without an
        APIv3 key)."""
        return None if self._running().client.certificates is None else SyncCertificates(self)

    def __repr__(self) -> str:
        return f"<SyncWeChatPay mchid={self._mchid!r} base_url={self._base_url!r}>"

    # -- helpers beside the chain ------------------------------------------------------------

    @property
    def notifications(self) -> SyncNotifications:
        """Verify and decrypt webhooks with this client's keys: ``parse(headers, body)``."""
        return SyncNotifications(self)

    @property
    def payments(self) -> Payments:
        """Signed parameters for JSAPI, mini-program and app payments (no I/O)."""
        return self._running().client.payments

    @property
    def bills(self) -> SyncBills:
        """Trade and fund-flow bills, streamed and SHA-1-verified:
        ``with wxpay.bills.trade("2026-05-01") as bill: bill.save(path)``."""
        return SyncBills(self)

    def download(
        self,
        url_or_target: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> SyncDownload:
        """A signed ``GET`` of a file, opened: iterate it, :meth:`~SyncDownload.read` or
        :meth:`~SyncDownload.save` it, in a ``with`` block that closes it. ``on_progress``
        is called in the client's loop thread."""
        running = self._running()

        async def opened(client: WeChatPay) -> Download:
            return await client.download(url_or_target, on_progress=on_progress, timeout=timeout)

        return SyncDownload(running.thread, self._run(opened, running))

    def encrypt(self, text: str) -> str:
        """Encrypt a sensitive request field for WeChat Pay (RSA-OAEP, Base64)."""
        return self._running().client.encrypt(text)

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a sensitive field WeChat Pay encrypted for this merchant (RSA-OAEP)."""
        return self._running().client.decrypt(ciphertext)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> SyncWeChatPay:
        self._running()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and end the loop thread (waits a few seconds at most).
        Later calls raise :class:`~wechatpay_chain.errors.WeChatPayError`."""
        with _lifecycle:
            _finalize(self._holder)

    # -- running a call --------------------------------------------------------------------

    def _running(self) -> _Running:
        running = self._holder.running
        if running is not None and running.thread.pid == os.getpid():
            return running
        with _lifecycle:
            holder = self._holder
            if holder.closed:
                raise WeChatPayError("this SyncWeChatPay is closed; create a new one")
            running = holder.running
            if running is None or running.thread.pid != os.getpid():
                # A forked child: the parent's loop thread does not exist here, and its
                # connections are the parent's. Start afresh from the same arguments.
                if running is not None:
                    _abandoned.append(running)
                running = holder.running = _start(holder.arguments)
            return running

    def _run(
        self,
        call: Callable[[WeChatPay], Coroutine[Any, Any, T]],
        running: _Running | None = None,
    ) -> T:
        _refuse_in_running_loop()
        running = running or self._running()
        return running.thread.run(call(running.client))

    def _call(
        self, segments: tuple[str, ...], verb: str, args: tuple[str, ...], options: dict[str, Any]
    ) -> Response:
        _refuse_in_running_loop()
        running = self._running()
        # The async chain's own node and verb: the same checks, the same request, on the loop.
        node = Node(running.client, segments)
        result: Response = running.thread.run(getattr(node, verb)(*args, **options))
        return result


class SyncNode:
    """One path in the WeChat Pay API, and the blocking verbs that call it.

    It mirrors :class:`~wechatpay_chain.chain.Node`: attributes, items and the same
    keyword options; immutable; dunder names are never path segments.
    """

    __slots__ = ("_children", "_owner", "_segments")

    _owner: SyncWeChatPay
    _segments: tuple[str, ...]
    _children: dict[str, SyncNode]

    def __init__(self, owner: SyncWeChatPay, segments: tuple[str, ...]) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_children", {})

    def __getattr__(self, name: str) -> SyncNode:
        # Only names the class does not have arrive here: the verbs and slots never do.
        if _is_dunder(name):
            raise AttributeError(name)
        children = self._children
        child = children.get(name)
        if child is None:
            child = SyncNode(self._owner, (*self._segments, attribute_segment(name)))
            if len(children) < MAX_CACHED_CHILDREN:
                children[name] = child
        return child

    def __getitem__(self, path: str) -> SyncNode:
        return SyncNode(self._owner, self._segments + split_path(path))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"path nodes are immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"path nodes are immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[SyncNode], tuple[SyncWeChatPay, tuple[str, ...]]]:
        return (SyncNode, (self._owner, self._segments))

    def __repr__(self) -> str:
        return f"<wechatpay_chain.SyncNode {'/'.join(self._segments)!r}>"

    def request(self, method: str, /, **options: Any) -> Response:
        """Send ``method`` to this path; the options are :meth:`Node.request`'s."""
        return self._owner._call(self._segments, "request", (method,), options)

    def get(self, /, **options: Any) -> Response:
        """``GET``; the options are :meth:`Node.get`'s (``params=``, ``headers=``,
        ``timeout=``, ``path_params=``, ``retry=`` and placeholder values)."""
        return self._owner._call(self._segments, "get", (), options)

    def post(self, /, **options: Any) -> Response:
        """``POST``; the options are :meth:`Node.post`'s (``json=``, ``data=``, ``file=``
        for an upload, ...). An ``on_progress`` callback runs in the client's loop thread."""
        return self._owner._call(self._segments, "post", (), options)

    def put(self, /, **options: Any) -> Response:
        return self._owner._call(self._segments, "put", (), options)

    def patch(self, /, **options: Any) -> Response:
        return self._owner._call(self._segments, "patch", (), options)

    def delete(self, /, **options: Any) -> Response:
        return self._owner._call(self._segments, "delete", (), options)


class SyncNotifications:
    """``wxpay.notifications`` of a :class:`SyncWeChatPay`."""

    __slots__ = ("_owner",)

    def __init__(self, owner: SyncWeChatPay) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return "<wechatpay_chain.SyncNotifications>"

    def parse(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decrypt a notification (headers and raw body as received); see
        :func:`~wechatpay_chain.notifications.verify_and_decrypt`. A serial not held yet
        may download the platform certificates first, on the client's loop."""
        # Copied here: a framework's header object is not the loop thread's to read.
        copied = dict(headers.items())
        return self._owner._run(lambda client: client.notifications.parse(copied, body))


class SyncCertificates:
    """The platform certificate manager of a :class:`SyncWeChatPay`."""

    __slots__ = ("_owner",)

    def __init__(self, owner: SyncWeChatPay) -> None:
        self._owner = owner

    def _manager(self) -> CertificateManager:
        manager = self._owner._running().client.certificates
        assert manager is not None  # noqa: S101 - SyncWeChatPay.certificates checked it
        return manager

    @property
    def mode(self) -> str:
        """``unknown``, ``certificates`` or ``public_key_only``."""
        return self._manager().mode

    @property
    def downloads(self) -> int:
        return self._manager().downloads

    def refresh(self) -> None:
        """Download the certificates now (or join the download in flight)."""
        self._owner._run(_refresh)

    def __repr__(self) -> str:
        return f"<SyncCertificates mode={self.mode!r}>"


async def _refresh(client: WeChatPay) -> None:
    manager = client.certificates
    if manager is not None:
        await manager.refresh()
