"""The path chain: ``wxpay.v3.pay.transactions.native.post(json=...)``.

A node is an immutable tuple of path segments bound to a client. Attribute names come from
source code, a small set, so each node keeps the children it has built (at most
``MAX_CACHED_CHILDREN``; past that a child is built afresh): the chain an application writes
in a request handler is a few dictionary look-ups after its first call. Values never become
attributes (they fill placeholders), so nothing grows with the traffic. The verbs are a
node's only public members, because real paths contain segments named ``close``,
``upload``, ``notify``, ``file`` and ``bills``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .files import ProgressCallback, Upload, UploadSource
from .retries import RetryMode
from .uri import QueryValue, attribute_segment, split_path

if TYPE_CHECKING:
    from aiohttp import ClientTimeout

    from .response import Response

__all__ = ["Node"]


class Requester(Protocol):
    """What a node needs from its client: one way to send a request."""

    async def _send(
        self,
        method: str,
        segments: tuple[str, ...],
        *,
        json: Any,
        data: bytes | str | None,
        params: Mapping[str, QueryValue] | None,
        headers: Mapping[str, str] | None,
        timeout: float | ClientTimeout | None,
        path_values: Mapping[str, object],
        retry: RetryMode = None,
        upload: Upload | None = None,
    ) -> Response: ...


def _merge_path_values(
    path_params: Mapping[str, object] | None, keywords: dict[str, object]
) -> dict[str, object]:
    if not path_params:
        return keywords
    both = sorted(set(path_params) & set(keywords))
    if both:
        raise TypeError(
            f"placeholder {', '.join(map(repr, both))} given both as keyword and in path_params"
        )
    return {**path_params, **keywords}


#: Children a node remembers; a program that builds more distinct names under one node
#: (from data, say) still works, only without the cache.
MAX_CACHED_CHILDREN = 256


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class Node:
    """One path in the WeChat Pay API, and the verbs that call it."""

    __slots__ = ("_children", "_client", "_segments")

    _client: Requester
    _segments: tuple[str, ...]
    _children: dict[str, Node]

    def __init__(self, client: Requester, segments: tuple[str, ...]) -> None:
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

    def __reduce__(self) -> tuple[type[Node], tuple[Requester, tuple[str, ...]]]:
        return (Node, (self._client, self._segments))

    def __repr__(self) -> str:
        return f"<wechatpay_chain.Node {'/'.join(self._segments)!r}>"

    async def request(
        self,
        method: str,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response:
        """Send ``method`` to this path; keywords other than the options fill placeholders."""
        client: Requester = _client_of(self)
        return await client._send(
            method,
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
        )

    async def get(
        self,
        /,
        *,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response:
        client: Requester = _client_of(self)
        return await client._send(
            "GET",
            _segments_of(self),
            json=None,
            data=None,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
        )

    async def post(
        self,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        file: UploadSource | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        **placeholders: object,
    ) -> Response:
        """``file=`` (bytes, a path, a binary file or an async iterator of bytes) makes this
        the signed multipart media upload; see :mod:`wechatpay_chain.files`."""
        upload = Upload.of(
            file, filename=filename, content_type=content_type, meta=meta, on_progress=on_progress
        )
        client: Requester = _client_of(self)
        return await client._send(
            "POST",
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
            upload=upload,
        )

    async def put(
        self,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response:
        client: Requester = _client_of(self)
        return await client._send(
            "PUT",
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
        )

    async def patch(
        self,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response:
        client: Requester = _client_of(self)
        return await client._send(
            "PATCH",
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
        )

    async def delete(
        self,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | ClientTimeout | None = None,
        path_params: Mapping[str, object] | None = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response:
        client: Requester = _client_of(self)
        return await client._send(
            "DELETE",
            _segments_of(self),
            json=json,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            path_values=_merge_path_values(path_params, placeholders),
            retry=retry,
        )


# The class's own names (verbs, slots, dunders) and direct slot readers, for the hot path.
_NODE_ATTRIBUTES = frozenset(dir(Node))
_children_of = Node.__dict__["_children"].__get__
_client_of = Node.__dict__["_client"].__get__
_segments_of = Node.__dict__["_segments"].__get__
