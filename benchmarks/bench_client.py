"""The client's costs (issue 6), one table: chain building, signing, end to end against the
fake server in another process (throughput, client CPU per request and event-loop lag, with
each sign_in_thread setting and two variants tried, next to a hand-written baseline),
and import time. Every comparison is measured side by side in the same run: the cases take
turns, and the medians are reported.

Targets (issue 6): end-to-end throughput >= 0.95 of the baseline at concurrency 1 and 128;
chain building (build + expand) < 10 us; p99 loop lag < 2 ms at concurrency 128; import
< 150 ms.

    .venv/bin/python benchmarks/bench_client.py [chain] [signing] [e2e] [import]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
from _e2e import (
    CLOSED,
    MCHID,
    Baseline,
    BudgetedSigning,
    Call,
    ExecutorSigning,
    Floor,
    LoopBudget,
    Sample,
    baseline_call,
    create_orders,
    gate_verifying,
    library_call,
    median_sample,
    replace_signing,
    run_sample,
    run_turns,
)
from _fake_server import ServerProcess, serve_in_subprocess
from _report import interleaved, report
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wechatpay_chain import WeChatPay, uri
from wechatpay_chain.signing import Signer, new_nonce, request_message
from wechatpay_chain.uri import request_target

Rows = list[tuple[str, str]]

SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
OUT_TRADE_NO = "1217752501201407033233368018"

# End to end: (concurrency, requests per sample); every case at every level, each round.
LEVELS = ((1, 500), (16, 1500), (128, 3000))
ROUNDS = 8
#: At concurrency 1 the cases take turns every TURN calls (about 25 ms each).
TURN = 25


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


MERCHANT_KEY, WECHATPAY_KEY = _new_key(), _new_key()


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# -- chain building ----------------------------------------------------------------------------


def bench_chain(rows: Rows, data: dict[str, Any]) -> None:
    # No network: building a node and its target touches no session.
    wxpay = WeChatPay(MCHID, SERIAL, MERCHANT_KEY, base_url="http://127.0.0.1:9")
    values = {"out_trade_no": OUT_TRADE_NO}
    node = wxpay.v3.pay.partner.transactions.outTradeNo._out_trade_no_.close
    segments = node._segments
    expected = f"/v3/pay/partner/transactions/out-trade-no/{OUT_TRADE_NO}/close"
    assert len(segments) == 7
    assert request_target(segments, values, None) == expected

    def build() -> None:
        wxpay.v3.pay.partner.transactions.outTradeNo._out_trade_no_.close  # noqa: B018

    def expand() -> None:
        request_target(segments, values, None)

    def build_and_expand() -> None:
        request_target(
            wxpay.v3.pay.partner.transactions.outTradeNo._out_trade_no_.close._segments,
            values,
            None,
        )

    def first_build_and_expand() -> None:
        # A chain never built before, on a fresh client: every cache is cold.
        uri._compile.cache_clear()
        uri.attribute_segment.cache_clear()
        fresh = WeChatPay(MCHID, SERIAL, MERCHANT_KEY, base_url="http://127.0.0.1:9")
        request_target(
            fresh.v3.pay.partner.transactions.outTradeNo._out_trade_no_.close._segments,
            values,
            None,
        )

    def f_string() -> None:
        # The floor: the same target written out by hand, its one value encoded.
        "".join(
            ("/v3/pay/partner/transactions/out-trade-no/", quote(OUT_TRADE_NO, safe=""), "/close")
        )

    cases = {"build": build, "expand": expand, "both": build_and_expand, "f_string": f_string}
    samples: dict[str, list[float]] = {name: [] for name in [*cases, "cold"]}
    for _ in range(5):
        for name, value in interleaved(cases, rounds=3, per_round=2000).items():
            samples[name].append(value)
        samples["cold"].append(
            interleaved({"cold": first_build_and_expand}, rounds=1, per_round=200)["cold"]
        )
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    rows += [
        (
            "CHAIN  7 segments, 1 placeholder",
            "wxpay.v3.pay.partner.transactions.outTradeNo._out_trade_no_.close",
        ),
        ("  build the node", f"{seconds['build'] * 1e9:8,.0f} ns"),
        (
            "  expand its target: request_target(node._segments, ...)",
            f"{seconds['expand'] * 1e9:8,.0f} ns",
        ),
        ("  build + expand", f"{seconds['both'] * 1e9:8,.0f} ns   (target < 10,000 ns)"),
        (
            "  the first time (new client, caches cleared; includes WeChatPay())",
            f"{seconds['cold'] * 1e9:8,.0f} ns",
        ),
        ("  hand-written: str.join + quote of the value", f"{seconds['f_string'] * 1e9:8,.0f} ns"),
    ]
    data["chain_seconds"] = seconds


# -- signing -----------------------------------------------------------------------------------


def bench_signing(rows: Rows, data: dict[str, Any]) -> None:
    signer = Signer(MCHID, SERIAL, MERCHANT_KEY)
    target = f"/v3/pay/transactions/out-trade-no/{CLOSED}/close"
    body = b'{"mchid":"1900000109"}'
    message = request_message("POST", target, int(time.time()), signer.nonce(), body)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def authorization() -> None:
        signer.authorization("POST", target, body)

    def bare_sign() -> None:
        MERCHANT_KEY.sign(message, pkcs1, sha256)

    seconds = interleaved(
        {"authorization": authorization, "sign": bare_sign},
        rounds=15,
        per_round=60,
    )
    nonces = interleaved(
        {"new_nonce": new_nonce, "token_hex": lambda: secrets.token_hex(16)},
        rounds=15,
        per_round=1000,
    )
    ratio = seconds["sign"] / seconds["authorization"]
    rows += [
        ("SIGNING  RSA-2048, PKCS#1 v1.5, SHA-256", ""),
        ("  private_key.sign of the same message", f"{seconds['sign'] * 1e6:7.1f} us"),
        (
            "  Signer.authorization",
            f"{seconds['authorization'] * 1e6:7.1f} us   sign / authorization {ratio:.3f}",
        ),
        (
            "    of which new_nonce()",
            f"{nonces['new_nonce'] * 1e6:7.1f} us   secrets.token_hex(16) "
            f"{nonces['token_hex'] * 1e6:.1f} us",
        ),
    ]
    data["signing_seconds"] = {**seconds, **nonces}
    data["signing_ratio"] = ratio


# -- end to end --------------------------------------------------------------------------------

BASELINE = "baseline: hand-written, inline"
LIBRARY = 'library, default (sign_in_thread="auto")'
INLINE = "library, sign_in_thread=False"
THREAD = "library, sign_in_thread=True"
EXECUTOR = "tried: 1 executor job per signature"
BUDGET = "tried: inline, 0.5 ms loop budget"
FLOOR = "floor: aiohttp, no crypto"


@attrs.define
class Measured:
    """Every case's samples by concurrency, and for each sample the baseline's rate it is
    compared with: the same round's at concurrency 1, where the cases take turns every few
    calls; the mean of the baseline samples just before and just after it elsewhere."""

    samples: dict[str, dict[int, list[Sample]]]
    baseline_rates: dict[str, dict[int, list[float]]]

    def ratios(self, name: str, concurrency: int) -> list[float]:
        return [
            sample.per_second / rate
            for sample, rate in zip(
                self.samples[name][concurrency],
                self.baseline_rates[name][concurrency],
                strict=True,
            )
        ]


async def _end_to_end(server: ServerProcess) -> Measured:
    url = server.url
    public_key_pem = WECHATPAY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    clients: list[WeChatPay] = []

    def library(**options: Any) -> WeChatPay:
        client = WeChatPay(
            MCHID, SERIAL, MERCHANT_KEY, {PUBLIC_KEY_ID: public_key_pem}, base_url=url, **options
        )
        clients.append(client)
        return client

    # The variants tried swap the signing middleware of their own client (benchmark only).
    executor, budgeted = library(), library()
    replace_signing(executor, ExecutorSigning(executor._signer, None))
    gate = LoopBudget()
    replace_signing(budgeted, BudgetedSigning(budgeted._signer, gate))
    gate_verifying(budgeted, gate)
    shipped = library()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=5.0))
    baseline = Baseline(
        url, MCHID, SERIAL, MERCHANT_KEY, PUBLIC_KEY_ID, WECHATPAY_KEY.public_key(), session
    )
    cases: dict[str, Call] = {
        BASELINE: baseline_call(baseline),
        LIBRARY: library_call(shipped),
        INLINE: library_call(library(sign_in_thread=False)),
        THREAD: library_call(library(sign_in_thread=True)),
        EXECUTOR: library_call(executor),
        BUDGET: library_call(budgeted),
        FLOOR: baseline_call(Floor(baseline)),
    }
    measured = Measured(
        {name: {level: [] for level, _ in LEVELS} for name in cases},
        {name: {level: [] for level, _ in LEVELS} for name in cases},
    )

    def record(name: str, concurrency: int, sample: Sample, baseline_rate: float) -> None:
        measured.samples[name][concurrency].append(sample)
        measured.baseline_rates[name][concurrency].append(baseline_rate)

    try:
        await create_orders(shipped)
        others = [name for name in cases if name != BASELINE]
        deadline = time.monotonic() + 900
        for round_ in range(ROUNDS):
            for concurrency, total in LEVELS:
                if concurrency == 1:
                    # Taking turns every TURN calls: see run_turns.
                    by_case = await run_turns(cases, total, TURN, server.cpu_seconds)
                    for name, sample in by_case.items():
                        record(name, 1, sample, by_case[BASELINE].per_second)
                    continue
                # Whole samples (at higher concurrency a sample needs its length to ramp up
                # and down), a baseline sample between every two, starting with another
                # case each round: each case is compared with the baseline on either side.
                shift = round_ % len(others)
                before = await run_sample(cases[BASELINE], concurrency, total, server.cpu_seconds)
                for name in others[shift:] + others[:shift]:
                    sample = await run_sample(cases[name], concurrency, total, server.cpu_seconds)
                    after = await run_sample(
                        cases[BASELINE], concurrency, total, server.cpu_seconds
                    )
                    record(name, concurrency, sample, (before.per_second + after.per_second) / 2)
                    record(BASELINE, concurrency, before, before.per_second)
                    before = after
                record(BASELINE, concurrency, before, before.per_second)
            print(f"  e2e round {round_ + 1}/{ROUNDS}", file=sys.stderr)
            if time.monotonic() > deadline:
                break
        return measured
    finally:
        for client in clients:
            await client.close()
        await session.close()


def _server_config() -> dict[str, str]:
    return {
        "mchid": MCHID,
        "serial": SERIAL,
        "public_key_id": PUBLIC_KEY_ID,
        "merchant_public_key": MERCHANT_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "wechatpay_private_key": WECHATPAY_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }


def bench_end_to_end(rows: Rows, data: dict[str, Any]) -> None:
    with serve_in_subprocess(_server_config()) as server:
        measured = asyncio.run(_end_to_end(server))
    samples = measured.samples
    # The baseline has a sample between every two others at higher concurrency: count a case's.
    rounds = len(samples[LIBRARY][LEVELS[0][0]])
    rows.append(
        (
            f"END TO END  median of {rounds} rounds",
            "    req/s  vs baseline  CPU us/req  loop us/req  lag p50 ms  lag p99 ms  server us/req",
        )
    )
    results: dict[str, Any] = {}
    for concurrency, total in LEVELS:
        rows.append((f"  concurrency {concurrency} ({total} requests a sample)", ""))
        for name, by_level in samples.items():
            runs = by_level[concurrency]
            middle = median_sample(runs)
            # Paired: each sample against the baseline next to it, under the same neighbours.
            ratio = statistics.median(measured.ratios(name, concurrency))
            rows.append(
                (
                    f"    {name}",
                    f"{middle.per_second:9,.0f} {ratio:12.2f} {middle.cpu_per_request * 1e6:11.0f}"
                    f" {middle.loop_cpu_per_request * 1e6:12.0f} {middle.lag_p50 * 1e3:11.2f}"
                    f" {middle.lag_p99 * 1e3:11.2f} {middle.server_cpu / middle.requests * 1e6:14.0f}",
                )
            )
            results.setdefault(name, {})[concurrency] = {
                **attrs.asdict(middle),
                "server_cpu_per_request": middle.server_cpu / middle.requests,
                "ratio_to_baseline": ratio,
                "samples": [attrs.asdict(sample) for sample in runs],
                "ratios": measured.ratios(name, concurrency),
            }
    data["end_to_end"] = results


# -- import time -------------------------------------------------------------------------------

DEPENDENCIES = (
    "import aiohttp, attrs, multidict, yarl, cryptography.x509, "
    "cryptography.hazmat.primitives.asymmetric.rsa, cryptography.hazmat.primitives.ciphers.aead"
)


@contextlib.contextmanager
def _bytecode_environment() -> Iterator[dict[str, str]]:
    # As installed from a wheel: bytecode cached (here in a temporary directory, since this
    # environment may set PYTHONDONTWRITEBYTECODE and the package is an editable install).
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        environment = {
            name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
        }
        environment["PYTHONPYCACHEPREFIX"] = cache
        yield environment


def _run(environment: dict[str, str], *arguments: str) -> tuple[float, str]:
    started = time.perf_counter()
    finished = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=environment,
    )
    return time.perf_counter() - started, finished.stderr


#: What each kind of program imports, timed as "python -c <code>" minus "python -c pass".
IMPORTS = {
    "package": "import wechatpay_chain",
    "client": "from wechatpay_chain import WeChatPay",
    "webhooks": "from wechatpay_chain.notifications import verify_and_decrypt",
    "dependencies": DEPENDENCIES,
    "aiohttp": "import aiohttp",
    "pytest": "import pytest",
    "pytest_plugin": "import pytest, wechatpay_chain.testing.pytest_plugin",
}


def check_import_prerequisites() -> None:
    """Before minutes of other parts: the pytest plugin's row needs its dependencies."""
    for module in ("pytest", "pytest_asyncio"):
        if importlib.util.find_spec(module) is None:
            raise SystemExit(f"bench_client.py import: needs {module} (pip install -e '.[tests]')")


def bench_import(rows: Rows, data: dict[str, Any]) -> None:
    with _bytecode_environment() as environment:
        for code in IMPORTS.values():
            _run(environment, "-c", code)  # bytecode written, files in the page cache
        samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
        for _ in range(9):
            for name, code in IMPORTS.items():
                nothing, _ = _run(environment, "-c", "pass")
                loaded, _ = _run(environment, "-c", code)
                samples[name].append(loaded - nothing)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    plugin = seconds["pytest_plugin"] - seconds["pytest"]
    rows += [
        ('IMPORT  fresh interpreter, bytecode cached, median of 9, minus -c "pass"', ""),
        ("  import wechatpay_chain", f"{seconds['package'] * 1e3:7.1f} ms   (target < 150 ms)"),
        (
            "  from wechatpay_chain import WeChatPay  (first use of the client)",
            f"{seconds['client'] * 1e3:7.1f} ms",
        ),
        (
            "  from wechatpay_chain.notifications import verify_and_decrypt",
            f"{seconds['webhooks'] * 1e3:7.1f} ms",
        ),
        ("  the pytest plugin, over import pytest", f"{plugin * 1e3:7.1f} ms"),
        (
            "  the client's dependencies alone (aiohttp, cryptography, ...)",
            f"{seconds['dependencies'] * 1e3:7.1f} ms",
        ),
        ("  aiohttp alone", f"{seconds['aiohttp'] * 1e3:7.1f} ms"),
    ]
    data["import_seconds"] = {**seconds, "pytest_plugin_over_pytest": plugin}


# -- targets -----------------------------------------------------------------------------------


SHORT = {
    LIBRARY: "default (auto)",
    INLINE: "inline",
    THREAD: "always in thread",
    EXECUTOR: "executor per signature",
    BUDGET: "inline + loop budget",
    FLOOR: "floor, no crypto",
}


def targets(rows: Rows, data: dict[str, Any]) -> None:
    checks: Rows = []
    e2e = data.get("end_to_end")
    if e2e:
        high = LEVELS[-1][0]
        for concurrency in (1, high):
            ratio = e2e[LIBRARY][concurrency]["ratio_to_baseline"]
            checks.append(
                (
                    f"  throughput >= 0.95 x baseline @{concurrency}: {SHORT[LIBRARY]}",
                    f"{ratio:6.2f}     {_met(ratio >= 0.95)}",
                )
            )
        best = max((LIBRARY, THREAD, EXECUTOR), key=lambda n: e2e[n][high]["ratio_to_baseline"])
        ratio = e2e[best][high]["ratio_to_baseline"]
        checks.append(
            (
                f"  off-loop signing > 1.0 x baseline @{high}",
                f"{ratio:6.2f}     {_met(ratio > 1.0)}  (best: {SHORT[best]})",
            )
        )
        for name in (LIBRARY, INLINE, THREAD, BUDGET, FLOOR):
            lag = e2e[name][high]["lag_p99"]
            checks.append(
                (
                    f"  p99 loop lag < 2 ms @{high}: {SHORT[name]}",
                    f"{lag * 1e3:6.1f} ms  {_met(lag < 0.002)}",
                )
            )
    chain = data.get("chain_seconds")
    if chain:
        checks.append(
            (
                "  chain build + expand < 10,000 ns",
                f"{chain['both'] * 1e9:6,.0f} ns  {_met(chain['both'] < 10e-6)}",
            )
        )
    imported = data.get("import_seconds")
    if imported:
        for key, label in (("package", "import wechatpay_chain"), ("client", "import WeChatPay")):
            wall = imported[key]
            checks.append((f"  {label} < 150 ms", f"{wall * 1e3:6.0f} ms  {_met(wall < 0.150)}"))
    if checks:
        rows += [("TARGETS", ""), *checks]


PARTS = {
    "chain": bench_chain,
    "signing": bench_signing,
    "e2e": bench_end_to_end,
    "import": bench_import,
}


def main() -> None:
    wanted = [name for name in sys.argv[1:] if name in PARTS] or list(PARTS)
    if "import" in wanted:
        check_import_prerequisites()
    rows: Rows = []
    data: dict[str, Any] = {}
    for name in wanted:
        started = time.perf_counter()
        PARTS[name](rows, data)
        print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    targets(rows, data)
    report("client", rows, data)


if __name__ == "__main__":
    main()
