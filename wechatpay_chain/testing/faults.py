"""Faults the fake server can inject into its next answers."""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Fault"]

FaultKind = Literal[
    "error",
    "raw",
    "delay",
    "drop",
    "tamper_body",
    "wrong_serial",
    "wrong_key",
    "stale_timestamp",
    "probe",
    "unsigned",
    "bad_ciphertext",
    "reset_mid_body",
    "truncated_body",
    "stall_mid_body",
]


@attrs.frozen
class Fault:
    """One way for an answer to go wrong. Build it with the class methods::

    server.inject(Fault.error(500, "SYSTEM_ERROR"), times=2)
    server.inject(Fault.delay(3.0), path="/v3/pay/transactions/native")
    """

    kind: FaultKind
    status: int = 0
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    body: bytes = b""
    content_type: str = ""

    @classmethod
    def error(
        cls, status: int, code: str, message: str = "", *, retry_after: float | None = None
    ) -> Fault:
        """Answer ``status`` with WeChat Pay's error body ``{"code", "message"}``, signed;
        with ``retry_after``, a ``Retry-After`` header of that many seconds."""
        return cls(
            "error", status=status, code=code, message=message or code, seconds=retry_after or 0.0
        )

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Send the signed headers and half the body, then reset the connection."""
        return cls("reset_mid_body")

    @classmethod
    def truncated_body(cls) -> Fault:
        """Announce the whole body's length, send half of it, then close the connection."""
        return cls("truncated_body")

    @classmethod
    def stall_mid_body(cls, seconds: float) -> Fault:
        """Send the signed headers and half the body, wait ``seconds``, then the rest (a
        server or network that stalls while the answer is being read)."""
        return cls("stall_mid_body", seconds=seconds)

    @classmethod
    def raw(cls, status: int, body: bytes, content_type: str = "text/html") -> Fault:
        """Answer ``status`` with an arbitrary body, unsigned (a proxy's HTML error page)."""
        return cls("raw", status=status, body=body, content_type=content_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally."""
        return cls("delay", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering.

        aiohttp's client resends an idempotent request (GET, PUT, DELETE) once by itself
        when the connection closes without an answer, so such a request needs ``times=2``
        to fail; a POST is never resent.
        """
        return cls("drop")

    @classmethod
    def tamper_body(cls) -> Fault:
        """Sign the real answer, then send a body that differs by one byte."""
        return cls("tamper_body")

    @classmethod
    def wrong_serial(cls) -> Fault:
        """Sign correctly but name a ``Wechatpay-Serial`` the client does not hold."""
        return cls("wrong_serial")

    @classmethod
    def wrong_key(cls) -> Fault:
        """Sign with a key that is not WeChat Pay's, under WeChat Pay's serial."""
        return cls("wrong_key")

    @classmethod
    def bad_ciphertext(cls) -> Fault:
        """Notifications only: a correctly signed envelope whose resource does not decrypt."""
        return cls("bad_ciphertext")

    @classmethod
    def stale_timestamp(cls, seconds: float = 600) -> Fault:
        """Sign correctly with a timestamp ``seconds`` in the past (negative: the future)."""
        return cls("stale_timestamp", seconds=seconds)

    @classmethod
    def probe(cls) -> Fault:
        """Send WeChat Pay's signature probe: ``Wechatpay-Signature: WECHATPAY/SIGNTEST/...``."""
        return cls("probe")

    @classmethod
    def unsigned(cls) -> Fault:
        """Answer normally but without the ``Wechatpay-*`` signature headers."""
        return cls("unsigned")
