"""What importing the package costs and gives: every public name, loaded on first use, so
that what only imports it (pytest loading the plugin, a webhook receiver) does not pay for
aiohttp. Checked in fresh interpreters, since this process has imported everything."""

from __future__ import annotations

import subprocess
import sys

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


def test_no_module_imports_another_in_a_cycle() -> None:
    # Every module imported on its own, first, in a fresh interpreter: a cycle shows as an
    # ImportError of a partially initialised module.
    import pkgutil

    modules = [
        info.name
        for info in pkgutil.walk_packages(wechatpay_chain.__path__, "wechatpay_chain.")
        if not info.name.endswith(("pytest_plugin", "__main__"))
    ]
    code = (
        "import importlib, subprocess, sys\n"
        f"for name in {modules!r}:\n"
        "    done = subprocess.run([sys.executable, '-c', 'import ' + name], capture_output=True)\n"
        "    if done.returncode: print(name, done.stderr.decode()[-300:])\n"
    )
    assert fresh_python(code) == ""
