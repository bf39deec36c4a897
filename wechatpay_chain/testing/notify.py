"""The fake server's side of webhooks: build, sign, encrypt, send and resend notifications.

As WeChat Pay does it (PROTOCOL.md section 3): POST the envelope to ``notify_url`` with the
``Wechatpay-*`` headers, count a 2xx as received, anything else (or no answer within 5 s) as
refused, and resend on the documented schedule. ``time_scale`` shrinks the schedule so that
a test sees a whole day of resends in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import secrets
import string
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
import attrs
from yarl import URL

from .._wire import CHINA_TIME, compact_json
from ..crypto import aes_gcm_encrypt
from .faults import Fault
from .signer import WeChatPaySigner

__all__ = ["RETRY_SCHEDULE", "Attempt", "Delivery", "NotificationSender"]

#: Seconds before each resend: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h, 24h4m in all.
RETRY_SCHEDULE = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)
#: WeChat Pay waits this long for an answer before it counts the attempt as failed.
ANSWER_WITHIN_SECONDS = 5.0
NOT_LOOPBACK = "not sent: the fake server only delivers to loopback addresses"
_NONCE_CHARACTERS = string.ascii_letters + string.digits


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    try:
        host = URL(url).host
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Attempt:
    """One POST to the ``notify_url``: the status received, or why none was."""

    number: int
    status: int | None
    error: str | None
    fault: str | None
    body: bytes = attrs.field(repr=False)


@attrs.define
class Delivery:
    """One notification and every attempt to deliver it."""

    id: str
    url: str
    event_type: str
    resource: Any = attrs.field(repr=False)
    attempts: list[Attempt] = attrs.field(factory=list)
    delivered: bool = False
    _finished: asyncio.Event = attrs.field(factory=asyncio.Event, repr=False)

    @property
    def finished(self) -> bool:
        """Delivered, or given up after the last resend."""
        return self._finished.is_set()

    async def wait(self, timeout: float = 10.0) -> Delivery:
        """Wait until delivered or given up (at most ``timeout`` seconds)."""
        await asyncio.wait_for(self._finished.wait(), timeout)
        return self


class Courier:
    """Posts in the background: the deliveries under way, as tasks, and one session for them,
    opened on the first post and closed (the tasks cancelled) by :meth:`close`."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def start(self, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int | None, bytes, str | None]:
        """The answer's status and body, or ``None``, ``b""`` and what went wrong."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        started = time.monotonic()
        try:
            async with self._session.post(url, data=body, headers=headers) as answer:
                return answer.status, await answer.read(), None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            waited = time.monotonic() - started
            return None, b"", f"{type(error).__name__} after {waited:.2f} s"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@attrs.define
class NotificationSender:
    signer: WeChatPaySigner
    apiv3_key: bytes = attrs.field(repr=False)
    time_scale: float = 1.0
    deliveries: list[Delivery] = attrs.field(factory=list)
    _courier: Courier = attrs.field(factory=lambda: Courier(ANSWER_WITHIN_SECONDS), repr=False)

    def envelope(
        self,
        *,
        event_type: str,
        resource: Any,
        summary: str,
        original_type: str,
        apiv3_key: bytes | None = None,
    ) -> dict[str, Any]:
        nonce = "".join(secrets.choice(_NONCE_CHARACTERS) for _ in range(12))
        plaintext = compact_json(resource)
        return {
            "id": str(uuid.uuid4()),
            "create_time": datetime.datetime.fromtimestamp(
                int(self.signer.clock()), CHINA_TIME
            ).isoformat(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": aes_gcm_encrypt(
                    apiv3_key or self.apiv3_key,
                    nonce=nonce,
                    plaintext=plaintext,
                    associated_data=original_type,
                ),
                "associated_data": original_type,
                "nonce": nonce,
            },
        }

    def build(
        self,
        *,
        event_type: str,
        resource: Any,
        summary: str = "",
        original_type: str = "transaction",
        fault: Fault | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of one notification, as a test might post it itself."""
        wrong_key = (
            secrets.token_urlsafe(24)[:32].encode()
            if fault is not None and fault.kind == "bad_ciphertext"
            else None
        )
        document = self.envelope(
            event_type=event_type,
            resource=resource,
            summary=summary,
            original_type=original_type,
            apiv3_key=wrong_key,
        )
        body = compact_json(document)
        headers = {"Content-Type": "application/json", **self.signer.headers(body, fault)}
        if fault is not None and fault.kind == "tamper_body":
            body = body.replace(b'"summary":"', b'"summary":" ', 1)
        return headers, body

    def send(
        self,
        url: str,
        *,
        event_type: str,
        resource: Any,
        summary: str,
        original_type: str,
        fault: Fault | None,
    ) -> Delivery:
        """Start delivering in the background; the returned :class:`Delivery` fills in."""
        envelope = self.envelope(
            event_type=event_type, resource=resource, summary=summary, original_type=original_type
        )
        delivery = Delivery(id=envelope["id"], url=url, event_type=event_type, resource=resource)
        self.deliveries.append(delivery)
        self._courier.start(self._deliver(delivery, envelope, fault))
        return delivery

    async def _deliver(
        self, delivery: Delivery, envelope: dict[str, Any], fault: Fault | None
    ) -> None:
        body = compact_json(envelope)
        try:
            if not is_loopback(delivery.url):
                # A test server never calls out: a notify_url elsewhere stays unsent, on record.
                delivery.attempts.append(Attempt(1, None, NOT_LOOPBACK, None, body))
                return
            for number in range(len(RETRY_SCHEDULE) + 1):
                if number:
                    await asyncio.sleep(RETRY_SCHEDULE[number - 1] * self.time_scale)
                # A fault spoils the first send only; the resends are what WeChat Pay sends.
                this_fault = fault if number == 0 else None
                if this_fault is not None and this_fault.kind in ("bad_ciphertext", "tamper_body"):
                    headers, sent = self.build(
                        event_type=delivery.event_type,
                        resource=delivery.resource,
                        summary=envelope["summary"],
                        original_type=envelope["resource"]["original_type"],
                        fault=this_fault,
                    )
                else:
                    sent = body
                    headers = {
                        "Content-Type": "application/json",
                        **self.signer.headers(body, this_fault),
                    }
                status, _, error = await self._courier.post(delivery.url, headers, sent)
                delivery.attempts.append(
                    Attempt(
                        number + 1, status, error, this_fault.kind if this_fault else None, sent
                    )
                )
                if status is not None and 200 <= status < 300:
                    delivery.delivered = True
                    return
        finally:
            delivery._finished.set()

    async def close(self) -> None:
        await self._courier.close()
