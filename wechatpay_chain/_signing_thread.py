"""One worker thread that computes RSA signatures in batches, off the event loop.

An RSA-2048 signature costs about 0.25 ms of CPU, and cryptography releases the GIL while
it computes one, so a second core can sign while the loop serves answers. Handing each
signature to a thread pool costs more than it saves on a small machine (a future, a
wake-up of the loop and a GIL hand-over per request). This worker instead takes every
message waiting when it wakes, signs them one after another, and hands the whole batch
back to the loop with one ``call_soon_threadsafe``: under load the costs of the hand-over
are shared by the batch.

The message is built on the loop (timestamp, nonce, target and body), so the thread only
runs the signature and Base64. The thread starts on the first signature and ends after
``IDLE_SECONDS`` without work, or at :meth:`SigningThread.stop`; it is a daemon, and a
stopped worker starts again on the next signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

from .signing import SigningKey, rsa_sign

__all__ = ["IDLE_SECONDS", "SigningThread"]

#: A thread with no signature to compute for this long ends (a new one starts on demand).
IDLE_SECONDS = 10.0

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[str]", bytes]


class SigningThread:
    """Signs messages with one private key in a worker thread, in batches."""

    __slots__ = ("_jobs", "_key", "_lock", "_stopping", "_thread", "_wake")

    def __init__(self, private_key: SigningKey) -> None:
        self._key = private_key
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards starting and ending the thread
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<SigningThread running={self.running}>"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def sign(self, message: bytes) -> asyncio.Future[str]:
        """The Base64 signature of ``message``, as a future of the running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._jobs.append((loop, future, message))
        with self._lock:
            self._stopping = False
            # Not alive although set: this process was forked from one where it ran.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="wechatpay-chain-signing", daemon=True
                )
                self._thread.start()
        self._wake.set()
        return future

    def stop(self) -> None:
        """Ask the thread to end once the signatures already asked for are handed back."""
        with self._lock:
            self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(IDLE_SECONDS)
            self._wake.clear()
            self._sign_batch()
            with self._lock:
                # Checked under the lock that sign() starts threads under: a job queued
                # after this check finds no thread and starts one.
                if not self._jobs and (self._stopping or not woken):
                    self._thread = None
                    return

    def _sign_batch(self) -> None:
        done: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str], str | Exception]]]
        done = {}
        while self._jobs:
            loop, future, message = self._jobs.popleft()
            outcome: str | Exception
            try:
                outcome = rsa_sign(self._key, message)
            except Exception as error:  # handed to the request that asked, on its loop
                outcome = error
            done.setdefault(loop, []).append((future, outcome))
        for loop, results in done.items():
            # A loop closed meanwhile raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future[str], str | Exception]]) -> None:
    for future, outcome in results:
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
