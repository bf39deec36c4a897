"""docs/migration.md stays true: every operation it names is a documented WeChat Pay operation,
and the chain call beside it reaches that path with that verb."""

from __future__ import annotations

import re
from pathlib import Path

from wechatpay_chain.uri import attribute_segment, split_path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "migration.md"
DATA = Path(__file__).parent / "data"

# | `name` | `METHOD /path` | `await wxpay....verb(...)` |
_ROW = re.compile(r"^\| `(\w+)` \| `([A-Z]+) (/\S*)` \| `await wxpay(.*?)\.(\w+)\((.*)\)` \|$")
_ATTRIBUTES = re.compile(r"^(?:\.\w+)+$")
_BRACKET = re.compile(r'^\["([^"]+)"\]$')


def _documented() -> set[tuple[str, str]]:
    lines = (DATA / "operations.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return {(method, path) for method, path in rows[1:]}


def _rows() -> list[re.Match[str]]:
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    table_rows = [line for line in lines if re.match(r"^\| `\w+` \| `[A-Z]+ /", line)]
    rows = [_ROW.match(line) for line in table_rows]
    assert all(rows), [line for line, row in zip(table_rows, rows, strict=True) if not row]
    return [row for row in rows if row]


def _chain_path(spelling: str) -> str:
    """The path a chain spelling such as ``.v3.pay.transactions.native`` or
    ``["v3/applyment4sub/applyment/"]`` stands for, by the chain's own rules."""
    bracket = _BRACKET.match(spelling)
    if bracket:
        return "/" + "/".join(split_path(bracket.group(1)))
    assert _ATTRIBUTES.match(spelling), spelling
    return "/" + "/".join(attribute_segment(name) for name in spelling[1:].split("."))


def test_the_guide_maps_most_of_wechatpayv3() -> None:
    rows = _rows()
    assert len(rows) >= 180
    assert len({row.group(1) for row in rows}) >= 160


def test_every_operation_in_the_guide_is_documented() -> None:
    documented = _documented()
    unknown = [(row.group(2), row.group(3)) for row in _rows()]
    assert [operation for operation in unknown if operation not in documented] == []


def test_every_chain_call_in_the_guide_reaches_its_operation() -> None:
    for row in _rows():
        _, method, path, spelling, verb, arguments = row.groups()
        assert (_chain_path(spelling), verb.upper()) == (path, method), row.group(0)
        # each placeholder of the path is passed by name
        for name in re.findall(r"\{(\w+)\}", path):
            assert f"{name}=" in arguments, row.group(0)
