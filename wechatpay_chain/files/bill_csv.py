"""The bill CSV: backquoted fields, a BOM, the detail rows and the summary."""

from __future__ import annotations

import attrs


@attrs.frozen
class ParsedBill:
    """A bill's CSV as data: the detail rows keyed by column name, and the summary."""

    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...] = attrs.field(repr=lambda rows: f"<{len(rows)} rows>")
    summary_header: tuple[str, ...]
    summary: dict[str, str]


class BillParser:
    """An incremental parser for WeChat Pay's bill CSV: :meth:`feed` it bytes as they come,
    get the detail rows back, :meth:`close` it at the end; then :attr:`summary` is set.

    The format: UTF-8 (with a BOM), a header line of column names, one line per detail
    whose every field starts with a backquote (so spreadsheets keep long numbers as text),
    then a summary header line and one backquoted line of totals. Lines end in LF or CRLF.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._line = 0
        self.header: tuple[str, ...] | None = None
        self.summary_header: tuple[str, ...] | None = None
        self.summary: dict[str, str] | None = None

    def feed(self, data: bytes) -> list[dict[str, str]]:
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        return [row for line in lines if (row := self._line_of(line)) is not None]

    def close(self) -> list[dict[str, str]]:
        pending, self._pending = self._pending, b""
        rows = [row] if (row := self._line_of(pending)) is not None else []
        if self.header is None:
            raise ValueError("the bill is empty: no header line")
        if self.summary_header is not None and self.summary is None:
            raise ValueError("the bill's summary header has no values line")
        return rows

    def _line_of(self, raw: bytes) -> dict[str, str] | None:
        self._line += 1
        if self._line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        line = raw.rstrip(b"\r").decode("utf-8")
        if not line.strip():
            return None
        if self.header is None:
            self.header = tuple(name.strip() for name in line.split(","))
            return None
        if not line.startswith("`"):
            if self.summary_header is not None:
                raise ValueError(f"line {self._line}: a second summary header")
            self.summary_header = tuple(name.strip() for name in line.split(","))
            return None
        # Every field starts with "`": split on ",`" keeps a comma inside a field.
        values = line[1:].split(",`")
        names = self.summary_header if self.summary_header is not None else self.header
        if len(values) != len(names):
            raise ValueError(
                f"line {self._line}: {len(values)} fields where the header names {len(names)}"
            )
        record = dict(zip(names, values, strict=True))
        if self.summary_header is None:
            return record
        if self.summary is not None:
            raise ValueError(f"line {self._line}: a second summary line")
        self.summary = record
        return None


def parse_bill(content: bytes | str) -> ParsedBill:
    """Parse a whole bill (bytes as downloaded, or text) into rows and summary."""
    parser = BillParser()
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    rows = parser.feed(data)
    rows.extend(parser.close())
    return ParsedBill(
        header=parser.header or (),  # close() raised when there was none
        rows=tuple(rows),
        summary_header=parser.summary_header or (),
        summary=parser.summary or {},
    )
