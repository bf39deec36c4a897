"""The command line: ``python -m wechatpay_chain demo``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import __version__
from .cli_certificates import add_certificates_command, run_certificates
from .cli_files import add_bill_command, run_bill
from .demo import run_demo

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wechatpay_chain",
        description="wechatpay_chain: an asyncio WeChat Pay API v3 client",
    )
    parser.add_argument("--version", action="version", version=f"wechatpay_chain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="start the built-in fake WeChat Pay server on loopback and make real signed calls to it",
        description="Starts the fake WeChat Pay server on 127.0.0.1 with throwaway keys and makes signed, "
        "verified calls: the password-exempt pre-sign (three ways of writing the path), then a Native "
        "order, a query through a placeholder and a close.",
    )
    add_certificates_command(commands)
    add_bill_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "demo":
        return asyncio.run(run_demo(_print))
    if arguments.command == "certificates":
        return run_certificates(arguments, _print)
    if arguments.command == "bill":
        return run_bill(arguments, _print)
    return 2  # pragma: no cover - argparse rejects unknown commands first


def _print(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
