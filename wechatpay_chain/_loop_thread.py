"""One private event loop in one daemon thread, run from other threads.

Blocking code (``SyncWeChatPay``) and the fake server's ``serve_in_thread`` both keep their
asyncio objects on such a loop: an aiohttp session belongs to the loop that opened it, so
everything that touches one runs there, and other threads only hand it coroutines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import WeChatPayError

__all__ = ["LoopThread", "running_loop"]

T = TypeVar("T")

logger = logging.getLogger("wechatpay_chain")

#: How often a waiting caller checks that the loop thread is still alive. The wait itself is
#: woken by the result; this only bounds the wait when the loop stopped under a call.
_ALIVE_CHECK_SECONDS = 1.0
#: How long stopping waits for the loop thread to finish its clean-up.
STOP_TIMEOUT = 5.0


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (without raising when there is none)."""
    return asyncio.events._get_running_loop()


class LoopThread:
    """An event loop running forever in a daemon thread, started on construction.

    :meth:`run` submits a coroutine and waits for its result; an exception in the waiting
    thread (``KeyboardInterrupt``, a signal handler's) cancels the coroutine on the loop.
    """

    def __init__(self, name: str) -> None:
        #: The process that started the thread: after ``fork()`` the child has no such thread.
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<LoopThread {self._thread.name!r} alive={self.alive}>"

    @property
    def alive(self) -> bool:
        """Whether the loop is running in this very process."""
        return self.pid == os.getpid() and self._thread.is_alive()

    def in_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                # What is still pending was abandoned by its caller: cancel it, let it clean up.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and return its result, from any other thread."""
        if self.in_thread():
            coroutine.close()
            raise RuntimeError("LoopThread.run called from its own loop: it would wait forever")
        future = self._submit(coroutine)
        try:
            if timeout is not None:
                return future.result(timeout)
            while True:
                try:
                    return future.result(_ALIVE_CHECK_SECONDS)
                except concurrent.futures.TimeoutError:
                    if not self.alive:
                        raise WeChatPayError(
                            "the client was closed while this call waited for its answer"
                        ) from None
        except BaseException:
            # A timeout, KeyboardInterrupt or any other exception in the waiting thread: the
            # call is abandoned, so it is cancelled where it runs, never left to finish (or
            # be retried) behind the caller's back. A no-op once it is done.
            future.cancel()
            raise

    def spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Start ``coroutine`` on the loop without waiting for it (callable from any thread)."""
        self._submit(coroutine)

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if not self.alive:
            coroutine.close()
            raise WeChatPayError("the client's event loop thread is not running: it was closed")
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:  # the loop closed between the check and the call
            coroutine.close()
            raise WeChatPayError(
                "the client's event loop thread is not running: it was closed"
            ) from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the loop and wait (at most ``timeout`` seconds) for its thread to finish."""
        if self.pid != os.getpid():
            return  # the parent's loop: not ours to stop (see SyncWeChatPay and fork)
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the event loop thread %r did not stop within %s s", self, timeout)
