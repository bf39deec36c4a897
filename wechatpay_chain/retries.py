"""When a request may be sent again, and how long to wait first.

The rules (PROTOCOL.md sections 9.2 and 10):

* Reads (GET, DELETE) are retried on connection errors, timeouts, 5xx and 429.
* Writes (POST, PUT, PATCH) are retried by default only when the connection failed before
  anything was sent. A caller who says a write is idempotent (``retry="idempotent"``: it
  carries its own merchant-side number, ``out_trade_no``, ``out_refund_no``..., so WeChat
  Pay treats a resend with identical parameters as the same request) also gets retries on
  timeouts, 5xx and 429.
* 202 means "accepted, repeat the same request": repeated for every method.
* Nothing that failed verification is retried: a bad signature is not a transient fault.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from typing import Literal

import aiohttp
import attrs

__all__ = [
    "RetryMode",
    "RetryPolicy",
    "is_idempotent_method",
    "retry_after_seconds",
    "retryable_error",
    "retryable_status",
]

#: Per call: ``None`` follows the default rules, ``"idempotent"`` allows write retries,
#: ``"never"`` sends once.
RetryMode = Literal["idempotent", "never"] | None


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0")


@attrs.frozen
class RetryPolicy:
    """How many attempts, how far apart, and within what total time.

    The wait before attempt *n* is a random fraction of ``backoff * 2**(n-2)`` capped at
    ``max_backoff`` (exponential backoff, full jitter), or the server's ``Retry-After``
    when it names one; no attempt starts after ``deadline`` seconds from the first.
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    backoff: float = attrs.field(default=0.2, validator=_positive)
    max_backoff: float = attrs.field(default=5.0, validator=_positive)
    deadline: float = attrs.field(default=30.0, validator=_positive)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 2))
        return rng.uniform(0, ceiling)


def is_idempotent_method(method: str) -> bool:
    return method in ("GET", "DELETE")


def retryable_status(status: int, method: str, mode: RetryMode) -> bool:
    if mode == "never":
        return False
    if status == 202:
        return True
    return (status == 429 or status >= 500) and (
        is_idempotent_method(method) or mode == "idempotent"
    )


def retryable_error(error: BaseException, method: str, mode: RetryMode) -> bool:
    if mode == "never":
        return False
    # Failed before anything was sent: safe to resend whatever the method.
    if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return True
    sent_maybe = isinstance(
        error,
        (
            asyncio.TimeoutError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
        ),
    )
    return sent_maybe and (is_idempotent_method(method) or mode == "idempotent")


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; a fraction is tolerated
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None  # not negative, NaN or infinite
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
