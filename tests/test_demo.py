"""The demo: ``python -m wechatpay_chain demo`` and ``wechatpay_chain.demo.run_demo``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from wechatpay_chain.demo import run_demo

PRE_SIGN = "/v3/password-exempt-contract/contracts/qs/pre-entrust-sign/pay-redirect-sign"


def _check_output(text: str) -> None:
    """The demo shows every request target it sends, and the close's 204."""
    targets = re.findall(r"^  (GET|POST|PUT|PATCH|DELETE) (\S+)$", text, flags=re.MULTILINE)
    assert targets.count(("POST", PRE_SIGN)) == 3, targets
    assert ("POST", "/v3/pay/transactions/native") in targets
    mchid = re.search(r"^merchant (\d+),", text, flags=re.MULTILINE)
    assert mchid is not None, text
    queries = [
        match
        for method, target in targets
        if method == "GET"
        and (
            match := re.fullmatch(
                r"/v3/pay/transactions/out-trade-no/([^/?]+)\?mchid=(\d+)", target
            )
        )
    ]
    assert len(queries) == 1, targets
    out_trade_no, queried_mchid = queries[0].groups()
    assert queried_mchid == mchid.group(1)
    # The order closed is the one queried.
    assert ("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close") in targets
    assert re.search(r"^  -> 204\b", text, flags=re.MULTILINE), text
    assert "-> 200, signature verified" in text
    assert re.search(
        r"^fake WeChat Pay listening at http://127\.0\.0\.1:\d+$", text, flags=re.MULTILINE
    )


def test_demo_command_runs_against_the_fake_server(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    completed = subprocess.run(
        [sys.executable, "-m", "wechatpay_chain", "demo"],
        cwd=tmp_path,  # the installed package, not whatever the working directory holds
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stdout = completed.stdout.decode("utf-8")
    stderr = completed.stderr.decode("utf-8", "replace")
    assert completed.returncode == 0, stderr
    assert stderr == ""
    _check_output(stdout)


async def test_run_demo_in_process_reports_through_say() -> None:
    said: list[str] = []
    status = await run_demo(said.append)
    assert status == 0
    assert all(isinstance(line, str) for line in said)
    _check_output("\n".join(said))
