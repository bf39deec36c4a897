"""``bill download``: a verified trade or fund-flow bill to a file, with a progress line."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from ..files import BillStream, Opening
from .common import EXIT_OK, UsageError, add_merchant_options, existing_directory, merchant_from
from .progress import ProgressBar, human_size

__all__ = ["add_bill_command"]


def _date(text: str) -> str:
    try:
        if len(text) == 10:
            datetime.date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a date written YYYY-MM-DD, got {text!r}")


def add_bill_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bill = commands.add_parser("bill", help="trade and fund-flow bills")
    actions = bill.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser(
        "download",
        help="download a bill, verify its SHA-1 and write the CSV to a file",
        description="Applies for the bill, downloads it (gunzipping a --gzip transfer), checks the "
        "SHA-1 of the content against WeChat Pay's hash_value and only then puts the file in place.",
    )
    download.add_argument("--date", required=True, type=_date, help="the bill's date, YYYY-MM-DD")
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
    download.add_argument("--no-progress", action="store_true", help="no progress line")
    add_merchant_options(download)
    download.set_defaults(run=download_bill)


def _output_file(text: str) -> Path:
    """The file to write, checked before anything is sent: not a directory, in one that exists."""
    path = Path(text)
    if text.endswith(("/", "\\")) or path.is_dir():
        raise UsageError(f"--output {text} names a directory; name the file to write")
    existing_directory("--output", path.parent)
    return path


async def download_bill(arguments: argparse.Namespace) -> int:
    output = _output_file(arguments.output)
    wxpay = merchant_from(arguments).client()
    progress = None if arguments.no_progress else ProgressBar(sys.stderr)
    tar_type = "GZIP" if arguments.gzip else None
    async with wxpay:
        opening: Opening[BillStream]
        if arguments.kind == "trade":
            opening = wxpay.bills.trade(
                arguments.date, arguments.bill_type or "ALL", tar_type, on_progress=progress
            )
        else:
            opening = wxpay.bills.fundflow(
                arguments.date, arguments.bill_type or "BASIC", tar_type, on_progress=progress
            )
        try:
            async with opening as bill:
                path = await bill.save(output)
        except BaseException:
            if progress is not None:
                progress.abandon()  # the error line must not follow a half-drawn bar
            raise
    if progress is not None:
        progress.finish()
    print(
        f"{path}: {human_size(bill.size)} ({bill.size:,} bytes), SHA-1 {bill.sha1} "
        "verified against WeChat Pay's hash_value",
        flush=True,
    )
    return EXIT_OK
