"""The response cache's worth, measured in one run: a hit next to a miss next to no cache.

    .venv/bin/python bench/cache.py            # 5 s rows, c=1 and 32, upstream 0 and 50 ms
    .venv/bin/python bench/cache.py --duration 2 --conc 16 --delay-ms 0 --rounds 1

One proxy (`serve`, API keys on) in front of bench/slow_upstream.py (a fixed answer after
--delay-ms). Its two models differ only in `cache`. Three rows per concurrency, each the same
chat request shape from an aiohttp client:

    plain   model without a cache, a new question each request (the baseline)
    miss    model with a cache, a new question each request: what a miss costs on top
    hit     model with a cache, the same question every time: what the cache saves

Rows run in turn, their order reversed every other round (ABBA), and a figure is the mean
over rounds; ratios divide rows of the same run. Every answer is checked (status 200, the
expected x-cache); a wrong one is counted and fails the run. The client shares the machine
with the proxy and upstream: absolute figures are the machine's, the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
API_KEY = "sk-bench-cache"
ROWS = ("plain", "miss", "hit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_ready(url: str, deadline: float = 30.0) -> None:
    give_up = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > give_up:
                raise RuntimeError(f"{url} did not answer within {deadline:g} s") from None
            time.sleep(0.05)


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Measured:
    latencies: list[float] = field(default_factory=list)
    wrong: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


async def measure(url: str, row: str, conc: int, duration: float, tag: str) -> Measured:
    model = "plain" if row == "plain" else "cached"
    expected = {"plain": None, "miss": "MISS", "hit": "HIT"}[row]
    numbers = itertools.count()
    result = Measured()
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}

    def body() -> bytes:
        question = f"{tag} the same question" if row == "hit" else f"{tag} q{next(numbers)}"
        messages = [{"role": "user", "content": question}]
        return json.dumps({"model": model, "messages": messages}).encode()

    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        if row == "hit":  # the entry the row hits
            async with session.post(url, data=body()) as response:
                assert response.status == 200, await response.text()

        async def worker(stop_at: float) -> None:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                async with session.post(url, data=body()) as response:
                    await response.read()
                    got = (response.status, response.headers.get("x-cache"))
                result.latencies.append(time.perf_counter() - began)
                if got != (200, expected):
                    result.wrong += 1
                    print(f"wrong answer in row {row}: {got}", file=sys.stderr)

        began = time.perf_counter()
        await asyncio.gather(*(worker(began + duration) for _ in range(conc)))
        result.seconds = time.perf_counter() - began
    return result


def config_text(upstream_port: int) -> str:
    base = f"http://127.0.0.1:{upstream_port}/"
    return (
        "models:\n"
        f"  - {{name: plain, api_base: '{base}', defaults: {{temperature: 0}}}}\n"
        f"  - {{name: cached, api_base: '{base}', defaults: {{temperature: 0}}, cache: {{}}}}\n"
        f"api_keys: [{API_KEY}]\n"
    )


async def run_delay(args: argparse.Namespace, delay_ms: float, work: Path) -> list[str]:
    upstream_port, proxy_port = free_port(), free_port()
    upstream = start(
        [sys.executable, str(BENCH_DIR / "slow_upstream.py"), "--port", str(upstream_port),
         "--delay-ms", str(delay_ms)],
        work / f"upstream-{delay_ms:g}.log",
    )  # fmt: skip
    config = work / f"cache-{delay_ms:g}.yaml"
    config.write_text(config_text(upstream_port), encoding="utf-8")
    proxy = start(
        [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(proxy_port),
         "--log-level", "warning"],
        work / f"proxy-{delay_ms:g}.log",
    )  # fmt: skip
    lines = []
    try:
        wait_ready(f"http://127.0.0.1:{proxy_port}/health")
        url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        for conc in args.conc:
            results: dict[str, list[Measured]] = {row: [] for row in ROWS}
            for round_index in range(args.rounds):
                order = ROWS if round_index % 2 == 0 else tuple(reversed(ROWS))
                for row in order:
                    tag = f"d{delay_ms:g}-c{conc}-r{round_index}-{row}"
                    results[row].append(await measure(url, row, conc, args.duration, tag))
            lines.extend(report(delay_ms, conc, results))
    finally:
        stop(proxy)
        stop(upstream)
    return lines


def report(delay_ms: float, conc: int, results: dict[str, list[Measured]]) -> list[str]:
    def mean(row: str, figure: str) -> float:
        rounds = results[row]
        if figure == "rps":
            return statistics.mean(m.rps for m in rounds)
        return statistics.mean(m.percentile(0.5 if figure == "p50" else 0.99) for m in rounds)

    wrong = sum(m.wrong for rounds in results.values() for m in rounds)
    lines = []
    for row in ROWS:
        lines.append(
            f"| {delay_ms:g} ms | {conc} | {row} | {mean(row, 'rps'):,.0f} | "
            f"{mean(row, 'p50'):.2f} | {mean(row, 'p99'):.2f} | "
            f"{mean(row, 'rps') / mean('plain', 'rps'):.2f}x | "
            f"{mean(row, 'p50') / mean('plain', 'p50'):.2f}x |"
        )
    hit_over_miss = mean("hit", "rps") / mean("miss", "rps")
    lines.append(
        f"|  |  | hit / miss | {hit_over_miss:.2f}x rps | "
        f"{mean('hit', 'p50') / mean('miss', 'p50'):.2f}x p50 |  |  |  |"
    )
    if wrong:
        lines.append(f"WRONG ANSWERS: {wrong}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/cache.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row [5]")
    parser.add_argument("--conc", default="1,32", help="concurrencies, comma-separated [1,32]")
    parser.add_argument(
        "--delay-ms", default="0,50", help="upstream delays, comma-separated [0,50]"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds per row, ABBA [2]")
    args = parser.parse_args(argv)
    args.conc = [int(c) for c in args.conc.split(",")]
    args.delay_ms = [float(d) for d in args.delay_ms.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    header = [
        "| upstream | clients | row | rps | p50 ms | p99 ms | rps / plain | p50 / plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as work:
        for delay in args.delay_ms:
            lines.extend(asyncio.run(run_delay(args, delay, Path(work))))
    print("\n".join(header + lines))
    return 1 if any(line.startswith("WRONG") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
