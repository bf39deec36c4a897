"""Developer sessions: ``nox -s tests lint typecheck docs``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """The whole test suite on each supported Python, against the fake server over loopback."""
    session.install("-e", ".[tests]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the benchmarks."""
    session.install("-e", ".[lint]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def typing_speed(session: nox.Session) -> None:
    """mypy over a module that uses twenty typed paths, cold and warm (the typed surface)."""
    session.install("-e", ".[lint]")
    session.run("python", "benchmarks/time_typing.py")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks under benchmarks/: a table each, and JSON in benchmarks/results/."""
    # [tests]: the import benchmark times the pytest plugin, which needs pytest-asyncio.
    # requests: bench_sync.py compares with the synchronous SDKs' way of calling.
    session.install("-e", ".[tests]", "requests")
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
