"""The typed root of the chain.

At run time this class adds nothing: a client's first path segment comes from
``WeChatPay.__getattr__``. Its stub (``_root.pyi``, generated) declares the documented first
segments as properties, so that a type checker or an editor knows every documented path.
"""

from __future__ import annotations

__all__ = ["TypedRoot"]


class TypedRoot:
    __slots__ = ()
