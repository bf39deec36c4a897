"""The command line: ``python -m wechatpay_chain COMMAND`` (or ``wechatpay-chain COMMAND``).

Results go to standard output; progress, ``-v`` details and errors to standard error. An
expected failure is one ``error: ...`` line, never a traceback, and the exit status says what
kind it was: 0 done, 1 WeChat Pay or a verification said no, 2 bad usage (nothing was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from .bill import add_bill_command
from .certificates import add_certificates_command
from .common import EXIT_USAGE, describe_failure, report
from .demo import add_demo_command
from .request import add_request_command

__all__ = ["main"]

#: Exit status after Ctrl-C, as shells report a process ended by SIGINT.
_EXIT_INTERRUPTED = 130


def _program() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m wechatpay_chain" if name in ("", "__main__.py", "-c") else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description="wechatpay_chain: an asyncio WeChat Pay API v3 client",
        epilog="exit status: 0 done, 1 WeChat Pay or a verification said no, 2 bad usage",
    )
    parser.add_argument("--version", action="version", version=f"wechatpay_chain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(commands)
    add_request_command(commands)
    add_certificates_command(commands)
    add_bill_command(commands)
    return parser


def _take_items(
    parser: argparse.ArgumentParser, arguments: argparse.Namespace, rest: list[str]
) -> None:
    """Give ``request`` the items written after an option: argparse collects the positional
    items of one stretch only, and ``request POST PATH a=1 -v b=2`` should mean a=1 and b=2."""
    items: list[str] | None = getattr(arguments, "items", None)
    if items is None or any(text.startswith("-") for text in rest):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    items.extend(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    try:
        arguments, rest = parser.parse_known_args(argv)
        if rest:
            _take_items(parser, arguments, rest)
    except SystemExit as exit_:  # argparse: --help, --version, or a usage error (printed)
        code = exit_.code
        return code if isinstance(code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = arguments.run
    try:
        return asyncio.run(run(arguments))
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return _EXIT_INTERRUPTED
    except Exception as error:
        failure = describe_failure(error)
        if failure is None:
            raise  # a bug: its traceback is what a report needs
        return report(failure, sys.stderr)
