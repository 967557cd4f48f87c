"""Micro-batching against a GPU-like upstream: batching off and on, in the same run.

    .venv/bin/python bench/batching.py                        # 256 and 1 clients, 5 + 15 s a row
    .venv/bin/python bench/batching.py --duration 5 --conc 64 --conc 1

The upstream is the mock in its GPU mode (`mock-upstream --call-ms 100 --prompt-ms 2
--max-calls 4`): a call computes for 100 ms plus 2 ms per prompt, four calls at once, the others
queue for a turn. One proxy serves two models on it, the same but for batching: `plain` (none)
and `batched` (`batching: {max_batch: 64, max_wait_ms: 5}`), both with `max_concurrency` set to
the GPU's 4 slots (`--max-concurrency`; 0: none), as the README advises for a GPU server.
For each concurrency, `plain` then `batched`: N clients in a closed loop (each sends a chat
completion with its own prompt, waits for the answer, sends the next) for --warmup s, then
--duration s measured. At one client, its requests alternate between the two models in one
window instead, so that both rows see the same machine (it is shared and noisy): the p50 they
differ by is batching's own cost, the `max_wait_ms` a lone request waits for company. A row
reports the answers that arrived in the measured window per second, their p50 / p99 latency,
and upstream calls per request (the mock's count of calls over the answers, warm-up included;
in the alternating window the batched model's calls are the proxy's own count). Every answer
must be a 200 with content; a row with errors fails the run (exit 1).

Bounded: 127.0.0.1 only, each row stops after its time or --max-requests answers, every process
started is stopped at the end. Writes `results.json` and `table.txt` to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import procs
import yaml
from load import BENCH_DIR
from procs import Servers, SetupError
from prometheus_client.parser import text_string_to_metric_families
from run import _machine, _now, _proxy_command

PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))  # the project's own HTTP client drives the load

from app.http_client import HTTPPool, prepare_post  # noqa: E402

MAX_BATCH = 64
MAX_WAIT_MS = 5.0
MODELS = ("plain", "batched")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/batching.py",
        description="Batching off and on, in one run, against a GPU-like mock upstream.",
    )
    add = parser.add_argument
    add("--conc", type=int, action="append", help="concurrent clients; repeatable [256, 1]")
    add("--duration", type=float, default=15.0, help="measured seconds per row [15]")
    add("--warmup", type=float, default=5.0, help="seconds per row before measuring [5]")
    add("--max-requests", type=int, default=200_000, help="answers per row at most [200000]")
    add("--call-ms", type=float, default=100.0, help="the upstream's time per call [100]")
    add("--prompt-ms", type=float, default=2.0, help="its time per prompt of a call [2]")
    add("--max-calls", type=int, default=4, help="its calls at once [4]")
    add(
        "--max-concurrency",
        type=int,
        help="the models' max_concurrency [--max-calls: the GPU's slots; 0: none]",
    )
    add(
        "--out",
        type=Path,
        default=Path("/tmp/custom-llm-proxy-bench/batching"),
        help="results folder [/tmp/custom-llm-proxy-bench/batching]",
    )
    return parser.parse_args(argv)


@dataclass
class Row:
    model: str
    conc: int
    answers: int  # in the measured window
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    calls_per_request: float
    errors: int


def proxy_config(upstream: str, max_concurrency: int) -> dict[str, object]:
    model: dict[str, object] = {"api_base": upstream, "upstream_model": "demo", "max_retries": 0}
    if max_concurrency:
        model["max_concurrency"] = max_concurrency
    batching = {"max_batch": MAX_BATCH, "max_wait_ms": MAX_WAIT_MS}
    return {
        "models": [
            {"name": "plain", **model},
            {"name": "batched", **model, "batching": batching},
        ]
    }


class Load:
    """N clients in a closed loop; each client's requests take the `models` in turn. Per model:
    the answers that arrived inside the measured window, and their latencies."""

    def __init__(
        self, proxy: str, models: Sequence[str], conc: int, args: argparse.Namespace
    ) -> None:
        self.target = prepare_post(
            f"{proxy}/v1/chat/completions", {"content-type": "application/json"}
        )
        self.models = tuple(models)
        self.conc = conc
        self.args = args
        self.latencies: dict[str, list[float]] = {model: [] for model in models}
        self.answered = dict.fromkeys(models, 0)
        self.errors = dict.fromkeys(models, 0)
        self.window = (0.0, 0.0)

    async def run(self) -> None:
        pool = HTTPPool(keepalive_seconds=30.0)
        start = time.monotonic()
        self.window = (start + self.args.warmup, start + self.args.warmup + self.args.duration)
        try:
            await asyncio.gather(*(self._client(pool, index) for index in range(self.conc)))
        finally:
            await pool.aclose()

    async def _client(self, pool: HTTPPool, index: int) -> None:
        begin, end = self.window
        sent = 0
        while sum(self.answered.values()) < self.args.max_requests:
            started = time.monotonic()
            if started >= end:
                return
            sent += 1
            model = self.models[sent % len(self.models)]
            body = json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": f"Question {index}-{sent}?"}],
                    "max_tokens": 16,
                }
            ).encode()
            try:
                response = await pool.post(self.target, b"", body, timeout=60.0)
                ok = response.status == 200 and b'"content":"' in response.body
            except (OSError, TimeoutError, ConnectionError):
                ok = False
            done = time.monotonic()
            self.answered[model] += 1
            if not ok:
                self.errors[model] += 1
            elif begin <= done <= end:
                self.latencies[model].append(done - started)


def mock_calls(mock: str) -> int:
    """The mock's count of calls since the last call of this, which zeroes it."""
    status, body = procs.post(f"{mock}/_mock/reset-stats", b"", {}, 5.0)
    if status != 200:
        raise SetupError(f"the mock's stats answered {status}")
    return int(json.loads(body)["requests"])


def batch_calls(proxy: str) -> float:
    """The proxy's proxy_batch_upstream_calls_total of model `batched`."""
    with urllib.request.urlopen(f"{proxy}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, model = sample.name, sample.labels.get("model")
            if name == "proxy_batch_upstream_calls_total" and model == "batched":
                return float(sample.value)
    return 0.0


def measure(
    proxy: str, mock: str, models: Sequence[str], conc: int, args: argparse.Namespace
) -> list[Row]:
    """One window of load: a row per model. With both models in one window, the mock's calls
    are split by the proxy's count of the batched model's calls."""
    mock_calls(mock)  # from zero
    batched_before = batch_calls(proxy)
    load = Load(proxy, models, conc, args)
    asyncio.run(load.run())
    calls = {"batched": batch_calls(proxy) - batched_before}
    calls["plain"] = mock_calls(mock) - (calls["batched"] if "batched" in models else 0)
    rows = []
    for model in models:
        latencies = sorted(load.latencies[model])
        if not latencies:
            raise SetupError(f"no answer of {model} at {conc} clients inside the window")
        rows.append(
            Row(
                model=model,
                conc=conc,
                answers=len(latencies),
                seconds=args.duration,
                rps=len(latencies) / args.duration,
                p50_ms=statistics.median(latencies) * 1000,
                p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
                calls_per_request=calls[model] / max(1, load.answered[model]),
                errors=load.errors[model],
            )
        )
    return rows


def wait_http(url: str, server: procs.Server) -> None:
    def answers() -> bool | None:
        try:
            status, _ = procs.post(url, b"{}", {}, 1.0)
        except OSError:
            return None
        return True if status else None

    procs.wait_until(answers, deadline_s=30, what=f"waiting for {url}", server=server)


def table(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| clients | model | answers/s | × plain | p50 ms | p99 ms | upstream calls/request "
        "| errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    plain = {row.conc: row for row in rows if row.model == "plain"}
    for row in rows:
        base = plain.get(row.conc)
        ratio = f"{row.rps / base.rps:.1f}×" if base else "-"
        lines.append(
            f"| {row.conc} | {row.model} | {row.rps:.1f} | {ratio} | {row.p50_ms:.1f} "
            f"| {row.p99_ms:.1f} | {row.calls_per_request:.3f} | {row.errors} |"
        )
    for conc, base in plain.items():
        on = next((r for r in rows if r.conc == conc and r.model == "batched"), None)
        if on is not None:
            lines.append(
                f"\nat {conc} clients: p50 {on.p50_ms - base.p50_ms:+.1f} ms with batching "
                f"(max_wait_ms {MAX_WAIT_MS:g}), throughput {on.rps / base.rps:.1f}×"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    concs = args.conc or [256, 1]
    args.out.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROXY_")}
    used: set[int] = set()
    mock_port = procs.free_port(used)
    used.add(mock_port)
    proxy_port = procs.free_port(used)
    mock = f"http://127.0.0.1:{mock_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    config_path = args.out / "batching.yaml"
    slots = args.max_calls if args.max_concurrency is None else args.max_concurrency
    config = proxy_config(f"{mock}/generate", slots)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = _now()
    rows: list[Row] = []
    try:
        with Servers(args.out, PROJECT_DIR) as servers:
            upstream = servers.start(
                "mock",
                [
                    *_proxy_command(),
                    "mock-upstream",
                    "--port",
                    str(mock_port),
                    "--call-ms",
                    str(args.call_ms),
                    "--prompt-ms",
                    str(args.prompt_ms),
                    "--max-calls",
                    str(args.max_calls),
                ],
                cpus,
                env,
            )
            wait_http(f"{mock}/_mock/reset-stats", upstream)
            server = servers.start(
                "proxy",
                [
                    *_proxy_command(),
                    "serve",
                    "--config",
                    str(config_path),
                    "--port",
                    str(proxy_port),
                    "--log-level",
                    "warning",
                ],
                cpus,
                env,
            )
            wait_http(f"{proxy}/v1/chat/completions", server)
            for conc in concs:
                # One client: its requests alternate between the models, so that both see the
                # same machine; more: one window per model (they would batch each other's).
                windows = [MODELS] if conc == 1 else [(model,) for model in MODELS]
                for models in windows:
                    for row in measure(proxy, mock, models, conc, args):
                        print(asdict(row), flush=True)
                        rows.append(row)
    except SetupError as exc:
        print(f"bench/batching.py: {exc}", file=sys.stderr)
        return 2
    header = (
        f"Batching off and on, {started} to {_now()}, {_machine()}; upstream: "
        f"{args.call_ms:g} ms per call + {args.prompt_ms:g} ms per prompt, {args.max_calls} "
        f"calls at once; both models: max_concurrency {slots or 'none'}; "
        f"batched: max_batch {MAX_BATCH}, max_wait_ms {MAX_WAIT_MS:g}; "
        f"{args.warmup:g} s warm-up + {args.duration:g} s per row"
    )
    text = table(rows, header)
    print(text)
    (args.out / "table.txt").write_text(text + "\n")
    results = {"header": header, "rows": [asdict(row) for row in rows]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
