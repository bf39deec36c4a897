"""The fake WeChat Pay server in a process of its own, for the end-to-end benchmark.

Run by :func:`serve_in_subprocess` below (not by hand): it reads one JSON line of keys from
stdin, starts ``FakeWeChatPay(fast=True)`` on 127.0.0.1, prints its URL, and serves until
stdin is closed (or says ``stop``), the parent dies, or ``MAX_LIFETIME`` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

# A forgotten server stops by itself: the benchmark takes about three minutes.
MAX_LIFETIME = 900.0
START_TIMEOUT = 30.0


@attrs.frozen
class ServerProcess:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (Linux; 0.0 elsewhere). Clock ticks:
        10 ms resolution, so only totals over many requests mean anything."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def child_process(
    script: Path, config: dict[str, Any], *arguments: str, start_timeout: float = START_TIMEOUT
) -> Iterator[tuple[str, int]]:
    """Run ``script`` in a child process, send it ``config`` as one JSON line, and yield its
    first line of output and its pid; closing its stdin on the way out stops it (killed if
    it has not stopped within 10 s)."""
    process = subprocess.Popen(  # noqa: S603 - a benchmark script, with this interpreter
        [sys.executable, str(script), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(config) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], start_timeout)
        yield (process.stdout.readline() if ready else ""), process.pid
    finally:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()  # EOF: the child stops
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_requested() -> asyncio.Event:
    """In the child: an event set when stdin says ``stop`` or closes (the parent is done
    or died). Call it inside the running loop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        # Returns on "stop" or EOF, or never (then the caller's lifetime limit ends the
        # child; the thread is a daemon).
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    return stop


@contextlib.contextmanager
def serve_in_subprocess(config: dict[str, str]) -> Iterator[ServerProcess]:
    """Start the server process with ``config`` (see :func:`_serve`), yield it, stop it."""
    with child_process(Path(__file__), config) as (line, pid):
        if not line.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake server did not start (said {line!r})")
        yield ServerProcess(line.strip(), pid)


async def _serve() -> None:
    from wechatpay_chain.testing import FakeWeChatPay  # noqa: PLC0415 - child process only

    config = json.loads(sys.stdin.readline())
    stop = stop_requested()
    server = FakeWeChatPay(
        mchid=config["mchid"],
        serial=config["serial"],
        merchant_public_key=config["merchant_public_key"].encode(),
        public_key_id=config["public_key_id"],
        wechatpay_private_key=config["wechatpay_private_key"].encode(),
        fast=True,
    )
    async with server:
        print(server.url, flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), MAX_LIFETIME)


if __name__ == "__main__":
    asyncio.run(_serve())
