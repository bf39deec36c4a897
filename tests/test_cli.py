"""The command line: ``wechatpay_chain.cli.main`` against the fake server over loopback.

Most tests run ``main([...])`` in a worker thread (it runs its own event loop, while the fake
server answers in the test's loop) and read what it printed with ``capsys``; a few run the
installed entry points as subprocesses. Every run is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay_chain.cli import main
from wechatpay_chain.cli.progress import ProgressBar
from wechatpay_chain.testing import (
    FakeWeChatPay,
    Fault,
    RecordedRequest,
    Reply,
    generate_private_key,
)

Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
CHINA = datetime.timezone(datetime.timedelta(hours=8))
TIMEOUT = 30
NATIVE = "v3/pay/transactions/native"
BY_OUT_TRADE_NO = "v3/pay/transactions/out-trade-no/{out_trade_no}"


@attrs.frozen
class Run:
    status: int
    out: str
    err: str

    def assert_failed(self, status: int, *fragments: str) -> None:
        """Failed with ``status``: one ``error:`` line on stderr, nothing on stdout, no traceback."""
        assert self.status == status, self
        assert self.out == "", self
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        assert lines[-1].startswith("error: "), self.err
        for fragment in fragments:
            assert fragment in self.err, self.err


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    status = await asyncio.wait_for(asyncio.to_thread(main, list(argv)), TIMEOUT)
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


def bill_day(days_ago: int = 2) -> str:
    """A date whose bill exists on the fake server at any hour."""
    return (datetime.datetime.now(CHINA).date() - datetime.timedelta(days=days_ago)).isoformat()


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def merchant_environment(server: FakeWeChatPay, directory: Path) -> dict[str, str]:
    """The WECHATPAY_* variables naming the fake's merchant, its key files written to ``directory``."""
    key = directory / "apiclient_key.pem"
    key.write_bytes(server.merchant.private_key_pem or b"")
    public = directory / "pub_key.pem"
    public.write_bytes(server.public_key_pem)
    return {
        "WECHATPAY_MCHID": server.merchant.mchid,
        "WECHATPAY_SERIAL": server.merchant.serial,
        "WECHATPAY_PRIVATE_KEY": str(key),
        "WECHATPAY_PUBLIC_KEY_ID": server.public_key_id,
        "WECHATPAY_PUBLIC_KEY": str(public),
        "WECHATPAY_BASE_URL": server.url,
    }


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WECHATPAY_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("WECHATPAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def merchant(
    wechatpay_server: FakeWeChatPay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeWeChatPay:
    """The fake server, with the WECHATPAY_* variables set for its merchant."""
    for name, value in merchant_environment(wechatpay_server, tmp_path).items():
        monkeypatch.setenv(name, value)
    return wechatpay_server


@pytest_asyncio.fixture
async def certificate_server(wechatpay_keys: Keys) -> AsyncIterator[FakeWeChatPay]:
    """A fake WeChat Pay for a merchant that verifies with platform certificates only."""
    async with FakeWeChatPay(
        merchant_private_key=wechatpay_keys[0],
        wechatpay_private_key=wechatpay_keys[1],
        mode="certificates",
    ) as server:
        yield server


def order(server: FakeWeChatPay, out_trade_no: str) -> dict[str, Any]:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": server.merchant.mchid,
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": out_trade_no,
        "notify_url": "https://shop.example/wxpay/notify",
        "amount": {"total": 100, "currency": "CNY"},
    }


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, so that the progress line is live."""

    def isatty(self) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- entry points and usage ---------------------------------------------------------------------


async def _subprocess(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_module_and_the_script_run_main(tmp_path: Path) -> None:
    from wechatpay_chain import __version__

    status, out, _ = await _subprocess(sys.executable, "-m", "wechatpay_chain", "--version")
    assert (status, out.strip()) == (0, f"wechatpay_chain {__version__}")
    script = Path(sys.executable).with_name("wechatpay-chain")  # [project.scripts]
    status, out, _ = await _subprocess(str(script), "--version")
    assert (status, out.strip()) == (0, f"wechatpay_chain {__version__}")
    # A usage error: exit 2, the usage on stderr, named after the program.
    status, out, err = await _subprocess(sys.executable, "-m", "wechatpay_chain", "bill")
    assert (status, out) == (2, "")
    assert err.startswith("usage: python -m wechatpay_chain bill"), err


async def test_usage_errors_exit_2_before_anything_is_sent(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    day = bill_day()
    csv = str(tmp_path / "bill.csv")
    run = await cli(capsys)
    assert (run.status, run.out) == (2, "")
    assert "required" in run.err
    run = await cli(capsys, "--help")
    assert (run.status, run.err) == (0, "")
    assert all(command in run.out for command in ("demo", "request", "certificates", "bill"))
    run = await cli(capsys, "bill", "download", "--date", "2026-02-30", "--output", csv)
    assert (run.status, run.out) == (2, "")
    assert "expected a date written YYYY-MM-DD, got '2026-02-30'" in run.err
    run = await cli(capsys, "bill", "download", "--date", "20260501", "--output", csv)
    assert run.status == 2
    run = await cli(capsys, "request", "FETCH", NATIVE)
    assert (run.status, "invalid choice: 'FETCH'" in run.err) == (2, True), run
    # An output that cannot be written: reported before any call.
    run = await cli(capsys, "bill", "download", "--date", day, "--output", str(tmp_path))
    run.assert_failed(2, "names a directory")
    run = await cli(capsys, "bill", "download", "--date", day, "--output", f"{tmp_path}/new/")
    run.assert_failed(2, "names a directory")
    run = await cli(
        capsys, "bill", "download", "--date", day, "--output", str(tmp_path / "no" / "b.csv")
    )
    run.assert_failed(2, f"there is no directory {tmp_path / 'no'}")
    # Credentials: a missing one, half a public key, an unreadable key file.
    run = await cli(capsys, "bill", "download", "--date", day, "--output", csv, "--mchid", "")
    run.assert_failed(2, "--mchid (or $WECHATPAY_MCHID) is required")
    run = await cli(
        capsys, "bill", "download", "--date", day, "--output", csv, "--public-key-id", ""
    )
    run.assert_failed(2, "--public-key-id and --public-key go together")
    run = await cli(capsys, "request", "GET", NATIVE, "--public-key-id", "", "--public-key", "")
    run.assert_failed(2, "nothing to verify WeChat Pay's answers with", "$WECHATPAY_APIV3_KEY")
    run = await cli(
        capsys, "request", "GET", NATIVE, "--private-key", str(tmp_path / "missing.pem")
    )
    run.assert_failed(2, "missing.pem")
    assert merchant.requests == []


async def test_certificates_output_must_be_an_existing_directory(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WECHATPAY_APIV3_KEY", merchant.apiv3_key)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    run = await cli(capsys, "certificates", "download", "--output", str(a_file))
    run.assert_failed(2, f"--output {a_file} is not a directory")
    run = await cli(capsys, "certificates", "download", "--output", str(tmp_path / "certs"))
    run.assert_failed(2, "there is no directory", "create it first")
    # No APIv3 key and no terminal to ask for it.
    monkeypatch.delenv("WECHATPAY_APIV3_KEY")
    run = await cli(capsys, "certificates", "download", "--output", str(tmp_path))
    run.assert_failed(2, "the APIv3 key is needed: set $WECHATPAY_APIV3_KEY")
    assert merchant.requests == []


# -- certificates ---------------------------------------------------------------------------------


async def test_certificates_download_reads_the_wechatpay_variables(
    certificate_server: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = merchant_environment(certificate_server, tmp_path)
    del environment["WECHATPAY_PUBLIC_KEY_ID"], environment["WECHATPAY_PUBLIC_KEY"]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WECHATPAY_APIV3_KEY", certificate_server.apiv3_key)
    output = tmp_path / "certs"
    output.mkdir()
    run = await cli(capsys, "certificates", "download", "--output", f"{output}/")
    assert (run.status, run.err) == (0, ""), run
    [platform] = certificate_server.keys.certificates
    assert (output / f"wechatpay_{platform.serial}.pem").read_bytes() == platform.pem
    assert platform.serial in run.out
    assert "valid" in run.out
    assert f"-> {output / f'wechatpay_{platform.serial}.pem'}" in run.out
    assert "//" not in run.out

    # The key in another variable, named by --apiv3-key-env; a wrong key is a refusal.
    monkeypatch.setenv("OTHER_APIV3_KEY", "Y" * 32)
    run = await cli(
        capsys, "certificates", "download", "--output", str(output), "--apiv3-key-env",
        "OTHER_APIV3_KEY",
    )  # fmt: skip
    run.assert_failed(1, "the certificates did not decrypt: is the APIv3 key right?")


async def test_certificates_command_explains_a_public_key_merchant_and_a_wrong_key(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WECHATPAY_APIV3_KEY", merchant.apiv3_key)
    run = await cli(capsys, "certificates", "download", "--output", str(tmp_path))
    run.assert_failed(1, "404 RESOURCE_NOT_EXISTS", "WeChat Pay public key")
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(pem(generate_private_key()))
    run = await cli(
        capsys, "certificates", "download", "--output", str(tmp_path), "--private-key", str(wrong)
    )
    run.assert_failed(1, "HTTP 401", "refused the request's signature")


# -- bills ----------------------------------------------------------------------------------------


async def test_bill_download_writes_the_verified_file(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    day = bill_day()
    merchant.bills.size = 2_500_000
    expected = merchant.bills.content("trade", day, "ALL")
    output = tmp_path / "out" / "bill.csv"
    output.parent.mkdir()
    run = await cli(capsys, "bill", "download", "--date", day, "--gzip", "--output", str(output))
    assert run.status == 0, run
    assert output.read_bytes() == expected.content()
    assert f"SHA-1 {expected.sha1} verified" in run.out
    assert f"({len(expected.content()):,} bytes)" in run.out
    # A gzip transfer has no known length: the bytes received, no percentage, no "0.0 of".
    assert "%" not in run.err
    assert " of " not in run.err
    assert run.err.endswith("/s\n")
    # A plain transfer has a length: the bar reaches 100%.
    run = await cli(
        capsys, "bill", "download", "--date", day, "--output", str(output.with_name("b.csv"))
    )
    assert run.status == 0, run
    assert "[" + "#" * 30 + "] 100.0%  2.4 of 2.4 MiB" in run.err
    assert sorted(os.listdir(output.parent)) == ["b.csv", "bill.csv"]


async def test_a_small_bill_shows_bytes_not_zero_mib(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    merchant.bills.size = 900
    run = await cli(
        capsys, "bill", "download", "--date", bill_day(), "--output", str(tmp_path / "b.csv")
    )
    assert run.status == 0, run
    assert "100.0%  900 of 900 bytes" in run.err
    assert "0.0 of" not in run.err
    assert "900 bytes (900 bytes)" in run.out


async def test_a_failed_bill_leaves_no_file_and_no_progress_line(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant.bills.size = 300_000
    output = tmp_path / "c.csv"
    merchant.bills.corrupt_next()
    run = await cli(capsys, "bill", "download", "--date", bill_day(), "--output", str(output))
    run.assert_failed(1, "SHA-1", "do not use this file")
    assert run.err.count("\n") == 1  # the error line alone: no final progress state
    assert not output.exists()

    # On a terminal the line was drawn live; it is erased before the error is printed.
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    merchant.bills.corrupt_next()
    status = await asyncio.wait_for(
        asyncio.to_thread(
            main, ["bill", "download", "--date", bill_day(), "--output", str(output)]
        ),
        TIMEOUT,
    )
    assert status == 1
    written = terminal.getvalue()
    assert written.startswith("\r[")  # the bar was drawn
    drawn, erased, error = written.rsplit("\r", 2)
    assert erased.strip() == ""
    assert len(erased) >= len(drawn.rsplit("\r", 1)[-1])  # covers the whole last bar
    assert error.startswith("error: ")
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (nested(100_000), "nests too deeply"),
        (b'{"hash_type": "SHA1", ', "not JSON"),
        (b"[]", "a bill answer is a JSON object, not list"),
    ],
)
async def test_a_malformed_bill_answer_is_one_line_exit_1(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    body: bytes,
    message: str,
) -> None:
    merchant.route("GET", "/v3/bill/tradebill", lambda request, path: Reply(body=body))
    run = await cli(
        capsys, "bill", "download", "--date", bill_day(), "--output", str(tmp_path / "b.csv")
    )
    run.assert_failed(1, message)
    assert run.err.count("\n") == 1
    assert len(run.err) < 300


async def test_a_deeply_nested_error_answer_is_one_line_exit_1(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    merchant.route(
        "GET", "/v3/bill/tradebill", lambda request, path: Reply(status=400, body=nested(100_000))
    )
    run = await cli(
        capsys, "bill", "download", "--date", bill_day(), "--output", str(tmp_path / "b.csv")
    )
    run.assert_failed(1)
    assert run.err.count("\n") == 1


# -- request --------------------------------------------------------------------------------------


def answering(body: bytes) -> Callable[[RecordedRequest, Mapping[str, str]], Reply]:
    return lambda request, path: Reply(body=body)


def echo(request: RecordedRequest, path: Mapping[str, str]) -> Reply:
    """Answers what it received: the body, the query (repeated keys as lists) and the path."""
    query: dict[str, Any] = {}
    for key, value in request.query.items():
        query.setdefault(key, []).append(value)
    return Reply(json={"body": request.json(), "query": query, "path": dict(path)})


async def test_request_sends_items_as_body_fields_and_query(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant.route("POST", "/v3/echo/{name}", echo)
    run = await cli(
        capsys, "request", "post", "v3/echo/{name}", "--path-param", "name=a b",
        "text=1", "number:=1", 'object:={"x": [1, {"y": null}], "z": "中文"}',
        "q==1", "q==2", "note=a:=b", "equation=x==y", "empty=", "flag:=true",
    )  # fmt: skip
    assert (run.status, run.err) == (0, ""), run
    answer = json.loads(run.out)
    assert answer["body"] == {
        "text": "1",
        "number": 1,
        "object": {"x": [1, {"y": None}], "z": "中文"},
        "note": "a:=b",
        "equation": "x==y",
        "empty": "",
        "flag": True,
    }
    assert answer["query"] == {"q": ["1", "2"]}
    assert answer["path"] == {"name": "a b"}
    sent = merchant.requests[-1]
    assert sent.target == "/v3/echo/a%20b?q=1&q=2"
    # Pretty-printed, Chinese as it is.
    assert '  "body": {' in run.out
    assert '"z": "中文"' in run.out


async def test_request_takes_a_whole_body_with_d(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body_file = tmp_path / "order.json"
    body_file.write_text(json.dumps(order(merchant, "T-file"), ensure_ascii=False), "utf-8")
    run = await cli(capsys, "request", "POST", NATIVE, "-d", f"@{body_file}")
    assert run.status == 0, run
    assert json.loads(run.out)["code_url"].startswith("weixin://wxpay/bizpayurl")
    assert merchant.requests[-1].json() == order(merchant, "T-file")
    run = await cli(capsys, "request", "POST", NATIVE, "-d", json.dumps(order(merchant, "T-text")))
    assert run.status == 0, run
    assert merchant.requests[-1].json() == order(merchant, "T-text")


async def test_request_query_close_and_verbose(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str]
) -> None:
    mchid = merchant.merchant.mchid
    placed = order(merchant, "T1001")
    run = await cli(
        capsys, "request", "POST", NATIVE,
        *(f"{key}={value}" for key, value in placed.items() if key != "amount"),
        "amount:=" + json.dumps(placed["amount"]),
    )  # fmt: skip
    assert run.status == 0, run
    assert merchant.requests[-1].json() == placed

    run = await cli(
        capsys, "request", "GET", "/" + BY_OUT_TRADE_NO, "--path-param", "out_trade_no=T1001",
        f"mchid=={mchid}", "-v",
    )  # fmt: skip
    assert run.status == 0, run
    answer = json.loads(run.out)  # stdout is the JSON alone
    assert (answer["trade_state"], answer["trade_state_desc"]) == ("NOTPAY", "未支付")
    assert '"trade_state_desc": "未支付"' in run.out
    assert merchant.requests[-1].target == f"/v3/pay/transactions/out-trade-no/T1001?mchid={mchid}"
    lines = run.err.splitlines()
    assert lines[0] == "HTTP 200"
    assert lines[1].startswith("Request-ID: ")
    assert lines[1].endswith("-0")
    assert any(line.startswith("Wechatpay-Signature: ") for line in lines)
    assert any(line.startswith("Content-Type: application/json") for line in lines)
    assert "Authorization" not in run.err
    assert merchant.requests[-1].headers["Authorization"] not in run.err

    # A 204: nothing on stdout.
    run = await cli(
        capsys, "request", "POST", BY_OUT_TRADE_NO + "/close", "--path-param",
        "out_trade_no=T1001", f"mchid={mchid}",
    )  # fmt: skip
    assert (run.status, run.out, run.err) == (0, "", "")
    assert merchant.state.orders["T1001"].trade_state == "CLOSED"


async def test_request_writes_an_answer_that_is_not_json_as_it_came(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = "交易时间,金额\n`2026-05-01,`9.90\n".encode()
    merchant.route(
        "GET",
        "/v3/report",
        lambda request, path: Reply(body=csv, headers={"Content-Type": "text/csv"}),
    )
    run = await cli(capsys, "request", "GET", "v3/report")
    assert (run.status, run.out, run.err) == (0, csv.decode(), "")


async def test_request_failures_exit_1_with_one_line(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mchid = merchant.merchant.mchid
    query = ("request", "GET", BY_OUT_TRADE_NO, "--path-param", "out_trade_no=nope")
    run = await cli(capsys, *query, f"mchid=={mchid}")
    run.assert_failed(1, "WeChat Pay answered HTTP 404 ORDER_NOT_EXIST", "Request-ID")
    assert run.err.count("\n") == 1
    # -v shows the error answer's status and headers before the error line.
    run = await cli(capsys, *query, f"mchid=={mchid}", "-v")
    assert run.status == 1
    assert run.err.startswith("HTTP 404\nRequest-ID: ")
    assert run.err.splitlines()[-1].startswith("error: WeChat Pay answered HTTP 404")

    # A tampered answer does not verify; nothing of it is printed.
    merchant.inject(Fault.tamper_body())
    run = await cli(capsys, "request", "POST", NATIVE, "-d", json.dumps(order(merchant, "T2")))
    run.assert_failed(1, "signature")

    # A verified answer that is not JSON, or nested beyond reading.
    for body, message in [(b"{oops", "not JSON"), (nested(100_000), "nests too deeply")]:
        merchant.route("GET", "/v3/odd", answering(body))
        run = await cli(capsys, "request", "GET", "v3/odd")
        run.assert_failed(1, message)
        assert run.err.count("\n") == 1

    # Nobody listening.
    monkeypatch.setenv("WECHATPAY_BASE_URL", f"http://127.0.0.1:{free_port()}")
    run = await cli(capsys, "request", "POST", NATIVE, "-d", json.dumps(order(merchant, "T3")))
    run.assert_failed(1)
    assert run.err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("POST", NATIVE, "amount:={total: 1}"), "amount:= is not valid JSON"),
        (("POST", NATIVE, "amount:=NaN"), "NaN is not JSON"),
        (("POST", NATIVE, "amount:=" + "[" * 100_000), "amount:= is nested too deeply"),
        (("POST", NATIVE, "novalue"), "expected key=value, key:=json or key==value"),
        (("POST", NATIVE, "=x"), "the key is empty"),
        (("POST", NATIVE, "a=1", "a:=2"), "the body field 'a' is given twice"),
        (("POST", NATIVE, "a=1", "-d", "{}"), "either as -d or as key=value"),
        (("POST", NATIVE, "-d", "[1]"), "a request body is a JSON object, not list"),
        (("POST", NATIVE, "-d", "@/nonexistent/body.json"), "-d @/nonexistent/body.json"),
        (("GET", NATIVE, "a=1"), "a GET request has no body"),
        (("GET", BY_OUT_TRADE_NO), "give --path-param out_trade_no=VALUE"),
        (("GET", NATIVE, "--path-param", "x=1"), "PATH has no placeholder {x}"),
        (("GET", BY_OUT_TRADE_NO, "--path-param", "out_trade_no"), "expected NAME=VALUE"),
        (("POST", "v2/pay/micropay"), "a v2/ path is an APIv2 (XML) endpoint"),
        (("GET", "/"), "PATH is empty"),
    ],
)
async def test_request_usage_errors_exit_2(
    merchant: FakeWeChatPay,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    run = await cli(capsys, "request", *argv)
    run.assert_failed(2, message)
    assert merchant.requests == []


async def test_request_reads_the_body_from_standard_input(
    merchant: FakeWeChatPay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environment = merchant_environment(merchant, tmp_path)
    body = json.dumps(order(merchant, "T-stdin"), ensure_ascii=False).encode()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wechatpay_chain", "request", "POST", NATIVE, "-d", "@-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONIOENCODING": "utf-8", **environment},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(body), TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["code_url"].startswith("weixin://")
    assert merchant.requests[-1].json() == order(merchant, "T-stdin")


# -- the progress line ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_progress_bar_in_a_pipe_writes_the_final_state_once(clock: Clock) -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10, clock=clock)
    bar(512 * 1024, 1024 * 1024)
    clock.now = 1.0
    bar(1024 * 1024, 1024 * 1024)
    assert stream.getvalue() == ""
    bar.finish()
    assert stream.getvalue() == "[##########] 100.0%  1.0 of 1.0 MiB  1.0 MiB/s\n"
    bar.abandon()
    assert stream.getvalue().endswith("MiB/s\n")


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [
        (0, 0, "0 bytes  0 bytes/s"),
        (0, None, "0 bytes  0 bytes/s"),
        (2048, None, "2.0 KiB  1.0 KiB/s"),
        (3 << 30, None, "3.0 GiB  1.5 GiB/s"),
        (500, 1000, "[#####-----]  50.0%  500 of 1,000 bytes  250 bytes/s"),
        (1536, 4096, "[###-------]  37.5%  1.5 of 4.0 KiB  768 bytes/s"),
    ],
)
def test_progress_bar_sizes(clock: Clock, done: int, total: int | None, text: str) -> None:
    bar = ProgressBar(io.StringIO(), width=10, clock=clock)
    clock.now = 2.0
    bar(done, total)
    assert bar.text() == text


def test_progress_bar_on_a_terminal_redraws_and_erases(clock: Clock) -> None:
    terminal = Terminal()
    bar = ProgressBar(terminal, width=10, clock=clock)
    clock.now = 1.0
    bar(10 << 20, None)
    clock.now = 1.05
    bar(20 << 20, None)  # within a tenth of a second: not redrawn
    assert terminal.getvalue() == "\r10.0 MiB  10.0 MiB/s"
    clock.now = 2.0
    bar(20 << 20, None)
    assert terminal.getvalue().endswith("\r20.0 MiB  10.0 MiB/s")
    bar.abandon()
    assert terminal.getvalue().endswith("\r" + " " * len("20.0 MiB  10.0 MiB/s") + "\r")
    bar.abandon()  # once erased, nothing more
    assert terminal.getvalue().endswith("MiB/s\r" + " " * len("20.0 MiB  10.0 MiB/s") + "\r")
