"""``python -m wechatpay_chain bill download``: a verified bill to a file, with a progress bar.

The merchant is named by options or environment variables (``WECHATPAY_MCHID``,
``WECHATPAY_SERIAL``, ``WECHATPAY_PRIVATE_KEY``, ``WECHATPAY_PUBLIC_KEY_ID``,
``WECHATPAY_PUBLIC_KEY``, ``WECHATPAY_BASE_URL``). Keys are given as file paths; the APIv3
key, needed only to verify with platform certificates, is read from the environment
variable named by ``--apiv3-key-env`` and never from the command line (argv is visible to
every user of the machine and kept in shell histories).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .client import DEFAULT_BASE_URL, WeChatPay
from .errors import ConfigError, WeChatPayError
from .files import BillStream, Opening

__all__ = ["ProgressBar", "add_bill_command", "run_bill"]

_MIB = 1024 * 1024


def _from_env(
    group: argparse._ArgumentGroup, option: str, variable: str, text: str, **extra: str
) -> None:
    group.add_argument(
        option,
        default=os.environ.get(variable, extra.pop("default", None)),
        help=f"{text} (default: ${variable})",
        **extra,  # type: ignore[arg-type]
    )


def add_bill_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bill = commands.add_parser("bill", help="trade and fund-flow bills")
    actions = bill.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser(
        "download",
        help="download a bill, verify its SHA-1 and write the CSV to a file",
        description="Applies for the bill, downloads it (gunzipping a --gzip transfer), checks the "
        "SHA-1 of the content against WeChat Pay's hash_value and only then puts the file in place. "
        "Keys are file paths; the APIv3 key (platform-certificate mode only) is read from the "
        "environment variable named by --apiv3-key-env, never from the command line.",
    )
    download.add_argument("--date", required=True, help="the bill's date, YYYY-MM-DD")
    download.add_argument(
        "--kind", choices=("trade", "fundflow"), default="trade", help="default: trade"
    )
    download.add_argument(
        "--type",
        dest="bill_type",
        help="trade: ALL (default), SUCCESS, REFUND...; fundflow: BASIC (default), OPERATION, FEES",
    )
    download.add_argument(
        "--gzip", action="store_true", help="transfer it compressed; the file is the CSV"
    )
    download.add_argument("--output", required=True, metavar="FILE", help="where to write it")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    merchant = download.add_argument_group("merchant")
    _from_env(merchant, "--mchid", "WECHATPAY_MCHID", "merchant ID")
    _from_env(merchant, "--serial", "WECHATPAY_SERIAL", "merchant API certificate serial")
    _from_env(
        merchant, "--private-key", "WECHATPAY_PRIVATE_KEY", "apiclient_key.pem", metavar="FILE"
    )
    _from_env(merchant, "--public-key-id", "WECHATPAY_PUBLIC_KEY_ID", "PUB_KEY_ID_...")
    _from_env(
        merchant,
        "--public-key",
        "WECHATPAY_PUBLIC_KEY",
        "the WeChat Pay public key's .pem",
        metavar="FILE",
    )
    _from_env(merchant, "--base-url", "WECHATPAY_BASE_URL", "API host", default=DEFAULT_BASE_URL)
    merchant.add_argument(
        "--apiv3-key-env",
        metavar="NAME",
        default="WECHATPAY_APIV3_KEY",
        help="environment variable holding the APIv3 key, for platform certificates "
        "(default: WECHATPAY_APIV3_KEY; unset is fine with a public key)",
    )


class ProgressBar:
    """``on_progress`` for a terminal: redrawn in place at most ten times a second (only
    the last state when the stream is not a terminal)."""

    def __init__(self, stream: TextIO, *, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._live = stream.isatty()
        self._started = time.monotonic()
        self._drawn = 0.0
        self._state: tuple[int, int | None] = (0, None)

    def __call__(self, done: int, total: int | None) -> None:
        self._state = (done, total)
        now = time.monotonic()
        if self._live and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw("")

    def finish(self) -> None:
        self._draw("\n")

    def _draw(self, end: str) -> None:
        done, total = self._state
        rate = done / _MIB / max(time.monotonic() - self._started, 1e-6)
        if total:
            filled = min(self._width, self._width * done // total)
            bar = "#" * filled + "-" * (self._width - filled)
            text = f"[{bar}] {done / total:6.1%}  {done / _MIB:,.1f} of {total / _MIB:,.1f} MiB"
        else:
            text = f"{done / _MIB:,.1f} MiB"
        self._stream.write(f"\r{text}  {rate:,.1f} MiB/s{end}")
        self._stream.flush()


def _required(arguments: argparse.Namespace, name: str, variable: str) -> str:
    value = getattr(arguments, name.replace("-", "_"))
    if not value:
        raise ConfigError(f"--{name} (or ${variable}) is required")
    return str(value)


def _client(arguments: argparse.Namespace) -> WeChatPay:
    public_keys: dict[str, str] = {}
    if bool(arguments.public_key_id) != bool(arguments.public_key):
        raise ConfigError("--public-key-id and --public-key go together")
    if arguments.public_key_id:
        public_keys[arguments.public_key_id] = arguments.public_key
    apiv3_key = os.environ.get(arguments.apiv3_key_env) or None
    if not public_keys and apiv3_key is None:
        raise ConfigError(
            "nothing to verify WeChat Pay's answers with: give --public-key-id and --public-key, "
            f"or the APIv3 key in ${arguments.apiv3_key_env} (platform certificates)"
        )
    return WeChatPay(
        _required(arguments, "mchid", "WECHATPAY_MCHID"),
        _required(arguments, "serial", "WECHATPAY_SERIAL"),
        _required(arguments, "private-key", "WECHATPAY_PRIVATE_KEY"),
        public_keys,
        apiv3_key=apiv3_key,
        base_url=arguments.base_url,
    )


def run_bill(arguments: argparse.Namespace, say: Callable[[str], None]) -> int:
    try:
        return asyncio.run(_download(arguments, say))
    except ConfigError as error:
        say(f"error: {error}")
        return 2


async def _download(arguments: argparse.Namespace, say: Callable[[str], None]) -> int:
    wxpay = _client(arguments)
    progress = None if arguments.no_progress else ProgressBar(sys.stderr)
    tar_type = "GZIP" if arguments.gzip else None
    async with wxpay:
        opening: Opening[BillStream]
        try:
            if arguments.kind == "trade":
                opening = wxpay.bills.trade(
                    arguments.date, arguments.bill_type or "ALL", tar_type, on_progress=progress
                )
            else:
                opening = wxpay.bills.fundflow(
                    arguments.date, arguments.bill_type or "BASIC", tar_type, on_progress=progress
                )
            async with opening as bill:
                path = await bill.save(arguments.output)
        except (WeChatPayError, OSError, ValueError) as error:
            if progress is not None:
                progress.finish()
            say(f"error: {error}")
            return 1
    if progress is not None:
        progress.finish()
    say(f"{path}: {bill.size:,} bytes, SHA-1 {bill.sha1} verified against WeChat Pay's hash_value")
    return 0
