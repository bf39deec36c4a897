"""Shared by the benchmarks: interleaved timing and the printed/JSON report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def interleaved(
    cases: Mapping[str, Callable[[], object]], *, rounds: int, per_round: int
) -> dict[str, float]:
    """Median seconds per call of each case, the cases taking turns round by round so that
    a noisy neighbour slows them alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            started = time.perf_counter()
            for _ in range(per_round):
                case()
            samples[name].append((time.perf_counter() - started) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    from importlib.metadata import version  # noqa: PLC0415 - only when reporting

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_model": cpu_model(),
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "system": platform.system(),
        "aiohttp": version("aiohttp"),
        "cryptography": version("cryptography"),
    }


def report(name: str, rows: list[tuple[str, str]], data: dict[str, Any]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n{name}")
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}".rstrip())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2) + "\n")
    print(
        f"  (written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})"
    )
