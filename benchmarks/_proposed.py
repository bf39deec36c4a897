"""Library changes proposed by the client benchmark, written here so that they can be
measured next to the library as it is (no library file is edited).

1. ``uri.attribute_segment`` memoised (``functools.lru_cache(maxsize=1024)``): attribute
   names come from source code, so the cache stays small, and it is bounded anyway.
2. ``uri.request_target`` compiles a segments tuple once (bounded LRU, keyed by the
   template, never by the values): the literal text is encoded once, and a call only
   encodes the placeholder values. Errors still come from ``uri.expand``, unchanged.
3. ``Node.__getattribute__`` answering path segments directly, instead of the
   ``__getattr__`` fallback that first fails a normal look-up (raising and catching an
   AttributeError inside CPython for every segment).
4. ``signing.new_nonce`` from ``secrets.token_hex(16)`` (32 characters of ``[0-9a-f]``,
   128 random bits, a subset of the documented alphabet) instead of 32 ``secrets.choice``.

Measured and not proposed: ``asyncio.timeout`` in place of ``asyncio.wait_for`` for the
per-attempt timeout (no gain at concurrency 1, more CPU and loop lag at 128).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import wechatpay_chain.chain
import wechatpay_chain.client
from wechatpay_chain import uri
from wechatpay_chain.chain import Node, is_dunder

# -- 1. and 3.: the chain ---------------------------------------------------------------------

attribute_segment = functools.lru_cache(maxsize=1024)(uri.attribute_segment)

_NODE_MEMBERS = frozenset(dir(Node))
_node_client = Node.__dict__["_client"].__get__
_node_segments = Node.__dict__["_segments"].__get__


class ProposedNode(Node):
    """``Node`` with 1. and 3.: the verbs, slots and dunders are looked up as usual; any
    other name is a path segment, answered without a failed look-up first."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name in _NODE_MEMBERS or is_dunder(name):
            return object.__getattribute__(self, name)
        return ProposedNode(_node_client(self), (*_node_segments(self), attribute_segment(name)))

    def __getattr__(self, name: str) -> Node:
        # Reached only through the root (``WeChatPay.__getattr__`` calls it explicitly).
        if is_dunder(name) or name in Node.__slots__:
            raise AttributeError(name)
        return ProposedNode(_node_client(self), (*_node_segments(self), attribute_segment(name)))


# -- 2.: the request target -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compiled(
    segments: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[tuple[str, bool, bool], ...], frozenset[str]] | None:
    """The encoded literal text around each placeholder and the placeholders (name, raw?,
    alone in its segment?); ``None`` when a literal segment is refused (left to ``expand``)."""
    literals: list[str] = []
    holes: list[tuple[str, bool, bool]] = []
    current = ""
    for segment in segments:
        if segment in (".", ".."):
            return None
        current += "/"
        position = 0
        matches = list(uri._PLACEHOLDER.finditer(segment))
        for match in matches:
            current += quote(segment[position : match.start()], safe=uri.SEGMENT_SAFE)
            literals.append(current)
            current = ""
            alone = len(matches) == 1 and match.group(0) == segment
            holes.append((match.group(2), bool(match.group(1)), alone))
            position = match.end()
        current += quote(segment[position:], safe=uri.SEGMENT_SAFE)
    literals.append(current)
    return tuple(literals), tuple(holes), frozenset(name for name, _, _ in holes)


def request_target(
    segments: Sequence[str],
    values: Mapping[str, object],
    params: Mapping[str, uri.QueryValue] | None,
) -> str:
    compiled = _compiled(tuple(segments)) if segments else None
    if compiled is None or values.keys() != compiled[2]:
        return uri.request_target(segments, values, params)  # the same errors, worded the same
    literals, holes, _ = compiled
    parts = [literals[0]]
    for (name, raw, alone), literal in zip(holes, literals[1:], strict=True):
        value = uri._placeholder_value(name, values[name])
        text = value if raw else quote(value, safe="")
        if alone and text in (".", ".."):
            return uri.request_target(segments, values, params)  # refused there, as it is now
        parts.append(text)
        parts.append(literal)
    path = "".join(parts)
    query = uri.encode_query(params)
    return f"{path}?{query}" if query else path


# -- 4.: the nonce ----------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(16)


class _ProposedRoot:
    """``WeChatPay.__getattr__`` building a :class:`ProposedNode`."""

    @staticmethod
    def getattr(client: wechatpay_chain.client.WeChatPay, name: str) -> Node:
        if name.startswith("_") or is_dunder(name):
            raise AttributeError(name)
        return ProposedNode(client, ()).__getattr__(name)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """BENCHMARK ONLY: the library's module globals swapped for 1., 2. and 3. while one case
    runs (the cases run one after another, never at once); restored on exit. 4. is a
    constructor argument: ``WeChatPay(..., nonce=new_nonce)``."""
    client_module = wechatpay_chain.client
    saved = (
        client_module.request_target,
        client_module.WeChatPay.__getattr__,
        wechatpay_chain.chain.attribute_segment,
    )
    client_module.request_target = request_target
    client_module.WeChatPay.__getattr__ = _ProposedRoot.getattr  # type: ignore[method-assign]
    wechatpay_chain.chain.attribute_segment = attribute_segment
    try:
        yield
    finally:
        (
            client_module.request_target,
            client_module.WeChatPay.__getattr__,  # type: ignore[method-assign]
            wechatpay_chain.chain.attribute_segment,
        ) = saved
