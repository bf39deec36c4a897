"""``demo``: the fake WeChat Pay server on loopback, and real signed calls to it."""

from __future__ import annotations

import argparse

from ..demo import run_demo
from .common import EXIT_OK

__all__ = ["add_demo_command"]


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="start the built-in fake WeChat Pay server on loopback and make real signed calls to it",
        description="Starts the fake WeChat Pay server on 127.0.0.1 with throwaway keys and makes "
        "signed, verified calls: the password-exempt pre-sign (three ways of writing the path), "
        "then a Native order, a query through a placeholder and a close.",
    )
    demo.set_defaults(run=_demo)


def _say(text: str) -> None:
    print(text, flush=True)


async def _demo(arguments: argparse.Namespace) -> int:
    status = await run_demo(_say)
    return status if status else EXIT_OK
