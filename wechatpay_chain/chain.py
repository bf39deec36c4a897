"""The path chain: ``wxpay.v3.pay.transactions.native.post(json=...)``.

A node is an immutable tuple of path segments bound to a client. Attribute names come from
source code, a small set, so each node keeps the children it has built (at most
``MAX_CACHED_CHILDREN``; past that a child is built afresh): the chain an application writes
in a request handler is a few dictionary look-ups after its first call. Values never become
attributes (they fill placeholders), so nothing grows with the traffic. The verbs are a
node's only public members, because real paths contain segments named ``close``,
``upload``, ``notify``, ``file`` and ``bills``; each is one call of :meth:`Node.request`,
which hands everything to the client: it builds the
:class:`~wechatpay_chain._request.Request` and sends it.

Pure: importing this module imports neither aiohttp nor cryptography.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .uri import attribute_segment, split_path

if TYPE_CHECKING:
    from ._request import Request
    from .files.uploads import ProgressCallback, Upload, UploadSource
    from .response import Response
    from .retries import RetryMode
    from .uri import QueryValue

__all__ = ["MAX_CACHED_CHILDREN", "Node"]

#: Children a node remembers; a program that builds more distinct names under one node
#: (from data, say) still works, only without the cache.
MAX_CACHED_CHILDREN = 256


class Client(Protocol):
    """What a node needs from its client: build a request, and send it."""

    def build_request(
        self,
        method: str,
        path: tuple[str, ...],
        *,
        json: Any,
        data: bytes | str | None,
        params: Mapping[str, QueryValue] | None,
        headers: Mapping[str, str] | None,
        timeout: Any,
        retry: RetryMode,
        path_params: Mapping[str, object] | None,
        upload: Upload | None,
        xml: Mapping[str, object] | None,
    ) -> Request: ...

    async def send(self, request: Request) -> Response: ...


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class Node:
    """One path in the WeChat Pay API, and the verbs that call it."""

    __slots__ = ("_children", "_client", "_segments")

    _client: Client
    _segments: tuple[str, ...]
    _children: dict[str, Node]

    def __init__(self, client: Client, segments: tuple[str, ...]) -> None:
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_children", {})

    # Typed for the path segments: type checkers resolve the verbs and slots statically.
    def __getattribute__(self, name: str) -> Node:
        # Every name that is not the class's own (its verbs, slots and Python's dunders) is
        # a path segment, answered here rather than after a failed normal look-up, which
        # costs CPython an AttributeError per segment. Unknown dunders (asked for by copy,
        # pickle, mocks and debuggers) are never path segments.
        if name in _NODE_ATTRIBUTES:
            return object.__getattribute__(self, name)  # type: ignore[no-any-return]
        children: dict[str, Node] = _children_of(self)
        child = children.get(name)  # never a dunder: those are not cached
        if child is not None:
            return child
        if is_dunder(name):
            return object.__getattribute__(self, name)  # type: ignore[no-any-return]
        child = Node(_client_of(self), (*_segments_of(self), attribute_segment(name)))
        if len(children) < MAX_CACHED_CHILDREN:
            children[name] = child
        return child

    def __getitem__(self, path: str) -> Node:
        return Node(self._client, self._segments + split_path(path))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"path nodes are immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"path nodes are immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Node], tuple[Client, tuple[str, ...]]]:
        return (Node, (self._client, self._segments))

    def __repr__(self) -> str:
        return f"<wechatpay_chain.Node {'/'.join(self._segments)!r}>"

    async def request(
        self,
        method: str,
        /,
        *,
        json: Any = None,
        xml: Mapping[str, object] | None = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | Any = None,
        retry: RetryMode = None,
        path_params: Mapping[str, object] | None = None,
        file: UploadSource | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        **placeholders: object,
    ) -> Response:
        """Send ``method`` to this path; keywords other than the options fill placeholders.

        ``json=`` is a v3 body; ``xml=`` (a mapping of fields) the body of an APIv2 call, on a
        path that starts with ``v2/``.

        ``file=`` (bytes, a path, a binary file or an async iterator of bytes, with
        ``filename=``, ``content_type=``, ``meta=``, ``on_progress=``) makes a ``POST`` the
        signed multipart media upload; see :mod:`wechatpay_chain.files`.
        """
        upload = None
        if file is not None or filename or content_type or meta or on_progress:
            from .files.uploads import Upload  # noqa: PLC0415 - only uploads need it

            upload = Upload.of(
                file,
                filename=filename,
                content_type=content_type,
                meta=meta,
                on_progress=on_progress,
            )
            if method.upper() != "POST":
                raise TypeError(f"file= goes with post(), not {method.lower()}()")
        client: Client = _client_of(self)
        built = client.build_request(
            method,
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            retry=retry,
            path_params=_path_values(path_params, placeholders),
            upload=upload,
            xml=xml,
        )
        return await client.send(built)

    async def get(self, /, **options: Any) -> Response:
        """``GET`` this path: ``params=``, ``headers=``, ``timeout=``, ``retry=`` and the
        placeholders' values; a ``GET`` takes no body."""
        return await self.request("GET", **options)

    async def post(self, /, **options: Any) -> Response:
        """``POST`` this path: ``json=`` or ``data=`` (or ``file=``, an upload), and the
        options of :meth:`request`."""
        return await self.request("POST", **options)

    async def put(self, /, **options: Any) -> Response:
        """``PUT`` this path, with the options of :meth:`request`."""
        return await self.request("PUT", **options)

    async def patch(self, /, **options: Any) -> Response:
        """``PATCH`` this path, with the options of :meth:`request`."""
        return await self.request("PATCH", **options)

    async def delete(self, /, **options: Any) -> Response:
        """``DELETE`` this path, with the options of :meth:`request`."""
        return await self.request("DELETE", **options)


def _path_values(
    path_params: Mapping[str, object] | None, keywords: dict[str, object]
) -> dict[str, object]:
    if path_params is None:
        return keywords
    if not isinstance(path_params, Mapping):
        raise TypeError(f"path_params= takes a mapping, not {type(path_params).__name__}")
    both = sorted(set(path_params) & set(keywords))
    if both:
        raise TypeError(
            f"placeholder {', '.join(map(repr, both))} given both as keyword and in path_params"
        )
    return {**path_params, **keywords}


# The class's own names (verbs, slots, dunders) and direct slot readers, for the hot path.
_NODE_ATTRIBUTES = frozenset(dir(Node))
_children_of = Node.__dict__["_children"].__get__
_client_of = Node.__dict__["_client"].__get__
_segments_of = Node.__dict__["_segments"].__get__
