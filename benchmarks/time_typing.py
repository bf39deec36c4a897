"""How long mypy takes over a small module that uses twenty typed paths
(``typing_sample.py``): cold (an empty cache: the stubs of every documented operation are
read) and warm (the cache of a previous run, as in an editor or a CI cache).

Run it with mypy installed (``pip install -e '.[lint]'``, or ``nox -s typing_speed``); it is
not one of the ``bench_*.py`` scripts because those run with the ``tests`` extra only.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from _report import report

SAMPLE = Path(__file__).parent / "typing_sample.py"
STUBS = Path(__file__).parent.parent / "wechatpay_chain" / "endpoints"


def mypy(cache: Path, sample: Path) -> float:
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file=", "--cache-dir"]
    started = time.perf_counter()
    # S603: our own interpreter and arguments, no shell
    subprocess.run([*command, str(cache), str(sample)], check=True, capture_output=True)  # noqa: S603
    return time.perf_counter() - started


def main() -> None:
    cold: list[float] = []
    warm: list[float] = []
    edited: list[float] = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as directory:
            cache = Path(directory) / "cache"
            sample = Path(directory) / "sample.py"
            sample.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
            cold.append(mypy(cache, sample))
            warm.extend(mypy(cache, sample) for _ in range(3))
            for number in range(3):
                # what an editor does between keystrokes: the module changed, the stubs not
                with sample.open("a", encoding="utf-8") as text:
                    text.write(f"# edit {number}\n")
                edited.append(mypy(cache, sample))
    stub_bytes = sum(path.stat().st_size for path in STUBS.glob("*.pyi"))
    rows = [
        ("mypy --strict, cold (empty cache)", f"{statistics.median(cold):.2f} s"),
        ("mypy --strict, warm (cache kept)", f"{statistics.median(warm):.2f} s"),
        ("mypy --strict, warm, the module edited", f"{statistics.median(edited):.2f} s"),
        ("stubs read (every documented operation)", f"{stub_bytes / 1e6:.1f} MB"),
    ]
    report(
        "typing",
        rows,
        {
            "mypy": version("mypy"),
            "cold_s": cold,
            "warm_s": warm,
            "edited_s": edited,
            "stub_bytes": stub_bytes,
        },
    )


if __name__ == "__main__":
    main()
