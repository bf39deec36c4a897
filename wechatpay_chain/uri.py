"""Path segments, URI templates and the request target.

The request target (path, ``?``, query) is built here once, percent-encoded, and that exact
string is both signed and sent (PROTOCOL.md section 1.2).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

__all__ = [
    "QueryValue",
    "attribute_segment",
    "encode_query",
    "expand",
    "placeholders",
    "request_target",
    "split_path",
]

QueryValue = str | int | float | bool | None | Sequence[str | int | float | bool]

# RFC 3986 pchar minus the characters a WeChat Pay path never needs raw: a literal segment
# keeps letters, digits, "-._~" and these sub-delimiters, and everything else is encoded.
SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_PLACEHOLDER = re.compile(r"\{(\+?)([^{}/]+)\}")
_CAPITAL = re.compile(r"[A-Z]")
# A raw ``{+name}`` value is sent as it is, so it must already be a percent-encoded path:
# RFC 3986 pchar and "/", with "%" only in a %XX escape. Anything else is refused, never
# removed or encoded (the value signed and sent is the value given): control characters
# (C0, DEL, C1), which an HTTP stack strips or refuses; space, "?" and "#", which end the
# path; non-ASCII, which is not allowed on a request line.
_RAW_REFUSED = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")


# Attribute names come from source code, a small set: memoised, and bounded all the same.
@functools.lru_cache(maxsize=1024)
def attribute_segment(name: str) -> str:
    """The path segment an attribute name stands for (DESIGN.md, the chain table).

    ``outTradeNo`` -> ``out-trade-no``; ``_out_trade_no_`` -> ``{out_trade_no}``;
    ``global_`` -> ``global``; ``video_upload`` and ``applyment4sub`` stay as they are.
    Dunder names are refused by the caller before they get here.
    """
    if len(name) > 2 and name.startswith("_") and name.endswith("_"):
        return "{" + name[1:-1] + "}"
    if name.endswith("_") and len(name) > 1:
        name = name[:-1]
    # ASCII capitals only: a non-ASCII letter is never folded.
    return _CAPITAL.sub(lambda capital: "-" + capital.group(0).lower(), name).lstrip("-")


def split_path(path: str) -> tuple[str, ...]:
    """Split a written path on ``/``, verbatim: no case folding, trailing slash kept.

    One leading ``/`` is dropped, so ``"/v3/pay"`` and ``"v3/pay"`` are the same path.
    """
    if not isinstance(path, str):
        raise TypeError(f"a path is a str, not {type(path).__name__}")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ValueError("an empty path names no endpoint")
    return tuple(path.split("/"))


def placeholders(segments: Iterable[str]) -> list[str]:
    """Names of the ``{placeholders}`` in ``segments``, in order, without repeats."""
    names: list[str] = []
    for segment in segments:
        for match in _PLACEHOLDER.finditer(segment):
            if match.group(2) not in names:
                names.append(match.group(2))
    return names


def _component(text: str) -> str:
    """``text`` percent-encoded as one path segment or query component."""
    # Letters and digits are never encoded: most ids and values skip quote()'s cost.
    return text if text.isascii() and text.isalnum() else quote(text, safe="")


def _placeholder_value(name: str, value: object, raw: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"placeholder {name!r} takes a str or int, not {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError(f"placeholder {name!r} is empty: it would leave an empty path segment")
    if raw:
        refused = _RAW_REFUSED.search(text)
        if refused:
            what = (
                "a '%' that starts no %XX escape"
                if refused.group() == "%"
                else f"{refused.group()!r} (U+{ord(refused.group()):04X})"
            )
            raise ValueError(
                f"placeholder {{+{name}}} holds {what}: a {{+name}} value is sent as it is, so "
                f"it must be percent-encoded already (or write {{{name}}} to have it encoded)"
            )
    return text


def _is_dot_segment(part: str) -> bool:
    # "%2E" is "." to a server that normalises the path (RFC 3986 6.2.2.2).
    return part in (".", "..") or part.replace("%2E", ".").replace("%2e", ".") in (".", "..")


def _check_segment(text: str, raw_names: Sequence[str]) -> None:
    """Refuse a filled segment that a server or proxy would normalise away, reaching another
    endpoint: ``.`` or ``..`` as the segment, or as a piece of it a raw value split off."""
    if raw_names and any(_is_dot_segment(part) for part in text.split("/")):
        named = ", ".join("{+" + name + "}" for name in raw_names)
        raise ValueError(
            f"placeholder {named} makes a dot segment ('.' or '..'), which would change which "
            "endpoint is called"
        )
    if text in (".", ".."):
        raise ValueError(f"{text!r} as a path segment would change which endpoint is called")


def expand(segments: Sequence[str], values: Mapping[str, object]) -> str:
    """Fill the placeholders of ``segments`` and return the percent-encoded path.

    Every placeholder must be filled and every value must fill one, else ``TypeError``.
    ``{name}`` values are encoded as one segment (``/`` becomes ``%2F``); ``{+name}`` values
    are inserted as they are (already encoded ids), and ``ValueError`` refuses one holding a
    control character, a space, ``?`` or ``#``, or making a ``.`` or ``..`` segment.
    """
    wanted = placeholders(segments)
    unknown = [name for name in values if name not in wanted]
    if unknown:
        known = ", ".join(wanted) or "none"
        raise TypeError(
            f"no placeholder named {', '.join(map(repr, unknown))} in this path (placeholders: {known})"
        )
    missing = [name for name in wanted if name not in values]
    if missing:
        raise TypeError(
            f"unfilled placeholder {', '.join(map(repr, missing))}: pass it as a keyword"
        )
    encoded: list[str] = []
    for segment in segments:
        position = 0
        parts: list[str] = []
        raw_names: list[str] = []
        for match in _PLACEHOLDER.finditer(segment):
            raw, name = bool(match.group(1)), match.group(2)
            parts.append(quote(segment[position : match.start()], safe=SEGMENT_SAFE))
            value = _placeholder_value(name, values[name], raw)
            parts.append(value if raw else _component(value))
            if raw:
                raw_names.append(name)
            position = match.end()
        parts.append(quote(segment[position:], safe=SEGMENT_SAFE))
        text = "".join(parts)
        _check_segment(text, raw_names)
        encoded.append(text)
    return "/" + "/".join(encoded)


def _query_text(key: str, value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    else:
        raise TypeError(
            f"query parameter {key!r} takes str, int, float or bool, not {type(value).__name__}"
        )
    return _component(key) + "=" + _component(text)


def encode_query(params: Mapping[str, QueryValue] | None) -> str:
    """Encode ``params`` in the caller's order; ``None`` values are left out, lists repeat the key.

    ``params`` must be a mapping (``TypeError`` otherwise, even when empty: a list of pairs or
    a ready-made query string is a mistake to say, not to guess at) with ``str`` keys.
    """
    if params is None:
        return ""
    if type(params) is not dict and not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping of query parameters, not {type(params).__name__}"
        )
    pairs: list[str] = []
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"params: a query parameter's name is a str, not {type(key).__name__}")
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            pairs.extend(_query_text(key, item) for item in value)
        else:
            pairs.append(_query_text(key, value))  # type: ignore[arg-type]
    return "&".join(pairs)


# A compiled path: the literal text between placeholders, encoded once, as ``str`` items,
# and each segment that holds a placeholder as a tuple of its literal text and its
# ``(name, raw)`` placeholders.
_SegmentPiece = str | tuple[str, bool]
_Compiled = tuple[frozenset[str], tuple[str | tuple[_SegmentPiece, ...], ...]]


# Keyed by the path alone, never by the values: paths come from source code, a small set,
# and the cache is bounded all the same.
@functools.lru_cache(maxsize=1024)
def _compile(segments: tuple[str, ...]) -> _Compiled | None:
    """``segments`` compiled for :func:`request_target`; ``None`` for a path that
    :func:`expand` refuses whatever the values (a literal dot segment)."""
    items: list[str | tuple[_SegmentPiece, ...]] = []
    names: set[str] = set()
    literal = ""
    for segment in segments:
        matches = list(_PLACEHOLDER.finditer(segment))
        if not matches:
            text = quote(segment, safe=SEGMENT_SAFE)
            if text in (".", ".."):
                return None
            literal += "/" + text
            continue
        items.append(literal + "/")
        literal = ""
        pieces: list[_SegmentPiece] = []
        position = 0
        for match in matches:
            pieces.append(quote(segment[position : match.start()], safe=SEGMENT_SAFE))
            pieces.append((match.group(2), bool(match.group(1))))
            names.add(match.group(2))
            position = match.end()
        pieces.append(quote(segment[position:], safe=SEGMENT_SAFE))
        items.append(tuple(piece for piece in pieces if piece != ""))
    items.append(literal)
    return frozenset(names), tuple(item for item in items if item != "")


def _fill(items: tuple[str | tuple[_SegmentPiece, ...], ...], values: Mapping[str, object]) -> str:
    parts: list[str] = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
            continue
        pieces: list[str] = []
        raw_names: list[str] = []
        for piece in item:
            if isinstance(piece, str):
                pieces.append(piece)
            else:
                name, raw = piece
                value = _placeholder_value(name, values[name], raw)
                pieces.append(value if raw else _component(value))
                if raw:
                    raw_names.append(name)
        text = "".join(pieces)
        _check_segment(text, raw_names)
        parts.append(text)
    return "".join(parts)


def request_target(
    segments: Sequence[str], values: Mapping[str, object], params: Mapping[str, QueryValue] | None
) -> str:
    """Path and query, exactly as signed and sent: :func:`expand`'s result and errors, from a
    path compiled once (its literal text encoded once, only the values encoded per call)."""
    compiled = _compile(tuple(segments)) if segments else None
    if compiled is not None and values.keys() == compiled[0]:
        return _with_query(_fill(compiled[1], values), params)
    # Not every placeholder filled, or a refused path: expand says what is wrong.
    return _with_query(expand(segments, values), params)


def _with_query(path: str, params: Mapping[str, QueryValue] | None) -> str:
    query = "" if params is None else encode_query(params)
    return f"{path}?{query}" if query else path
