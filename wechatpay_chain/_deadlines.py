"""Time limits for many concurrent attempts, kept with one timer per event loop.

``asyncio.timeout`` schedules a timer for every use. The loop keeps its timers in a heap
ordered by Python code (``TimerHandle.__lt__``), and a cancelled timer stays in the heap
until it is popped: at a thousand requests a second that costs about 35,000 instructions
per attempt here, a fifth of everything the client adds to a call
(``benchmarks/bench_instructions.py``). :class:`Deadlines` keeps the attempts of one
:class:`~wechatpay_chain.middleware.RetryMiddleware` in a dict and a single timer at the
earliest deadline among them. Attempts that end in time, nearly all of them, cost a dict
insertion and a deletion; the timer fires about once per timeout period, finds what is
overdue, cancels those tasks, and is set again at the next deadline.

Use: ``deadline = deadlines.start(seconds)``, then ``try: await ...``, ``except
CancelledError as error: raise_if_expired(deadline, error); raise``, ``finally:
deadlines.finish(deadline)``. The cancellation follows ``asyncio.timeout``: a task cancelled
for being overdue raises ``TimeoutError``, unless something else cancelled it as well, in
which case the ``CancelledError`` stands. Python 3.11 and later (``Task.uncancel``).
"""

from __future__ import annotations

import asyncio
import math

__all__ = ["Deadline", "Deadlines", "raise_if_expired"]


class Deadline:
    """One attempt's: its task, when it is due (loop time), and whether it came."""

    __slots__ = ("cancelling", "expired", "home", "task", "when")

    def __init__(self, home: _LoopDeadlines, task: asyncio.Task[object], when: float) -> None:
        self.home = home
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.expired = False


class _LoopDeadlines:
    """The deadlines of one event loop, and its one timer."""

    __slots__ = ("live", "loop", "loops", "timer", "timer_when")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        loops: dict[asyncio.AbstractEventLoop, _LoopDeadlines],
    ) -> None:
        self.loop = loop
        self.loops = loops  # the owner's, to leave once idle (and not keep the loop alive)
        self.live: dict[Deadline, None] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = math.inf

    def add(self, deadline: Deadline) -> None:
        self.live[deadline] = None
        if deadline.when < self.timer_when:
            self._set_timer(deadline.when)

    def _set_timer(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._expire)
        self.timer_when = when

    def _expire(self) -> None:
        self.timer, self.timer_when = None, math.inf
        now = self.loop.time()
        earliest = math.inf
        for deadline in list(self.live):
            if deadline.when <= now:
                del self.live[deadline]
                deadline.expired = True
                deadline.task.cancel()
            else:
                earliest = min(earliest, deadline.when)
        if earliest < math.inf:
            self._set_timer(earliest)
        else:  # idle: nothing here refers to the loop any more
            self.loops.pop(self.loop, None)


class Deadlines:
    """Deadlines of concurrent attempts; see the module's documentation."""

    __slots__ = ("_loops",)

    def __init__(self) -> None:
        # By loop; an entry leaves when its timer finds nothing left to watch.
        self._loops: dict[asyncio.AbstractEventLoop, _LoopDeadlines] = {}

    def start(self, seconds: float) -> Deadline:
        """The deadline of the current task, ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - aiohttp middlewares always run in a task
            raise RuntimeError("a deadline needs a task")
        per_loop = self._loops.get(loop)
        if per_loop is None:
            per_loop = self._loops[loop] = _LoopDeadlines(loop, self._loops)
        deadline = Deadline(per_loop, task, loop.time() + seconds)
        per_loop.add(deadline)
        return deadline

    def finish(self, deadline: Deadline) -> None:
        """The attempt ended (the timer, if set for it, finds nothing and moves on)."""
        deadline.home.live.pop(deadline, None)


def raise_if_expired(deadline: Deadline, error: asyncio.CancelledError) -> None:
    """Turn a cancellation this deadline caused, and nothing else did, into TimeoutError."""
    if deadline.expired and deadline.task.uncancel() <= deadline.cancelling:
        raise TimeoutError from error
