"""What is known of an operation before calling it: the generated endpoint table, read.

``endpoint_facts("POST", ("v2", "secapi", "pay", "refund"))`` tells the pipeline that the call
needs the client certificate; ``endpoint_facts("GET", "v3/billdownload/file")`` that its answer
is an unsigned file. Paths are matched segment by segment; a ``{name}`` segment of the table
matches any one segment (a value, or a placeholder as the chain writes it), and a literal
segment wins over a placeholder (``out-trade-no/{...}`` before ``{id}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from . import _table

__all__ = ["EndpointFacts", "endpoint_facts"]

_MD5_AND_HMAC = frozenset({"MD5", "HMAC-SHA256"})


@attrs.frozen
class EndpointFacts:
    """The facts of one operation, from the OpenAPI description (MIT, wechatpay-openapi).

    ``known`` is false for a path the description does not have: every other fact is then
    the safe default (signed, JSON or XML, no certificate, the configured host).
    """

    #: The operation as the table names it (``"POST v2/pay/micropay"``), or ``None``.
    operation: str | None
    #: ``"v2"`` (XML, ``sign``) or ``"v3"`` (JSON, RSA; hk and global included).
    api: str
    certificate_required: bool = False
    #: ``https://host/`` of an operation served elsewhere (``x-base-uri``).
    base_uri: str | None = None
    #: The answer carries no signature to verify (files; some v2 answers).
    unsigned: bool = False
    #: The answer is a file (CSV, gzip, PDF, image) on success, not JSON or XML.
    file_answer: bool = False
    #: v2: the ``sign_type`` values the request accepts; empty when it has no ``sign_type``
    #: field (signed MD5); ``None`` for v3 and unknown operations.
    v2_sign_types: frozenset[str] | None = None
    #: v2: whether the request defines ``nonce_str`` (added when absent).
    v2_nonce: bool = True

    @property
    def known(self) -> bool:
        return self.operation is not None


# method -> nested dict of segments; "" marks the end of an operation, "{}" a placeholder.
_Trie = dict[str, "_Trie | str"]


def _build() -> dict[str, _Trie]:
    tries: dict[str, _Trie] = {}
    for operation in _table.OPERATIONS:
        method, _, path = operation.partition(" ")
        node = tries.setdefault(method, {})
        for segment in path.split("/"):
            child = node.setdefault("{}" if "{" in segment else "/" + segment, {})
            assert isinstance(child, dict)  # noqa: S101 - "/" prefixes keep "" free
            node = child
        node[""] = operation
    return tries


_TRIES = _build()


def _find(node: _Trie, segments: Sequence[str]) -> str | None:
    if not segments:
        found = node.get("")
        return found if isinstance(found, str) else None
    head, rest = segments[0], segments[1:]
    literal = node.get("/" + head)
    if isinstance(literal, dict) and not (head.startswith("{") and head.endswith("}")):
        found = _find(literal, rest)
        if found is not None:
            return found
    wildcard = node.get("{}")
    return _find(wildcard, rest) if isinstance(wildcard, dict) else None


def endpoint_facts(method: str, segments: Sequence[str] | str) -> EndpointFacts:
    """The facts of ``method`` on ``segments`` (``("v2", "pay", "micropay")`` or the path
    ``"v2/pay/micropay"``; a leading ``/`` is ignored)."""
    if isinstance(segments, str):
        segments = [part for part in segments.split("?", 1)[0].split("/") if part]
    parts = tuple(segments)
    api = "v2" if parts[:1] == ("v2",) else "v3"
    trie = _TRIES.get(method.upper())
    operation = _find(trie, parts) if trie is not None and parts else None
    if operation is None:
        return EndpointFacts(None, api)
    sign_types: frozenset[str] | None = None
    if api == "v2":
        if operation in _table.V2_MD5_ONLY:
            sign_types = frozenset()
        elif operation in _table.V2_HMAC_ONLY:
            sign_types = frozenset({"HMAC-SHA256"})
        else:
            sign_types = _MD5_AND_HMAC
    return EndpointFacts(
        operation,
        api,
        certificate_required=operation in _table.CERTIFICATE_REQUIRED,
        base_uri=_table.BASE_URI.get(operation),
        unsigned=operation in _table.UNSIGNED,
        file_answer=operation in _table.FILE_ANSWER,
        v2_sign_types=sign_types,
        v2_nonce=operation not in _table.V2_NO_NONCE,
    )
