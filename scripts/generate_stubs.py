"""Generate the typed surface of the chain from the OpenAPI description of WeChat Pay.

Reads ``scripts/wechatpay-openapi/`` (Swagger 2.0 YAML, MIT, see its ``SOURCE.md``) and writes
``wechatpay_chain/endpoints/_root.pyi``: one class per path prefix whose child segments are
properties (a misspelt segment is a type error), the documented verbs of each path with
keyword-only placeholders, the request body as a ``TypedDict`` and the answer as
``Response[<TypedDict>]``. Nothing here runs at import time of the package: the stub is read
by type checkers and editors only, and the chain stays dynamic at run time.

Run it after changing the description or this script (``tests/test_stubs.py`` fails until you
do)::

    python scripts/generate_stubs.py

PyYAML is needed here only (the ``lint`` extra), never by the package or its tests.
"""

from __future__ import annotations

import argparse
import hashlib
import keyword
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "scripts" / "wechatpay-openapi"
PACKAGE = REPO / "wechatpay_chain" / "endpoints"
#: The chain's classes, and the bodies and answers they name (the second importable by type
#: checkers only: ``if TYPE_CHECKING: from wechatpay_chain.endpoints.schemas import ...``).
OUTPUTS = (PACKAGE / "_root.pyi", PACKAGE / "schemas.pyi")

#: A node's own members at run time: a segment spelt like one of them takes a trailing "_".
NODE_MEMBERS = frozenset({"get", "post", "put", "patch", "delete", "request"})
#: The keyword options of the verbs: a placeholder named like one goes through path_params.
OPTIONS = frozenset(
    {
        "json",
        "data",
        "xml",
        "params",
        "headers",
        "timeout",
        "retry",
        "path_params",
        "file",
        "filename",
        "content_type",
        "meta",
        "on_progress",
        "self",
    }
)
VERBS = ("get", "post", "put", "patch", "delete")
#: Not a call a client makes: the description of the notifications WeChat Pay sends.
NOT_CALLS = frozenset({"/v3/webhooks"})
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_DOC_LINK = re.compile(r"\((https://pay\.weixin\.qq\.com/[^)\s]+)\)")


# -- the fingerprint of the inputs (no PyYAML needed: tests/test_stubs.py imports this) -------


def input_digest(spec: Path = SPEC, generator: Path = Path(__file__)) -> str:
    """SHA-256 over every file of the description (sorted relative paths and contents) and
    this script's own source: the stub is stale when this differs from its header."""
    digest = hashlib.sha256()
    for path in sorted(p for p in spec.rglob("*") if p.is_file()):
        digest.update(path.relative_to(spec).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(b"generator\0" + generator.read_bytes())
    return digest.hexdigest()


def recorded_digest(stub: Path) -> str | None:
    """The digest written in a generated file's header, or ``None``."""
    with stub.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("# input-sha256: "):
                return line.split(":", 1)[1].strip()
            if not line.startswith("#"):
                return None
    return None


# -- names ----------------------------------------------------------------------------------


def attribute_name(segment: str) -> str | None:
    """The chain attribute that stands for ``segment``, or ``None`` when no attribute can
    (the inverse of ``wechatpay_chain.uri.attribute_segment``; checked against it)."""
    placeholder = _PLACEHOLDER.match(segment)
    if placeholder:
        return f"_{placeholder.group(1)}_"
    if not segment or segment != segment.lower() or not re.fullmatch(r"[a-z0-9_-]+", segment):
        return None
    first, *rest = segment.split("-")
    if any(not part or not part[0].isalpha() for part in rest) or not first:
        return None
    name = first + "".join(part[0].upper() + part[1:] for part in rest)
    if name.endswith("_") or keyword.iskeyword(name) or name in NODE_MEMBERS:
        name += "_"
    if not name.isidentifier() or name.startswith("__"):
        return None
    return name


def pascal(text: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(part[0].upper() + part[1:] for part in parts if part)


class Names:
    """Unique Python names for the generated classes."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def unique(self, wanted: str) -> str:
        name = wanted if wanted[:1].isalpha() else "T" + wanted
        number = 2
        while name in self.taken:
            name = f"{wanted}{number}"
            number += 1
        self.taken.add(name)
        return name


# -- the description ----------------------------------------------------------------------


class Description:
    """The YAML files of the description, loaded once each, and ``$ref`` resolution."""

    def __init__(self, base: Path) -> None:
        # Imported here: tests/test_stubs.py imports this module for input_digest alone,
        # without PyYAML installed.
        import yaml  # noqa: PLC0415

        self.base = base
        self._loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self._yaml = yaml
        self._files: dict[Path, Any] = {}

    def load(self, path: Path) -> Any:
        path = path.resolve()
        if path not in self._files:
            with path.open(encoding="utf-8") as stream:
                self._files[path] = self._yaml.load(stream, Loader=self._loader)
        return self._files[path]

    def resolve(self, ref: str, here: Path) -> tuple[Any, Path, str]:
        """The node a ``$ref`` points at, the file it is in, and a key naming it."""
        file_part, _, fragment = ref.partition("#")
        target = (here.parent / file_part).resolve() if file_part else here.resolve()
        node = self.load(target)
        for part in (p for p in fragment.split("/") if p):
            node = node[part]
        return node, target, f"{target.stem}#{fragment.strip('/')}"

    def deref(self, schema: Any, here: Path) -> tuple[Any, Path, str | None]:
        key = None
        for _ in range(32):
            if not (isinstance(schema, dict) and "$ref" in schema):
                break
            schema, here, key = self.resolve(schema["$ref"], here)
        return schema, here, key


# -- the model of what is generated ----------------------------------------------------------


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    doc_link: str | None
    deprecated: bool
    v2: bool
    cert_required: bool
    placeholders: list[tuple[str, str]]  # (name, annotation)
    body: str | None  # the annotation of json= / xml=
    upload: bool
    answer: str


@dataclass
class Trie:
    segments: tuple[str, ...]
    children: dict[str, Trie] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    class_name: str = ""


@dataclass
class TypedDictDef:
    name: str
    fields: list[tuple[str, str, bool]]  # (key, annotation, required)


class Generator:
    def __init__(self, description: Description) -> None:
        self.d = description
        self.names = Names()
        self.typed_dicts: list[TypedDictDef] = []
        self._by_ref: dict[str, str] = {}
        self.root = Trie(())
        self.untyped: list[tuple[str, str, str]] = []  # (method, path, why)
        self.operation_count = 0

    # -- schemas ----------------------------------------------------------------------------

    def object_fields(
        self, schema: Any, here: Path, seen: frozenset[str] = frozenset()
    ) -> tuple[dict[str, tuple[Any, Path]], set[str]]:
        """The properties (with the file each is written in) and required names of an
        object schema, ``allOf`` members merged."""
        schema, here, key = self.d.deref(schema, here)
        if key is not None:
            if key in seen:
                return {}, set()
            seen = seen | {key}
        properties: dict[str, tuple[Any, Path]] = {}
        required: set[str] = set()
        if not isinstance(schema, dict):
            return properties, required
        for member in schema.get("allOf") or []:
            more, more_required = self.object_fields(member, here, seen)
            properties.update(more)
            required |= more_required
        for name, sub in (schema.get("properties") or {}).items():
            properties[str(name)] = (sub, here)
        required |= {str(name) for name in schema.get("required") or [] if isinstance(name, str)}
        return properties, required

    def annotation(self, schema: Any, here: Path, hint: str, xml: bool) -> str:
        schema, here, key = self.d.deref(schema, here)
        if not isinstance(schema, dict):
            return "Any"
        if "oneOf" in schema or "anyOf" in schema:
            options = [
                self.annotation(option, here, f"{hint}{number}", xml)
                for number, option in enumerate(schema.get("oneOf") or schema.get("anyOf") or [], 1)
            ]
            return " | ".join(dict.fromkeys(options))
        kind = schema.get("type")
        if xml:
            # A v2 field is text on the wire (a nested value is JSON text: x-json).
            return "str"
        if kind == "object" or "properties" in schema or "allOf" in schema:
            return self.typed_dict(schema, here, hint, key)
        if kind == "array":
            return f"list[{self.annotation(schema.get('items'), here, hint + 'Item', xml)}]"
        return {
            "string": "str",
            "integer": "int",
            "int": "int",
            "uint64": "int",
            "number": "float",  # an int is accepted where a float is expected
            "boolean": "bool",
        }.get(kind if isinstance(kind, str) else "", "Any")

    def typed_dict(self, schema: Any, here: Path, hint: str, key: str | None) -> str:
        if key is not None and key in self._by_ref:
            return self._by_ref[key]
        properties, required = self.object_fields(schema, here)
        if not properties:
            return "dict[str, Any]"
        if key is not None:
            stem, _, fragment = key.partition("#")
            wanted = pascal(fragment) or pascal(stem)
            if wanted in self.names.taken:
                wanted = pascal(stem) + wanted
            name = self.names.unique(wanted)
            self._by_ref[key] = name  # before the fields: a schema may contain itself
        else:
            name = self.names.unique(hint)
        definition = TypedDictDef(name, [])
        self.typed_dicts.append(definition)
        for field_name, (sub, sub_here) in properties.items():
            definition.fields.append(
                (
                    field_name,
                    self.annotation(sub, sub_here, name + pascal(field_name), xml=False),
                    field_name in required,
                )
            )
        return name

    def xml_body(self, schema: Any, here: Path, hint: str) -> str:
        properties, _ = self.object_fields(schema, here)
        if not properties:
            return "dict[str, str]"
        name = self.names.unique(hint)
        self.typed_dicts.append(
            TypedDictDef(
                name,
                # A v2 field is text on the wire; the client writes an int as its digits.
                # None is required: the description marks both of many either-or pairs
                # (transaction_id or out_trade_no) as required. A misspelt name is still an
                # error, the TypedDict being closed.
                [(key, "str | int", False) for key in properties],
            )
        )
        return name

    # -- operations -------------------------------------------------------------------------

    def add(self, path: str, method: str, spec: dict[str, Any], here: Path) -> None:
        self.operation_count += 1
        v2 = not path.startswith(("/v3/", "/hk/", "/global/"))
        segments = ("v2", *path.strip("/").split("/")) if v2 else tuple(path[1:].split("/"))
        if path in NOT_CALLS:
            self.untyped.append((method.upper(), path, "describes the notifications, not a call"))
            return
        bad = [s for s in segments if attribute_name(s) is None]
        if bad:
            self.untyped.append(
                (method.upper(), path, f"no attribute spells the segment {bad[0]!r}")
            )
            return
        node = self.root
        for segment in segments:
            node = node.children.setdefault(segment, Trie((*node.segments, segment)))
        hint = "".join(pascal(attribute_name(s) or s) for s in segments) + method.capitalize()
        parameters = self._parameters(spec, here)
        body, upload = self._body(parameters, hint, v2)
        links = _DOC_LINK.findall(str(spec.get("description") or ""))
        node.operations[method] = Operation(
            method=method,
            path=path,
            summary=str(spec.get("summary") or "").strip(),
            doc_link=links[-1] if links else None,
            deprecated=bool(spec.get("deprecated")),
            v2=v2,
            cert_required=bool(spec.get("x-api-cert-required")),
            placeholders=self._placeholders(segments, parameters),
            body=body,
            upload=upload,
            answer="Any" if v2 else self._answer(spec, here, hint),
        )

    def _parameters(self, spec: dict[str, Any], here: Path) -> list[tuple[dict[str, Any], Path]]:
        parameters = []
        for written in spec.get("parameters") or []:
            parameter, parameter_here, _ = self.d.deref(written, here)
            if isinstance(parameter, dict):
                parameters.append((parameter, parameter_here))
        return parameters

    @staticmethod
    def _placeholders(
        segments: tuple[str, ...], parameters: list[tuple[dict[str, Any], Path]]
    ) -> list[tuple[str, str]]:
        """Every placeholder of the path, a keyword of the verb (an integer takes an int too);
        one named like an option goes through ``path_params=``."""
        types = {
            p["name"]: ("str | int" if p.get("type") in ("integer", "number") else "str")
            for p, _ in parameters
            if p.get("in") == "path"
        }
        placeholders = []
        for segment in segments:
            match = _PLACEHOLDER.match(segment)
            if match and match.group(1) not in OPTIONS:
                placeholders.append((match.group(1), types.get(match.group(1), "str")))
        return placeholders

    def _body(
        self, parameters: list[tuple[dict[str, Any], Path]], hint: str, v2: bool
    ) -> tuple[str | None, bool]:
        """The annotation of the body (``json=``, or ``xml=`` for v2), and whether the call
        is a multipart upload."""
        body = None
        upload = False
        for parameter, parameter_here in parameters:
            if parameter.get("in") == "body":
                schema = parameter.get("schema")
                if v2:
                    body = self.xml_body(schema, parameter_here, hint + "Xml")
                else:
                    body = self.annotation(schema, parameter_here, hint + "Body", xml=False)
            elif parameter.get("in") == "formData" and parameter.get("type") == "file":
                upload = True
        return body, upload

    def _answer(self, spec: dict[str, Any], here: Path, hint: str) -> str:
        """What ``json()`` returns: the 2xx schema, ``None`` for a 204, else ``Any``."""
        responses = spec.get("responses") or {}
        for code in ("200", "201", "202"):
            response = responses.get(code, responses.get(int(code)))
            if response is not None:
                response, response_here, _ = self.d.deref(response, here)
                schema = response.get("schema") if isinstance(response, dict) else None
                if schema is None:
                    return "Any"
                return self.annotation(schema, response_here, hint + "Answer", xml=False)
        return "None" if "204" in responses or 204 in responses else "Any"

    def read(self) -> None:
        index = self.d.load(self.d.base / "swagger.yaml")
        for path, item in index["paths"].items():
            spec, here, _ = self.d.deref(item, self.d.base / "swagger.yaml")
            for method, operation in spec.items():
                if method in VERBS and isinstance(operation, dict):
                    self.add(str(path), method, operation, here)
        self._name_nodes(self.root)

    def _name_nodes(self, node: Trie) -> None:
        for child in node.children.values():
            child.class_name = self.names.unique(
                "".join(
                    f"_{pascal(s[1:-1])}_" if s.startswith("{") else pascal(s)
                    for s in child.segments
                )
            )
            self._name_nodes(child)


# -- writing --------------------------------------------------------------------------------

_NOTICE = """\
# Generated by scripts/generate_stubs.py from scripts/wechatpay-openapi/: do not edit.
# input-sha256: {digest}
#
# {purpose}
#
# Generated from the OpenAPI description of WeChat Pay, TheNorthMemory/wechatpay-openapi:
#
{licence}
"""

_SCHEMAS = """
from typing import Any

from typing_extensions import Required, TypedDict
"""

_ROOT = '''
from collections.abc import Mapping
from typing import Any

from aiohttp import ClientTimeout
from typing_extensions import TypeAlias

from ..chain import Node
from ..files import ProgressCallback, UploadSource
from ..response import Response
from ..retries import RetryMode
from ..uri import QueryValue
from .schemas import *

__all__ = ["TypedRoot"]

_Params: TypeAlias = Mapping[str, QueryValue] | None
_Headers: TypeAlias = Mapping[str, str] | None
_Timeout: TypeAlias = float | ClientTimeout | None
_PathParams: TypeAlias = Mapping[str, object] | None

class _Node:
    """A documented path: its children are properties, its documented verbs are methods."""

    _segments: tuple[str, ...]
    def __getitem__(self, path: str) -> Node: ...
    async def request(
        self,
        method: str,
        /,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: _Params = None,
        headers: _Headers = None,
        timeout: _Timeout = None,
        path_params: _PathParams = None,
        retry: RetryMode = None,
        **placeholders: object,
    ) -> Response[Any]:
        """Send ``method`` to this path, untyped: the escape hatch for what the description
        does not say."""
'''


def _docstring(operation: Operation) -> str:
    lines = [operation.summary or f"{operation.method.upper()} {operation.path}", ""]
    lines.append(f"``{operation.method.upper()} {operation.path}``")
    if operation.deprecated:
        lines.append("")
        lines.append("Deprecated in the description.")
    if operation.cert_required:
        lines.append("")
        lines.append("Needs the merchant's client certificate (APIv2).")
    if operation.doc_link:
        lines.append("")
        lines.append(operation.doc_link)
    text = (
        "\n".join(f"        {line}".rstrip() for line in lines)
        .lstrip()
        .replace("\\", "\\\\")
        .replace('"""', '\\"\\"\\"')
    )
    return f'        """{text}\n        """'


def _verb(operation: Operation) -> str:
    arguments = ["self", "*"]
    if operation.body is not None:
        # Optional even when the description requires a body: data= (the raw body) and
        # the bracket spelling stay open for what the description does not say. Not
        # "| None": against a union, mypy no longer names the wrong or unknown key.
        keyword_name = "xml" if operation.v2 else "json"
        arguments.append(f"{keyword_name}: {operation.body} = ...")
    if operation.method != "get":
        arguments.append("data: bytes | str | None = None")
    if operation.upload:
        arguments += [
            "file: UploadSource",
            "filename: str | None = None",
            "content_type: str | None = None",
            "meta: Mapping[str, Any] | None = None",
            "on_progress: ProgressCallback | None = None",
        ]
    arguments += [
        "params: _Params = None",
        "headers: _Headers = None",
        "timeout: _Timeout = None",
        "path_params: _PathParams = None",
        "retry: RetryMode = None",
    ]
    arguments += [f"{name}: {annotation}" for name, annotation in operation.placeholders]
    signature = ", ".join(arguments)
    return (
        f"    async def {operation.method}({signature}) -> Response[{operation.answer}]:\n"
        f"{_docstring(operation)}"
    )


def _typed_dict(definition: TypedDictDef) -> str:
    every = all(required for _, _, required in definition.fields)
    fields = [
        (key, annotation if every or not required else f"Required[{annotation}]")
        for key, annotation, required in definition.fields
    ]
    total = "" if every else ", total=False"
    if all(key.isidentifier() and not keyword.iskeyword(key) for key, _ in fields):
        body = "\n".join(f"    {key}: {annotation}" for key, annotation in fields)
        return f"class {definition.name}(TypedDict{total}):\n{body}"
    items = ", ".join(f"{key!r}: {annotation}" for key, annotation in fields)
    return f"{definition.name} = TypedDict({definition.name!r}, {{{items}}}{total})"


def _classes(node: Trie) -> Iterator[str]:
    for child in node.children.values():
        yield from _classes(child)
    if not node.segments:
        return
    lines = [f"class {node.class_name}(_Node):"]
    for segment, child in node.children.items():
        lines.append("    @property")
        lines.append(f"    def {attribute_name(segment)}(self) -> {child.class_name}: ...")
    lines += [_verb(operation) for operation in node.operations.values()]
    yield "\n".join(lines)


def render(generator: Generator, digest: str, licence: str) -> tuple[str, str]:
    """The text of ``_root.pyi`` and of ``schemas.pyi``."""
    notice = "\n".join(f"# {line}".rstrip() for line in licence.strip().splitlines())

    def header(purpose: str) -> str:
        return _NOTICE.format(digest=digest, purpose=purpose, licence=notice)

    names = sorted(definition.name for definition in generator.typed_dicts)
    schemas = [
        header(
            "The request bodies and answers of the documented operations as TypedDicts, for\n"
            "# type checkers only: import them under ``if TYPE_CHECKING:``."
        )
        + _SCHEMAS,
        "__all__ = [\n" + "".join(f'    "{name}",\n' for name in names) + "]",
    ]
    schemas += [_typed_dict(definition) for definition in generator.typed_dicts]
    root = [
        header(
            "The typed surface of the chain, for type checkers and editors; at run time the\n"
            "# chain is dynamic (any path works) and this file is never imported."
        )
        + _ROOT
    ]
    root += list(_classes(generator.root))
    typed_root = ["class TypedRoot:", "    __slots__ = ()"]
    for segment, child in generator.root.children.items():
        typed_root.append("    @property")
        typed_root.append(f"    def {attribute_name(segment)}(self) -> {child.class_name}: ...")
    root.append("\n".join(typed_root))
    return "\n\n".join(root) + "\n", "\n\n".join(schemas) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.parse_args(argv)
    generator = Generator(Description(SPEC))
    generator.read()
    licence = (SPEC / "LICENSE").read_text(encoding="utf-8")
    texts = render(generator, input_digest(), licence)
    for output, text in zip(OUTPUTS, texts, strict=True):
        output.write_text(text, encoding="utf-8")
        print(f"{output.relative_to(REPO)}: {len(text) // 1024} KiB", file=sys.stderr)
    typed = generator.operation_count - len(generator.untyped)
    print(
        f"{typed} of {generator.operation_count} operations typed,"
        f" {len(generator.typed_dicts)} TypedDicts",
        file=sys.stderr,
    )
    for method, path, why in generator.untyped:
        print(f"  untyped: {method} {path}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
