"""What every subcommand shares: the merchant options and their ``WECHATPAY_*`` variables,
the exit statuses, and turning an expected failure into one line on standard error.

Keys are named by file paths. The APIv3 key is read from the environment variable that
``--apiv3-key-env`` names (``WECHATPAY_APIV3_KEY`` by default), or asked for, and never taken
from the command line: argv is visible to every user of the machine and kept in shell
histories.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TextIO

import attrs

from ..certificates import CertificateCache
from ..client import DEFAULT_BASE_URL, WeChatPay
from ..errors import ApiError, ConfigError, WeChatPayError

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "CommandError",
    "Merchant",
    "Refused",
    "UsageError",
    "add_merchant_options",
    "describe_failure",
    "existing_directory",
    "merchant_from",
    "one_line",
    "report",
]

#: The command did what was asked.
EXIT_OK = 0
#: WeChat Pay or a verification said no: an error answer, a signature or hash that does not
#: verify, a broken connection, an answer that cannot be read.
EXIT_REFUSED = 1
#: The command cannot work as written: a bad option or argument, a missing credential, an
#: unusable key file or output path. Nothing was sent.
EXIT_USAGE = 2

APIV3_KEY_VARIABLE = "WECHATPAY_APIV3_KEY"


class CommandError(Exception):
    """An expected failure: its message is printed as is, and the process exits with ``status``."""

    status = EXIT_REFUSED


class UsageError(CommandError):
    status = EXIT_USAGE


class Refused(CommandError):
    status = EXIT_REFUSED


@attrs.frozen
class _Option:
    flag: str
    variable: str
    text: str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


# The one definition of the merchant options: every subcommand that calls WeChat Pay adds
# these, so an exported WECHATPAY_* variable means the same thing to all of them.
_MERCHANT_OPTIONS = (
    _Option("--mchid", "WECHATPAY_MCHID", "merchant ID"),
    _Option("--serial", "WECHATPAY_SERIAL", "merchant API certificate serial number"),
    _Option("--private-key", "WECHATPAY_PRIVATE_KEY", "merchant private key file", "FILE"),
    _Option("--public-key-id", "WECHATPAY_PUBLIC_KEY_ID", "WeChat Pay public key ID", "PUB_KEY_ID"),
    _Option("--public-key", "WECHATPAY_PUBLIC_KEY", "WeChat Pay public key file", "FILE"),
    _Option("--base-url", "WECHATPAY_BASE_URL", f"API host, else {DEFAULT_BASE_URL}", "URL"),
)


def add_merchant_options(parser: argparse.ArgumentParser) -> None:
    """The merchant options, each defaulting to its ``WECHATPAY_*`` variable when it is set."""
    group = parser.add_argument_group(
        "merchant", "each option defaults to the environment variable named in its help"
    )
    for option in _MERCHANT_OPTIONS:
        # No default here: the variable is read when the command runs (merchant_from), so
        # that `--public-key-id ""` can still switch off an exported value.
        group.add_argument(
            option.flag, metavar=option.metavar, help=f"{option.text} (${option.variable})"
        )
    group.add_argument(
        "--apiv3-key-env",
        metavar="NAME",
        default=APIV3_KEY_VARIABLE,
        help=f"environment variable holding the APIv3 key (default {APIV3_KEY_VARIABLE}); "
        "the key itself is never an option",
    )


@attrs.frozen
class Merchant:
    """The merchant as the command line and the environment name it."""

    mchid: str
    serial: str
    private_key: Path
    public_keys: dict[str, Path]
    apiv3_key: str | None = attrs.field(repr=False)
    base_url: str

    def client(self, *, certificate_cache: CertificateCache | None = None) -> WeChatPay:
        """A client for this merchant; ``ConfigError`` (exit 2) when a key is unusable."""
        return WeChatPay(
            self.mchid,
            self.serial,
            self.private_key,
            dict(self.public_keys),
            apiv3_key=self.apiv3_key,
            base_url=self.base_url,
            certificate_cache=certificate_cache,
        )


def _value(arguments: argparse.Namespace, option: _Option) -> str | None:
    given: str | None = getattr(arguments, option.dest)
    if given is None:
        given = os.environ.get(option.variable)
    return given or None


def _required(arguments: argparse.Namespace, flag: str) -> str:
    option = next(option for option in _MERCHANT_OPTIONS if option.flag == flag)
    value = _value(arguments, option)
    if value is None:
        raise UsageError(f"{option.flag} (or ${option.variable}) is required")
    return value


def _apiv3_key(arguments: argparse.Namespace, *, ask: bool) -> str | None:
    variable: str = arguments.apiv3_key_env
    value = os.environ.get(variable)
    if value:
        return value
    if not ask:
        return None
    if not sys.stdin.isatty():
        raise UsageError(
            f"the APIv3 key is needed: set ${variable} (or name another variable with "
            "--apiv3-key-env); there is no terminal to ask for it"
        )
    return getpass.getpass("APIv3 key: ") or None


def merchant_from(arguments: argparse.Namespace, *, needs_apiv3_key: bool = False) -> Merchant:
    """The merchant the options and ``WECHATPAY_*`` variables name, checked before any call.

    ``needs_apiv3_key`` (the certificate download) asks for the key on a terminal when its
    variable is unset. Otherwise something to verify answers with is required: a WeChat Pay
    public key, or the APIv3 key (platform certificates).
    """
    by_flag = {option.flag: option for option in _MERCHANT_OPTIONS}
    key_id = _value(arguments, by_flag["--public-key-id"])
    key_file = _value(arguments, by_flag["--public-key"])
    if (key_id is None) != (key_file is None):
        raise UsageError("--public-key-id and --public-key go together")
    merchant = Merchant(
        mchid=_required(arguments, "--mchid"),
        serial=_required(arguments, "--serial"),
        private_key=Path(_required(arguments, "--private-key")),
        public_keys={} if key_id is None or key_file is None else {key_id: Path(key_file)},
        apiv3_key=_apiv3_key(arguments, ask=needs_apiv3_key),
        base_url=_value(arguments, by_flag["--base-url"]) or DEFAULT_BASE_URL,
    )
    if needs_apiv3_key and merchant.apiv3_key is None:
        raise UsageError("the APIv3 key is needed and none was given")
    if not merchant.public_keys and merchant.apiv3_key is None:
        raise UsageError(
            "nothing to verify WeChat Pay's answers with: give --public-key-id and --public-key "
            f"(or their variables), or the APIv3 key in ${arguments.apiv3_key_env} "
            "(platform certificates)"
        )
    return merchant


def existing_directory(option: str, path: Path) -> Path:
    """``path`` if it is a directory; else the usage error to report before any call."""
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{option} {path} is not a directory")
    raise UsageError(f"{option}: there is no directory {path} (create it first)")


def one_line(text: str) -> str:
    """``text`` on one line: an error message never spreads over several."""
    return " ".join(text.split())


def describe_failure(error: BaseException) -> tuple[int, str] | None:  # noqa: PLR0911 - one per kind
    """The exit status and message for an expected failure; ``None`` for anything else (a bug,
    which is left to surface with its traceback)."""
    if isinstance(error, CommandError):
        return error.status, str(error)
    if isinstance(error, ConfigError):  # before WeChatPayError and ValueError: it is both
        return EXIT_USAGE, str(error)
    if isinstance(error, ApiError):
        message = f"WeChat Pay answered {error}"
        if error.status == 401:
            message += ": it refused the request's signature; check --serial and --private-key"
        return EXIT_REFUSED, message
    if isinstance(error, WeChatPayError):
        return EXIT_REFUSED, str(error)
    if isinstance(error, RecursionError):
        return EXIT_REFUSED, "the answer is nested too deeply to be read"
    if isinstance(error, json.JSONDecodeError):
        return EXIT_REFUSED, f"the answer is not valid JSON ({error})"
    if isinstance(error, UnicodeDecodeError):
        return EXIT_REFUSED, f"the answer is not valid UTF-8 ({error.reason})"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return EXIT_REFUSED, f"{where}{error.strerror or error}"
    if isinstance(error, ValueError):
        return EXIT_REFUSED, str(error)
    return None


def report(status_and_message: tuple[int, str], stream: TextIO) -> int:
    status, message = status_and_message
    stream.write(f"error: {one_line(message)}\n")
    stream.flush()
    return status
