"""What importing the package costs and gives: every public name, loaded on first use, so
that what only imports it (pytest loading the plugin, a webhook receiver) does not pay for
aiohttp. Checked in fresh interpreters, since this process has imported everything."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wechatpay_chain
import wechatpay_chain.testing


def fresh_python(code: str) -> str:
    finished = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.strip()


def test_importing_the_package_loads_neither_aiohttp_nor_cryptography() -> None:
    loaded = fresh_python(
        "import sys, wechatpay_chain; "
        "print(sorted(m for m in ('aiohttp', 'cryptography') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_the_pytest_plugin_loads_no_aiohttp_until_a_fixture_runs() -> None:
    loaded = fresh_python(
        "import sys, wechatpay_chain.testing.pytest_plugin; print('aiohttp' in sys.modules)"
    )
    assert loaded == "False"


def test_verifying_notifications_needs_no_aiohttp() -> None:
    loaded = fresh_python(
        "import sys; from wechatpay_chain import Notification, InvalidNotificationError; "
        "from wechatpay_chain.notifications import verify_and_decrypt; "
        "print('aiohttp' in sys.modules)"
    )
    assert loaded == "False"


def test_naming_the_client_loads_it() -> None:
    loaded = fresh_python(
        "import sys; from wechatpay_chain import WeChatPay; "
        "print(WeChatPay.__module__, 'aiohttp' in sys.modules)"
    )
    assert loaded == "wechatpay_chain.client True"


@pytest.mark.parametrize("package", [wechatpay_chain, wechatpay_chain.testing])
def test_every_public_name_is_there_and_nothing_else(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    for name in names:
        assert getattr(package, name) is not None
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        getattr(package, "NoSuchThing")  # noqa: B009 - the look-up is the test


def test_star_import_gives_every_public_name() -> None:
    names = fresh_python(
        "ns = {}; exec('from wechatpay_chain import *', ns); "
        "import wechatpay_chain; "
        "print(sorted(set(wechatpay_chain.__all__) - set(ns)))"
    )
    assert names == "[]"


def test_the_chain_and_the_pure_modules_import_without_aiohttp() -> None:
    loaded = fresh_python(
        "import sys; import wechatpay_chain.chain, wechatpay_chain.uri, wechatpay_chain._wire, "
        "wechatpay_chain.errors, wechatpay_chain.signing, wechatpay_chain.verifying, "
        "wechatpay_chain.keys, wechatpay_chain.crypto; "
        "print(sorted(m for m in ('aiohttp', 'wechatpay_chain.client') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_the_chain_imports_no_cryptography() -> None:
    loaded = fresh_python("import sys, wechatpay_chain.chain; print('cryptography' in sys.modules)")
    assert loaded == "False"


def test_every_error_and_the_configuration_values_are_exported_from_the_root() -> None:
    from wechatpay_chain import errors

    missing = set(errors.__all__) - set(wechatpay_chain.__all__)
    assert not missing
    assert {"RetryPolicy", "DirectoryCertificateCache", "MessageSigner"} <= set(
        wechatpay_chain.__all__
    )


def _runtime_imports(path: Path, module: str, package: bool) -> set[str]:
    """The package's modules that ``module`` imports when it is imported: module-level
    imports, not those under ``if TYPE_CHECKING:`` nor inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = module if package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{parent}.{node.module}" if node.module else parent
            else:
                target = node.module or ""
            if target.startswith("wechatpay_chain"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("wechatpay_chain"))
    return found


def test_no_module_imports_another_in_a_cycle() -> None:
    root = Path(wechatpay_chain.__file__).parent
    modules: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        modules[name] = _runtime_imports(path, name, package)
    graph = {
        name: {m for m in imports if m in modules and m != name}
        for name, imports in modules.items()
    }
    # A package imports its __init__ first: importing a.b runs a/__init__ before a/b.
    for name, imports in graph.items():
        parent = name.rpartition(".")[0]
        if parent in graph and name not in graph[parent]:
            imports.add(parent)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for child in sorted(graph[name]):
            if state.get(child) == 1 and not name.startswith(child + "."):
                cycles.append([*path, name, child])
            elif child not in state:
                visit(child, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []
    # The cycle the core redesign removed: client -> chain -> files -> client.
    assert "wechatpay_chain.client" not in graph["wechatpay_chain.chain"]
    assert not any(
        m.startswith("wechatpay_chain.client") for m in graph["wechatpay_chain.files.bills"]
    )
