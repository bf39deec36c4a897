"""Property-based tests (hypothesis): the path rules of DESIGN.md, the URI encoding, and how
the response and notification verifiers stand up to arbitrary and tampered input.

Bounded and reproducible: every test sets its own ``max_examples``, runs with
``derandomize=True`` and no example database, so CI sees the same examples on every run.
Nothing of the library is mocked. Keys are loaded or made once, at import; the fake server
object below is never started: it only builds notifications.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from wechatpay_chain import Node, WeChatPay
from wechatpay_chain.chain import is_dunder
from wechatpay_chain.crypto import aes_gcm_encrypt, apiv3_key_bytes
from wechatpay_chain.errors import (
    DecryptionError,
    InvalidNotificationError,
    VerificationError,
    WeChatPayError,
)
from wechatpay_chain.notifications import Notification, verify_and_decrypt
from wechatpay_chain.testing import FakeWeChatPay, generate_private_key
from wechatpay_chain.testing.signer import WeChatPaySigner
from wechatpay_chain.uri import (
    attribute_segment,
    encode_query,
    expand,
    placeholders,
    request_target,
    split_path,
)
from wechatpay_chain.verifying import Verifier

DATA = Path(__file__).parent / "data"


def bounded(examples: int) -> settings:
    """A small, fixed budget: the module runs in a few seconds, the same examples each time."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None)


# -- shared material ---------------------------------------------------------------------------

NOW = 1_700_000_000


def clock() -> float:
    return float(NOW)


PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
WECHATPAY_KEY = generate_private_key()
SIGNER = WeChatPaySigner(WECHATPAY_KEY, PUBLIC_KEY_ID, clock)
VERIFIER = Verifier({PUBLIC_KEY_ID: WECHATPAY_KEY.public_key()}, clock=clock)
APIV3_KEY = "0123456789abcdefghijklmnopqrstuv"
APIV3_KEY_BYTES = apiv3_key_bytes(APIV3_KEY)
# Never started: used for build_notification only, with the keys above.
SERVER = FakeWeChatPay(
    serial="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
    merchant_private_key=DATA / "merchant_key_pkcs8.pem",
    public_key_id=PUBLIC_KEY_ID,
    wechatpay_private_key=WECHATPAY_KEY,
    apiv3_key=APIV3_KEY,
    clock=clock,
)
# Never sends anything: only its chain is used.
CLIENT = WeChatPay(
    mchid="1900000109",
    serial="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
    private_key=DATA / "merchant_key_pkcs8.pem",
    base_url="http://127.0.0.1:9",
    clock=clock,
)


def node_repr(path: str) -> str:
    return f"<wechatpay_chain.Node {path!r}>"


# Text without lone surrogates: what a caller can percent-encode (UTF-8).
UNICODE = st.characters(exclude_categories=["Cs"])
# Lone surrogates: \udc80-\udcff is what aiohttp hands over for undecodable header bytes
# (surrogateescape); the rest of the range is what a JSON "\\ud800" escape produces.
ESCAPED_BYTE = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF, categories=["Cs"])
ANY_SURROGATE = st.characters(categories=["Cs"])
# (A list joined, not st.text(alphabet=st.one_of(...)): that form never yields surrogates.)
WILD_CHARACTER = st.one_of(UNICODE, ESCAPED_BYTE, ANY_SURROGATE)
WILD_TEXT = st.one_of(
    st.text(alphabet=UNICODE, max_size=40), st.lists(WILD_CHARACTER, max_size=40).map("".join)
)
WILD_NONEMPTY_TEXT = st.lists(WILD_CHARACTER, min_size=1, max_size=40).map("".join)
# Everything str.strip() removes.
WHITESPACE = "".join(character for character in map(chr, range(0x3001)) if character.isspace())


# -- 1. attribute names -> segments -------------------------------------------------------------

IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,24}", fullmatch=True).filter(
    lambda name: not is_dunder(name)
)
CAPITAL = re.compile(r"[A-Z]")
LOWER_WORD = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)


@bounded(200)
@given(name=IDENTIFIER)
def test_attribute_segment_folds_ascii_capitals_and_keeps_plain_names(name: str) -> None:
    segment = attribute_segment(name)
    if not (segment.startswith("{") and segment.endswith("}")):
        assert not CAPITAL.search(segment)
    if not CAPITAL.search(name) and not name.endswith("_"):
        assert segment == name


@bounded(200)
@given(inner=st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_]{0,20}[A-Za-z0-9])?", fullmatch=True))
def test_single_underscores_make_a_placeholder_named_as_written(inner: str) -> None:
    assert attribute_segment(f"_{inner}_") == "{" + inner + "}"
    node = getattr(CLIENT.v3.things, f"_{inner}_")  # type: ignore[attr-defined]
    assert repr(node) == node_repr("v3/things/{" + inner + "}")


@bounded(200)
@given(name=IDENTIFIER.filter(lambda name: not name.startswith("_") and not name.endswith("_")))
def test_one_trailing_underscore_is_dropped(name: str) -> None:
    assert attribute_segment(name + "_") == attribute_segment(name)


@bounded(200)
@given(words=st.lists(LOWER_WORD, min_size=1, max_size=6))
def test_camel_and_pascal_case_become_kebab_case(words: list[str]) -> None:
    camel = words[0] + "".join(word.capitalize() for word in words[1:])
    pascal = "".join(word.capitalize() for word in words)
    assert attribute_segment(camel) == "-".join(words)
    assert attribute_segment(pascal) == "-".join(words)


@bounded(200)
@given(name=IDENTIFIER.filter(lambda name: name not in dir(Node)))
def test_chain_attribute_is_attribute_segment(name: str) -> None:
    node = getattr(CLIENT.v3, name)
    assert isinstance(node, Node)
    assert repr(node) == node_repr("v3/" + attribute_segment(name))


# -- 2. every documented path --------------------------------------------------------------------


def operation_paths() -> list[str]:
    """The PATH column of tests/data/operations.tsv, each path once, in file order."""
    paths: list[str] = []
    for line in (DATA / "operations.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        method, path = line.split("\t")
        if method != "METHOD":  # the header
            paths.append(path)
    return list(dict.fromkeys(paths))


PATHS = operation_paths()
TEMPLATED_PATHS = [path for path in PATHS if "{" in path]
TEMPLATE_NAME = re.compile(r"\{([^{}]*)\}")
# RFC 3986 unreserved, sub-delims, ":", "@", and "%" (escapes) and "/" (separators).
TARGET_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/")
PERCENT_ESCAPES = re.compile(r"(?:[^%]|%[0-9A-F]{2})*")
PLACEHOLDER_VALUE = st.one_of(st.text(alphabet=UNICODE, min_size=1), st.integers())


def check_expansion(path: str, values: Mapping[str, object]) -> None:
    segments = split_path(path)
    target = expand(segments, values)
    assert set(target) <= TARGET_CHARACTERS, target
    assert PERCENT_ESCAPES.fullmatch(target), target
    assert target.startswith("/")
    decoded = [unquote(segment, errors="strict") for segment in target[1:].split("/")]
    expected = [
        TEMPLATE_NAME.sub(lambda match: str(values[match.group(1)]), segment)
        for segment in segments
    ]
    assert decoded == expected


def test_operations_table_is_read() -> None:
    assert len(PATHS) > 900
    assert len(TEMPLATED_PATHS) > 300
    assert "/v3/applyment4sub/applyment/" in PATHS


def test_every_documented_path_splits_verbatim_and_names_its_placeholders() -> None:
    for path in PATHS:
        segments = split_path(path)
        assert "/".join(segments) == path[1:], path
        assert placeholders(segments) == list(dict.fromkeys(TEMPLATE_NAME.findall(path))), path
        tricky = dict.fromkeys(placeholders(segments), "a/b c%é🙂?#")
        check_expansion(path, tricky)


def test_every_documented_v3_path_is_written_verbatim_through_the_chain() -> None:
    v3_paths = [path for path in PATHS if path.startswith("/v3/")]
    assert len(v3_paths) > 900
    for path in v3_paths:
        expected = node_repr(path[1:])
        assert repr(CLIENT[path]) == expected
        assert repr(CLIENT[path[1:]]) == expected
        assert repr(CLIENT.chain(path)) == expected
        assert repr(CLIENT.v3[path[len("/v3/") :]]) == expected


@st.composite
def filled_templates(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    path = draw(st.sampled_from(TEMPLATED_PATHS))
    names = dict.fromkeys(TEMPLATE_NAME.findall(path))
    return path, {name: draw(PLACEHOLDER_VALUE) for name in names}


@bounded(200)
@given(template=filled_templates())
def test_documented_templates_expand_to_the_values_given(
    template: tuple[str, dict[str, object]],
) -> None:
    check_expansion(*template)


# -- 3. placeholder and literal values ------------------------------------------------------------


@bounded(200)
@given(value=st.text(alphabet=UNICODE, min_size=1))
@example("a\r\nb\x00c\x7f\x85\u2028 d?#e")  # control characters: encoded, never stripped
@example("..")
def test_placeholder_value_is_one_percent_encoded_segment(value: str) -> None:
    if value in (".", ".."):
        with pytest.raises(ValueError, match="path segment"):
            expand(("v3", "x", "{v}"), {"v": value})
        return
    target = expand(("v3", "x", "{v}"), {"v": value})
    assert target.isascii()
    assert target.startswith("/v3/x/")
    segment = target[len("/v3/x/") :]
    assert segment
    assert "/" not in segment
    assert set(segment) <= TARGET_CHARACTERS
    assert unquote(segment, errors="strict") == value


# What a raw value may hold, written independently of uri.py: RFC 3986 pchar and "/", with
# "%" only in a %XX escape (so no control character, space, "?", "#" or non-ASCII).
RAW_ALLOWED = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
RAW_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(["a", "Z", "9", "%", "2", "E", "e", ".", "/", "-", "~", "@", "!"]),
        st.sampled_from([chr(code) for code in [*range(0x21), *range(0x7F, 0xA0)]] + ["?", "#"]),
        UNICODE,
    ),
    min_size=1,
    max_size=12,
)


def makes_dot_segment(text: str) -> bool:
    return any(part.lower().replace("%2e", ".") in (".", "..") for part in text.split("/"))


@bounded(300)
@given(value=RAW_TEXT, prefix=st.sampled_from(["", "p"]), suffix=st.sampled_from(["", ".", "s"]))
@example(value="a\r\nb", prefix="", suffix="")
@example(value="a b", prefix="", suffix="")
@example(value="../pay", prefix="", suffix="")
@example(value="%2e%2E", prefix="", suffix="")
@example(value=".", prefix="", suffix=".")
@example(value="a/", prefix="", suffix=".")
@example(value="already%2Fencoded", prefix="", suffix="")
@example(value="%E5%95%86", prefix="", suffix="")
@example(value="商", prefix="", suffix="")
@example(value="a%2", prefix="", suffix="")
@example(value="\x7f\x9f", prefix="", suffix="")
def test_a_raw_placeholder_is_sent_as_it_is_or_refused_by_name(
    value: str, prefix: str, suffix: str
) -> None:
    segments = ("v3", "x", prefix + "{+v}" + suffix)
    segment = prefix + value + suffix
    if not RAW_ALLOWED.fullmatch(value) or makes_dot_segment(segment):
        builds: tuple[Callable[[], str], ...] = (
            lambda: expand(segments, {"v": value}),
            lambda: request_target(segments, {"v": value}, None),
        )
        for build in builds:
            with pytest.raises(ValueError, match=r"placeholder \{\+v\}"):
                build()
    else:  # exactly what was given: nothing stripped, nothing encoded
        assert expand(segments, {"v": value}) == "/v3/x/" + segment
        assert request_target(segments, {"v": value}, None) == "/v3/x/" + segment


@bounded(200)
@given(
    value=st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/{"), min_size=1
    )
)
def test_literal_segment_from_the_chain_is_percent_encoded(value: str) -> None:
    node = CLIENT.v3.x[value]  # type: ignore[attr-defined]
    assert repr(node) == node_repr("v3/x/" + value)
    target = expand(split_path("v3/x/" + value), {})
    assert target.isascii()
    assert target.startswith("/v3/x/")
    assert unquote(target[len("/v3/x/") :], errors="strict") == value


SEGMENTS = st.one_of(
    st.text(max_size=6),
    st.sampled_from([".", "..", "{a}", "{+b}", "x{a}y", "{a}{b}", "{a}.{b}", "{+a}", "v3", "中"]),
)
VALUES = st.one_of(
    st.text(max_size=5),
    st.integers(),
    st.sampled_from([".", "..", "", True, None, 1.5, "a/b", "%2F"]),
)


@bounded(400)
@given(segments=st.lists(SEGMENTS, min_size=1, max_size=5), data=st.data())
def test_the_compiled_target_is_what_expand_gives_or_raises(
    segments: list[str], data: st.DataObject
) -> None:
    # request_target compiles each path once; it must agree with expand, the reference,
    # on the result and on the error (type and words) for any path and values: mostly a
    # value for each placeholder, sometimes one missing or one too many.
    names = placeholders(segments)
    values: dict[str, object] = {name: data.draw(VALUES) for name in names}
    change = data.draw(st.sampled_from(["none", "none", "none", "drop", "add"]))
    if change == "drop" and values:
        values.pop(data.draw(st.sampled_from(sorted(values))))
    elif change == "add":
        values["c"] = data.draw(VALUES)

    def outcome(build: Callable[[], str]) -> tuple[str, str]:
        try:
            return ("ok", build())
        except (TypeError, ValueError) as error:
            return (type(error).__name__, str(error))

    for _ in range(2):  # the second time from the compiled cache
        assert outcome(lambda: request_target(segments, values, None)) == outcome(
            lambda: expand(segments, values)
        )


# -- 4. the query string --------------------------------------------------------------------------

QUERY_TEXT = st.text(alphabet=UNICODE, max_size=12)
QUERY_SCALAR = st.one_of(QUERY_TEXT, st.integers(), st.booleans(), st.floats())
QUERY_VALUE = st.one_of(st.none(), QUERY_SCALAR, st.lists(QUERY_SCALAR, max_size=3))


def query_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@bounded(200)
@given(params=st.dictionaries(QUERY_TEXT, QUERY_VALUE, max_size=6))
def test_query_round_trips_in_order(
    params: dict[str, str | int | float | bool | list[str | int | float | bool] | None],
) -> None:
    expected: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        expected.extend((key, query_text(item)) for item in items)
    query = encode_query(params)
    assert set(query) <= TARGET_CHARACTERS - {"/"}
    assert parse_qsl(query, keep_blank_values=True, errors="strict") == expected
    target = request_target(("v3", "x"), {}, params)
    assert target == (f"/v3/x?{query}" if query else "/v3/x")


NOT_A_MAPPING = st.one_of(
    st.lists(st.tuples(QUERY_TEXT, QUERY_TEXT), max_size=3),
    st.lists(st.tuples(QUERY_TEXT, QUERY_TEXT), max_size=3).map(tuple),
    QUERY_TEXT,
    st.binary(max_size=8),
    st.sets(QUERY_TEXT, max_size=3),
    st.integers(),
)


@bounded(100)
@given(params=NOT_A_MAPPING)
@example(params=[("mchid", "1900000109")])
@example(params="mchid=1900000109")
@example(params=[])
@example(params="")
def test_params_that_are_not_a_mapping_are_a_type_error_naming_params(params: object) -> None:
    builds: tuple[Callable[[], str], ...] = (
        lambda: encode_query(params),  # type: ignore[arg-type]
        lambda: request_target(("v3", "x"), {}, params),  # type: ignore[arg-type]
    )
    for build in builds:
        with pytest.raises(TypeError, match="params"):
            build()


# -- 5. response verification -----------------------------------------------------------------------

HEADER_NAMES = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
    "Request-ID",
)


def padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    padding = st.text(alphabet=WHITESPACE, max_size=2)
    return st.tuples(padding, values, padding).map("".join)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "Wechatpay-Timestamp": st.one_of(
        st.integers(NOW - 400, NOW + 400).map(str),
        st.integers(0, 10**20).map(str),
        # int() takes the Arabic-Indic digits, not the superscripts (both are isdigit())
        st.text(alphabet="0123456789٠١٢٣٤٥٦٧٨٩²³¹", min_size=1, max_size=14),
    ),
    "Wechatpay-Nonce": st.text(alphabet=string.hexdigits, min_size=1, max_size=32),
    "Wechatpay-Signature": st.one_of(
        st.binary(min_size=256, max_size=256).map(b64),
        st.binary(min_size=1, max_size=300).map(b64),
        st.text(max_size=20).map("WECHATPAY/SIGNTEST/".__add__),
    ),
    "Wechatpay-Serial": st.sampled_from(
        [PUBLIC_KEY_ID, PUBLIC_KEY_ID.lower(), "PUB_KEY_ID_0000", "00408B07E7", "0", ""]
    ),
    "Wechatpay-Signature-Type": st.sampled_from([SIGNATURE_TYPE, SIGNATURE_TYPE.lower(), "RSA"]),
    "Request-ID": st.text(max_size=20),
}
HEADER_VALUES = {
    name: st.one_of(padded(plausible), WILD_TEXT) for name, plausible in PLAUSIBLE.items()
}


def name_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name.swapcase()])


ARBITRARY_HEADERS = st.one_of(
    # a random signature under headers that (mostly) pass the other checks...
    st.fixed_dictionaries(
        {
            "Wechatpay-Timestamp": st.one_of(
                padded(st.integers(NOW - 300, NOW + 300).map(str)),
                PLAUSIBLE["Wechatpay-Timestamp"],
            ),
            "Wechatpay-Nonce": st.one_of(PLAUSIBLE["Wechatpay-Nonce"], WILD_NONEMPTY_TEXT),
            "Wechatpay-Signature": padded(PLAUSIBLE["Wechatpay-Signature"]),
            "Wechatpay-Serial": padded(st.sampled_from([PUBLIC_KEY_ID, PUBLIC_KEY_ID.lower()])),
        },
        optional={
            "Wechatpay-Signature-Type": padded(st.just(SIGNATURE_TYPE)),
            "Request-ID": HEADER_VALUES["Request-ID"],
        },
    ),
    # ...all four signature headers, any values...
    st.fixed_dictionaries(
        {name: HEADER_VALUES[name] for name in HEADER_NAMES[:4]},
        optional={name: HEADER_VALUES[name] for name in HEADER_NAMES[4:]},
    ),
    # ...or any of them, under any spelling of their names
    st.lists(
        st.sampled_from(HEADER_NAMES).flatmap(
            lambda name: st.tuples(name_variants(name), HEADER_VALUES[name])
        ),
        max_size=8,
    ).map(dict),
)


def verification_outcome(headers: dict[str, str], body: bytes) -> WeChatPayError | None:
    """None when ``body`` verifies, else the library's error (anything else propagates)."""
    try:
        VERIFIER.verify(headers, body)
    except WeChatPayError as error:
        return error
    return None


@bounded(250)
@given(headers=ARBITRARY_HEADERS, body=st.binary(max_size=64))
def test_verifier_refuses_arbitrary_input_with_its_own_errors(
    headers: dict[str, str], body: bytes
) -> None:
    error = verification_outcome(headers, body)
    event(type(error).__name__)
    assert error is not None, "a random signature verified"
    assert isinstance(error, VerificationError), repr(error)


class Mutation(NamedTuple):
    """One change to a signed message.

    Body: ``flip`` (xor ``mask`` into byte ``at``), ``insert`` (``data`` at ``at``), ``cut``
    (byte ``at``); an empty body gets a byte instead. Header ``header``: ``set`` (to
    ``value``), ``delete``, ``rename`` (``value`` names the case change), ``pad`` (``value``
    is whitespace, split at ``at``), ``transform`` (``value`` names it).
    """

    kind: str
    header: str = ""
    value: str = ""
    at: int = 0
    mask: int = 1
    data: bytes = b""


CASE_CHANGES: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "swapcase": str.swapcase,
}
TRANSFORMS: dict[str, Callable[[str], str]] = {
    **CASE_CHANGES,
    "drop_first": lambda text: text[1:],
    "drop_last": lambda text: text[:-1],
    "double": lambda text: text + text,
    "zero_first": lambda text: "0" + text,
}
AT = st.integers(0, 10**6)
HEADER = st.sampled_from(HEADER_NAMES)


def mutation(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Mutation]:
    return st.fixed_dictionaries(fields).map(lambda chosen: Mutation(kind, **chosen))


MUTATIONS = st.one_of(
    mutation("flip", at=AT, mask=st.integers(1, 255)),
    mutation("insert", at=AT, data=st.binary(min_size=1, max_size=8)),
    mutation("cut", at=AT),
    HEADER.flatmap(lambda name: mutation("set", header=st.just(name), value=HEADER_VALUES[name])),
    mutation("delete", header=HEADER),
    mutation("rename", header=HEADER, value=st.sampled_from(list(CASE_CHANGES))),
    mutation(
        "pad",
        header=HEADER,
        value=st.one_of(
            st.text(alphabet=" \t", min_size=1, max_size=3),
            st.text(alphabet=WHITESPACE, min_size=1, max_size=3),
        ),
        at=AT,
    ),
    mutation("transform", header=HEADER, value=st.sampled_from(list(TRANSFORMS))),
)


def mutate(headers: dict[str, str], body: bytes, change: Mutation) -> tuple[dict[str, str], bytes]:
    headers = dict(headers)
    position = change.at % (len(body) + 1)
    if change.kind == "flip":
        if body:
            position = change.at % len(body)
            body = body[:position] + bytes([body[position] ^ change.mask]) + body[position + 1 :]
        else:
            body = bytes([change.mask])
    elif change.kind == "insert":
        body = body[:position] + change.data + body[position:]
    elif change.kind == "cut":
        if body:
            position = change.at % len(body)
            body = body[:position] + body[position + 1 :]
        else:
            body = b"\n"
    elif change.kind == "set":
        headers[change.header] = change.value
    elif change.kind == "delete":
        del headers[change.header]
    elif change.kind == "rename":
        headers[CASE_CHANGES[change.value](change.header)] = headers.pop(change.header)
    elif change.kind == "pad":
        split = change.at % (len(change.value) + 1)
        headers[change.header] = (
            change.value[:split] + headers[change.header] + change.value[split:]
        )
    else:
        headers[change.header] = TRANSFORMS[change.value](headers[change.header])
    return headers, body


def harmless(change: Mutation) -> bool:
    """Changes that leave the signed content alone and must not stop it verifying."""
    return (
        change.kind == "rename"
        or (change.kind == "pad" and set(change.value) <= {" ", "\t"})
        or (change.kind in ("set", "delete", "transform") and change.header == "Request-ID")
        or (change.kind == "delete" and change.header == "Wechatpay-Signature-Type")
    )


def signed_content(headers: dict[str, str], body: bytes) -> tuple[bytes, str, str] | None:
    """What a verification proves: the message ``timestamp\\nnonce\\nbody\\n`` (as the header
    values read after ``strip()``), the key named, and the scheme; None if unreadable."""
    found = CIMultiDict(headers)
    try:
        message = (
            f"{found['Wechatpay-Timestamp'].strip()}\n{found['Wechatpay-Nonce'].strip()}\n".encode(
                "utf-8", "surrogateescape"
            )
            + body
            + b"\n"
        )
        serial = found["Wechatpay-Serial"].strip().upper()
    except (KeyError, UnicodeEncodeError):
        return None
    return message, serial, found.get("Wechatpay-Signature-Type", SIGNATURE_TYPE).strip()


@bounded(300)
@example(body=b"{}", change=Mutation("pad", "Wechatpay-Nonce", "\u3000"))
@example(body=b"", change=Mutation("transform", "Wechatpay-Serial", "lower"))
@given(body=st.binary(max_size=128), change=MUTATIONS)
def test_tampered_response_verifies_only_if_the_signed_content_is_unchanged(
    body: bytes, change: Mutation
) -> None:
    headers = SIGNER.headers(body)
    assert verification_outcome(headers, body) is None
    tampered_headers, tampered_body = mutate(headers, body, change)
    error = verification_outcome(tampered_headers, tampered_body)
    event(f"{change.kind}: {type(error).__name__}")
    if error is None:
        assert signed_content(tampered_headers, tampered_body) == signed_content(headers, body)
    else:
        assert isinstance(error, VerificationError), repr(error)
        assert not harmless(change), f"{change} left the content alone, yet: {error!r}"


# -- 6. notifications ------------------------------------------------------------------------------

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=UNICODE, max_size=16),
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(alphabet=UNICODE, max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
# As a JSON parser may hand it over: lone surrogates from "\ud800" escapes included.
WILD_JSON_VALUE = st.recursive(
    st.one_of(JSON_SCALAR, WILD_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(WILD_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
EVENT = "TRANSACTION.SUCCESS"
RESOURCE = {"mchid": "1900000109", "out_trade_no": "T-1", "trade_state": "SUCCESS"}
VALID_HEADERS, VALID_BODY = SERVER.build_notification(event_type=EVENT, resource=RESOURCE)
VALID_ENVELOPE: dict[str, Any] = json.loads(VALID_BODY)


def notification_outcome(headers: dict[str, str], body: bytes) -> Notification | WeChatPayError:
    """The notification, or the library's error (anything else propagates)."""
    try:
        return verify_and_decrypt(headers, body, verifier=VERIFIER, apiv3_key=APIV3_KEY_BYTES)
    except WeChatPayError as error:
        return error


def test_the_valid_notification_is_accepted() -> None:
    outcome = notification_outcome(VALID_HEADERS, VALID_BODY)
    assert isinstance(outcome, Notification)
    assert outcome.resource == RESOURCE


@bounded(200)
@given(
    headers=ARBITRARY_HEADERS,
    body=st.one_of(
        st.binary(max_size=64),
        st.just(VALID_BODY),
        WILD_JSON_VALUE.map(lambda value: json.dumps(value).encode()),
    ),
)
def test_arbitrary_notification_is_refused_with_the_library_errors(
    headers: dict[str, str], body: bytes
) -> None:
    outcome = notification_outcome(headers, body)
    event(type(outcome).__name__)
    assert isinstance(outcome, VerificationError), repr(outcome)


@bounded(200)
@given(resource=JSON_VALUE, change=MUTATIONS)
def test_tampered_notification_is_refused_unless_the_signed_content_is_unchanged(
    resource: Any, change: Mutation
) -> None:
    headers, body = SERVER.build_notification(event_type=EVENT, resource=resource)
    original = notification_outcome(headers, body)
    assert isinstance(original, Notification)
    assert original.resource == resource
    tampered_headers, tampered_body = mutate(headers, body, change)
    outcome = notification_outcome(tampered_headers, tampered_body)
    event(f"{change.kind}: {type(outcome).__name__}")
    if isinstance(outcome, Notification):
        assert signed_content(tampered_headers, tampered_body) == signed_content(headers, body)
        assert outcome.resource == resource
    else:
        assert isinstance(outcome, VerificationError), repr(outcome)
        assert not harmless(change), f"{change} left the content alone, yet: {outcome!r}"


class Spoil(NamedTuple):
    """A correctly signed notification whose content is not what WeChat Pay sends:
    ``where`` is ``envelope`` or ``resource`` (``key`` set to ``value``, or deleted when
    ``delete``), ``plaintext`` (the resource re-encrypted from ``data``) or ``body``
    (the whole body replaced by ``data``)."""

    where: str
    key: str = ""
    value: Any = None
    delete: bool = False
    data: bytes = b""
    ensure_ascii: bool = True


ENVELOPE_KEYS = [*VALID_ENVELOPE, "unexpected"]
RESOURCE_KEYS = [*VALID_ENVELOPE["resource"], "unexpected"]
TIME_TEXT = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.datetimes().map(lambda moment: moment.isoformat() + "+08:00"),
    st.from_regex(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?([+-]\d\d:?\d\d|Z)?", fullmatch=True),
)


def spoiling(where: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Spoil]:
    return st.fixed_dictionaries(fields).map(lambda chosen: Spoil(where, **chosen))


SPOILS = st.one_of(
    spoiling(
        "envelope",
        key=st.sampled_from(ENVELOPE_KEYS),
        value=WILD_JSON_VALUE,
        delete=st.booleans(),
        ensure_ascii=st.booleans(),
    ),
    spoiling("envelope", key=st.just("create_time"), value=TIME_TEXT),
    spoiling(
        "resource",
        key=st.sampled_from(RESOURCE_KEYS),
        value=st.one_of(
            WILD_JSON_VALUE, st.binary(max_size=40).map(b64), st.sampled_from(["", "A" * 200])
        ),
        delete=st.booleans(),
        ensure_ascii=st.booleans(),
    ),
    spoiling(
        "plaintext",
        data=st.one_of(
            st.binary(max_size=40),
            WILD_JSON_VALUE.map(lambda value: json.dumps(value).encode()),
        ),
    ),
    spoiling(
        "body",
        data=st.one_of(
            st.binary(max_size=40),
            WILD_JSON_VALUE.map(lambda value: json.dumps(value).encode()),
            st.integers(1, 2000).map(lambda depth: b"[" * depth + b"]" * depth),
        ),
    ),
)


def spoil(change: Spoil) -> tuple[dict[str, Any] | None, bytes]:
    """The spoilt envelope (None when the body is replaced) and the body as sent."""
    if change.where == "body":
        return None, change.data
    envelope = json.loads(VALID_BODY)
    if change.where == "plaintext":
        resource = envelope["resource"]
        resource["ciphertext"] = aes_gcm_encrypt(
            APIV3_KEY_BYTES,
            nonce=resource["nonce"],
            plaintext=change.data,
            associated_data=resource["associated_data"],
        )
    else:
        target = envelope if change.where == "envelope" else envelope["resource"]
        if change.delete:
            target.pop(change.key, None)
        else:
            target[change.key] = change.value
    text = json.dumps(envelope, ensure_ascii=change.ensure_ascii, separators=(",", ":"))
    return envelope, text.encode("utf-8", "surrogatepass")


@bounded(300)
@example(change=Spoil("envelope", "create_time", "2015-05-20T13:29:35"))
@example(change=Spoil("resource", "nonce", "\ud800"))
@example(change=Spoil("plaintext", data=b'{"a":1}'))
@example(change=Spoil("body", data=b"[" * 5000 + b"]" * 5000))
@given(change=SPOILS)
def test_signed_but_malformed_notification_raises_only_the_library_errors(
    change: Spoil,
) -> None:
    envelope, body = spoil(change)
    outcome = notification_outcome(SIGNER.headers(body), body)
    event(f"{change.where}: {type(outcome).__name__}")
    if isinstance(outcome, Notification):
        assert envelope is not None
        assert outcome.raw == json.loads(body)  # (a surrogate pair comes back as one character)
        assert outcome.create_time.tzinfo is not None
        if change.where == "plaintext":
            assert outcome.resource == json.loads(change.data)
        else:
            assert outcome.resource == RESOURCE
    else:
        assert isinstance(outcome, (InvalidNotificationError, DecryptionError)), repr(outcome)
