"""``request METHOD PATH [ITEM...]``: any APIv3 endpoint from the shell, signed and verified.

Items are written as in httpie: ``key=value`` is a string field of the JSON body,
``key:=json`` a field given as raw JSON (a number, ``true``, an object...), ``key==value`` a
query parameter (repeat it for several values). ``-d`` gives the whole body instead: JSON
text, ``@file`` or ``@-`` (standard input). Placeholders in PATH (``{transaction_id}``) are
filled from ``--path-param name=value``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ApiError
from ..response import Response
from .common import EXIT_OK, UsageError, add_merchant_options, merchant_from

__all__ = ["RequestItems", "add_request_command", "parse_items"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The longest separator wins where two start at the same place ("a==b" is a query item).
_SEPARATORS = ("==", ":=", "=")
_PLACEHOLDER = re.compile(r"\{\+?([^{}/]+)\}")
# Never printed, even though WeChat Pay does not send it back: the CLI shows answers only.
_HIDDEN_HEADERS = frozenset({"authorization"})


@attrs.frozen
class RequestItems:
    """What the items and ``-d`` say to send."""

    body: dict[str, Any] | None
    query: dict[str, str | list[str]]


def _json(text: str, what: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply") from None
    except ValueError as error:
        raise UsageError(f"{what} is not valid JSON: {error}") from None


def _split(item: str) -> tuple[str, str, str]:
    found: tuple[int, str] | None = None
    for separator in _SEPARATORS:
        at = item.find(separator)
        if at >= 0 and (found is None or at < found[0]):
            found = (at, separator)
    if found is None:
        raise UsageError(f"{item!r}: expected key=value, key:=json or key==value")
    at, separator = found
    key = item[:at]
    if not key:
        raise UsageError(f"{item!r}: the key is empty")
    return key, separator, item[at + len(separator) :]


def _read_data(data: str) -> str:
    if not data.startswith("@"):
        return data
    source = data[1:]
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"-d {data}: the file is not UTF-8 text") from None
    except OSError as error:
        raise UsageError(f"-d {data}: cannot read it ({error.strerror or error})") from None


def parse_items(items: Sequence[str], data: str | None = None) -> RequestItems:
    """The body and query that ``items`` (and ``-d data``) describe; ``UsageError`` when they
    cannot be understood."""
    fields: dict[str, Any] = {}
    query: dict[str, str | list[str]] = {}
    for item in items:
        key, separator, value = _split(item)
        if separator == "==":
            previous = query.get(key)
            if previous is None:
                query[key] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                query[key] = [previous, value]
            continue
        if key in fields:
            raise UsageError(f"the body field {key!r} is given twice")
        fields[key] = value if separator == "=" else _json(value, f"{key}:=")
    body: dict[str, Any] | None = fields or None
    if data is not None:
        if fields:
            raise UsageError("give the body either as -d or as key=value / key:=json items")
        document = _json(_read_data(data), "-d")
        if not isinstance(document, dict):
            raise UsageError(f"-d: a request body is a JSON object, not {type(document).__name__}")
        body = document
    return RequestItems(body=body, query=query)


def _path_values(path: str, given: Sequence[str]) -> dict[str, str]:
    """``--path-param`` values, checked against the placeholders ``path`` holds."""
    values: dict[str, str] = {}
    for text in given:
        name, equals, value = text.partition("=")
        if not equals or not name:
            raise UsageError(f"--path-param {text!r}: expected NAME=VALUE")
        if name in values:
            raise UsageError(f"--path-param {name} is given twice")
        values[name] = value
    wanted = _PLACEHOLDER.findall(path)
    missing = [name for name in wanted if name not in values]
    if missing:
        raise UsageError(
            f"PATH has the placeholder {{{missing[0]}}}: give --path-param {missing[0]}=VALUE"
        )
    unknown = sorted(set(values) - set(wanted))
    if unknown:
        raise UsageError(f"--path-param {unknown[0]}: PATH has no placeholder {{{unknown[0]}}}")
    return values


def add_request_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    request = commands.add_parser(
        "request",
        help="call any APIv3 endpoint, signed, and print the verified answer",
        description="Sends METHOD PATH with a JSON body and query built from the items, signed "
        "for the merchant, and prints the verified answer as JSON. Items: key=value (a string "
        "field), key:=json (a raw JSON field), key==value (a query parameter).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  request GET 'v3/pay/transactions/out-trade-no/{out_trade_no}' \\\n"
        "      --path-param out_trade_no=T1001 mchid==1900000109",
    )
    request.add_argument(
        "method", metavar="METHOD", type=str.upper, choices=_METHODS, help=", ".join(_METHODS)
    )
    request.add_argument(
        "path", metavar="PATH", help="as the docs write it: v3/pay/transactions/native"
    )
    request.add_argument(
        "items", metavar="ITEM", nargs="*", help="key=value, key:=json, key==value"
    )
    request.add_argument(
        "-d", "--data", metavar="JSON", help="the whole JSON body: text, @FILE or @- (stdin)"
    )
    request.add_argument(
        "--path-param",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="fills {NAME} in PATH; repeat for each placeholder",
    )
    request.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the status, Request-ID and the answer's headers to standard error",
    )
    add_merchant_options(request)
    request.set_defaults(run=send_request)


def _show_answer(status: int, headers: Mapping[str, str]) -> None:
    lines = [f"HTTP {status}", f"Request-ID: {headers.get('Request-ID', '(none)')}"]
    lines += [
        f"{name}: {value}"
        for name, value in headers.items()
        if name.lower() not in _HIDDEN_HEADERS and name.lower() != "request-id"
    ]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def _print_body(response: Response) -> None:
    if not response.body:
        return
    content_type = response.headers.get("Content-Type", "application/json")
    if "json" not in content_type.lower():
        # A file, say: its bytes as they came.
        sys.stdout.flush()
        sys.stdout.buffer.write(response.body)
        sys.stdout.buffer.flush()
        return
    document = response.json()  # malformed: InvalidResponseError, exit 1 with one line
    print(json.dumps(document, ensure_ascii=False, indent=2), flush=True)


async def send_request(arguments: argparse.Namespace) -> int:
    path: str = arguments.path
    if not path.strip("/"):
        raise UsageError("PATH is empty: write it as the docs do, v3/pay/transactions/native")
    if path.lstrip("/").startswith("v2/"):
        raise UsageError("request speaks APIv3 (JSON); a v2/ path is an APIv2 (XML) endpoint")
    items = parse_items(arguments.items, arguments.data)
    if arguments.method == "GET" and items.body is not None:
        raise UsageError("a GET request has no body: write query parameters as key==value")
    path_values = _path_values(path, arguments.path_param)
    async with merchant_from(arguments).client() as wxpay:
        try:
            response = await wxpay.chain(path).request(
                arguments.method,
                json=items.body,
                params=items.query or None,
                path_params=path_values,
            )
        except ApiError as error:
            if arguments.verbose:
                _show_answer(error.status, error.headers)
                if error.body:
                    sys.stderr.write(error.body.decode("utf-8", "replace") + "\n")
            raise
    if arguments.verbose:
        _show_answer(response.status, response.headers)
    _print_body(response)
    return EXIT_OK
