"""Instructions per request, counted by valgrind: the library's cost over the hand-written
baseline, layer by layer, in a measure that does not move with the machine's load.

Wall-clock ratios on a shared two-core machine move by several hundredths from one round to
the next; instruction counts repeat to within 0.1 %. Each layer runs twice under
``valgrind --tool=callgrind`` (the fake server runs natively in its own process): once with
40 calls and once with 240, and the difference over 200 is what one call costs, start-up
and warm-up cancelled out. Signing is inline, so that every instruction is on one thread.

    .venv/bin/python benchmarks/bench_instructions.py

Skipped, saying so, where valgrind is not installed (``apt install valgrind``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _report import report
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CHILD = Path(__file__).parent / "_instructions_child.py"
LAYERS = {
    "baseline": "baseline: hand-written, inline",
    "middlewares": "aiohttp + wxpay.middlewares, target by hand",
    "send": "WeChatPay.send (no chain)",
    "library": "the library, chain built per call",
}
FEW, MANY = 40, 240
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _instructions(valgrind: str, layer: str, count: int, keys: Path) -> int:
    finished = subprocess.run(  # noqa: S603 - valgrind and this interpreter, fixed arguments
        [
            valgrind,
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(CHILD),
            layer,
            str(count),
            str(keys),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    match = _COLLECTED.search(finished.stderr)
    if match is None:
        raise RuntimeError(f"valgrind printed no count for {layer}: {finished.stderr[-500:]}")
    return int(match.group(1))


def main() -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("bench_instructions: valgrind is not installed; skipped", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as directory:
        keys = Path(directory)
        for name in ("merchant", "wechatpay"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            (keys / f"{name}.pem").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        # Two at a time: one per core.
        with ThreadPoolExecutor(2) as pool:
            runs = {
                (layer, count): pool.submit(_instructions, valgrind, layer, count, keys)
                for layer in LAYERS
                for count in (FEW, MANY)
            }
            per_call = {
                layer: (runs[layer, MANY].result() - runs[layer, FEW].result()) / (MANY - FEW)
                for layer in LAYERS
            }
    base = per_call["baseline"]
    rows = [
        (
            f"INSTRUCTIONS PER CALL  valgrind, ({MANY} calls - {FEW} calls) / {MANY - FEW}",
            "   thousands   over baseline   over the layer above",
        )
    ]
    previous = base
    for layer, label in LAYERS.items():
        value = per_call[layer]
        rows.append(
            (
                f"  {label}",
                f"{value / 1e3:12,.1f} {(value - base) / 1e3:+14,.1f} {(value - previous) / 1e3:+16,.1f}",
            )
        )
        previous = value
    rows.append(
        (
            "  the library over the baseline",
            f"{(per_call['library'] / base - 1) * 100:+11.2f} %",
        )
    )
    data: dict[str, Any] = {"instructions_per_call": per_call, "calls": [FEW, MANY]}
    report("instructions", rows, data)


if __name__ == "__main__":
    main()
