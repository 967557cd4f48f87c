"""Thousands of requests in flight: N clients on a D ms upstream, straight and through the proxy.

    .venv/bin/python bench/inflight.py                  # 4,096 in flight x 2,000 ms, 25 s a side
    .venv/bin/python bench/inflight.py --conc 8192 --delay-ms 5000 --duration 30
    .venv/bin/python bench/inflight.py --config my.yaml # another config (serving llama-slow)
    .venv/bin/python bench/inflight.py --compare-config capped.yaml   # then this one, same run

Real custom endpoints take seconds per answer, so a shared proxy holds thousands of requests at
once: each is two sockets and some memory, and any limit on the way (a pool cap, the open-file
limit, an accept backlog) shows here as a rate below the direct one and latencies above D.

One run (see bench/README.md):
1. raises this process's open-file soft limit to its hard limit, so that wrk, the upstream and the
   proxy it starts can each hold N sockets (or fails, naming the limit, when the hard one is
   too low);
2. starts `slow_upstream.py --delay-ms D` on the load CPU and measures wrk straight at it with N
   connections: the baseline (ideal: N / D requests per second);
3. starts `custom-llm-proxy serve --config bench/proxy_config.yaml` (its default pool settings,
   API key on) alone on the proxy CPU and measures the same row through it (model `llama-slow`);
4. prints both rows with the proxy's rate as a share of the direct one, p50 / p99, the proxy's
   CPU, and its RSS idle, just after the row, and at its peak (with --compare-config, step 3
   again with that config, after ours); writes `table.txt` and
   `results.json` to `--out`. Exit 1 when a row had errors or wrong answers, 2 when the setup
   failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import resource
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import procs
import report
from load import BENCH_DIR, NOISY_PCT, Layout, Row, Scenario, run_row, wait_quiet
from procs import Server, Servers, SetupError
from run import (
    API_KEY,
    _chat_body,
    _exit_on_sigterm,
    _machine,
    _now,
    _proxy_command,
    answers,
    choose_layout,
)
from slow_upstream import ANSWER

PROJECT_DIR = BENCH_DIR.parent
SPARE_FILES = 256  # files a process needs besides the row's sockets (libraries, logs, pipes)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/inflight.py",
        description="N requests in flight on a D ms upstream: straight, then through the proxy.",
    )
    add = parser.add_argument
    add("--conc", type=int, default=4096, help="requests in flight (wrk connections) [4096]")
    add("--delay-ms", type=float, default=2000.0, help="the upstream's time per answer [2000]")
    add("--duration", type=float, default=25.0, help="seconds per side [25]")
    add(
        "--warmup",
        type=float,
        default=10.0,
        help="the steady figures count from this many seconds into each side on [10; 0: none]",
    )
    add("--config", type=Path, default=BENCH_DIR / "proxy_config.yaml", help="the proxy's config")
    add(
        "--compare-config",
        type=Path,
        help="then the same row through the proxy with this config (e.g. a pool cap), same run",
    )
    add(
        "--compare-cmd",
        help="the compared proxy's command instead of ours (e.g. an older checkout's "
        "`sh -c 'cd /tmp/base && exec .venv/bin/python -m app \"$@\"' sh`); `serve --config "
        "... --port ...` is appended",
    )
    add("--compare-label", help="its name in the table [with <file name>]")
    add("--slow-port", type=int, default=0, help="[0: a free port]")
    add("--proxy-port", type=int, default=0, help="[0: a free port]")
    add("--quiet-wait", type=float, default=30.0, help="wait up to S s for other CPU use < 10 %%")
    add("--out", type=Path, help="results folder [/tmp/custom-llm-proxy-bench/inflight-<time>]")
    args = parser.parse_args(argv)
    taken = {args.slow_port, args.proxy_port} - {0}
    for option in ("slow_port", "proxy_port"):
        if getattr(args, option) == 0:
            port = procs.free_port(avoid=taken)
            setattr(args, option, port)
            taken.add(port)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out = (args.out or Path("/tmp/custom-llm-proxy-bench") / f"inflight-{stamp}").resolve()
    args.config = args.config.resolve()
    if args.compare_config is not None:
        args.compare_config = args.compare_config.resolve()
    return args


def raise_open_files(needed: int) -> tuple[int, int]:
    """Soft open-file limit up to the hard one (children inherit it); (before, after).

    Every process of the row holds one socket per connection, the proxy two."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SetupError(
            f"the open-file hard limit is {hard}, the proxy needs about {needed} for this row "
            "(raise it, e.g. `ulimit -Hn` as root, or lower --conc)"
        )
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


class InFlight:
    """One run: the upstream, the direct row, the proxy and its row."""

    def __init__(self, args: argparse.Namespace, servers: Servers) -> None:
        self.args = args
        self.servers = servers
        self.layout: Layout
        self.layout, self.layout_note = choose_layout(1)
        self.rows: list[Row] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        # bench/proxy_config.yaml's llama-slow; llama (nginx) is not used and never connected.
        self.env.update(
            BENCH_SLOW_PORT=str(args.slow_port),
            BENCH_SLOW_URL=f"http://127.0.0.1:{args.slow_port}/",
        )
        self.files = (0, 0)

    def run(self) -> int:
        args = self.args
        (args.out / "wrk").mkdir(parents=True, exist_ok=True)
        self.files = raise_open_files(2 * args.conc + SPARE_FILES)
        os.sched_setaffinity(0, self.layout.load_cpus)  # the harness stays off the proxy's CPU
        print(f"results -> {args.out}\nlayout: {self.describe_layout()}", flush=True)
        self.start_upstream()
        slow = f"http://127.0.0.1:{args.slow_port}/"
        self.measure(Scenario("direct", "slow", args.conc, slow, "llama-slow"), None)
        proxies = [self.measure_proxy("proxy", "custom-llm-proxy", args.config, _proxy_command())]
        if args.compare_config is not None:
            label = args.compare_label or f"with {args.compare_config.name}"
            command = shlex.split(args.compare_cmd) if args.compare_cmd else _proxy_command()
            proxies.append(self.measure_proxy("compare", label, args.compare_config, command))
        self.servers.stop_all()
        add_ratios(self.rows, ideal_rps(args))
        table = render_table(self.header(), self.rows, proxies)
        print("\n" + table, end="")
        path = write_results(args.out, self.meta(), self.rows, proxies, table)
        print(f"written: {path} and table.txt")
        found = report.problems(self.rows)
        for problem in found:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        return 1 if found else 0

    def start_upstream(self) -> None:
        argv = [sys.executable, str(BENCH_DIR / "slow_upstream.py")]
        argv += [f"--port={self.args.slow_port}", f"--delay-ms={self.args.delay_ms:g}"]
        argv += [f"--backlog={max(self.args.conc, 4096)}"]
        server = self.servers.start("slow_upstream", argv, self.layout.load_cpus, self.env)
        url = f"http://127.0.0.1:{self.args.slow_port}/"
        procs.wait_until(
            functools.partial(answers, url, b"{}", {}, ANSWER),
            deadline_s=30 + self.args.delay_ms / 1000,
            what=f"waiting for the slow upstream to answer at {url}",
            server=server,
        )

    def measure_proxy(
        self, target: str, label: str, config: Path, command: list[str]
    ) -> report.ProxyRun:
        """Start `COMMAND serve --config CONFIG` on the proxy CPU, measure its row, stop it."""
        argv = [*command, "serve", "--config", str(config)]
        argv += ["--port", str(self.args.proxy_port)]
        proxy = report.ProxyRun(
            label,
            " ".join(argv),
            f"http://127.0.0.1:{self.args.proxy_port}",
            procs.cpu_list(self.layout.proxy_cpus),
        )
        if not procs.port_is_free(self.args.proxy_port):
            raise SetupError(f"port {self.args.proxy_port} is in use")
        server = self.servers.start(target, argv, self.layout.proxy_cpus, self.env)
        chat = proxy.url + "/v1/chat/completions"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        procs.wait_until(
            lambda: answers(chat, _chat_body("llama-slow"), auth, b"ARIS"),
            deadline_s=120 + self.args.delay_ms / 1000,
            what=f"waiting for the proxy's first 200 at {chat}",
            server=server,
        )
        proxy.startup_s = round(time_since(server), 3)
        proxy.rss_idle_bytes = procs.memory_bytes(procs.tree_pids(server.pid))
        print(f"{label} ready after {proxy.startup_s:.2f} s", flush=True)
        self.measure(Scenario(target, "slow", self.args.conc, chat, "llama-slow"), server)
        pids = procs.tree_pids(server.pid)
        proxy.rss_after_bytes = procs.memory_bytes(pids)
        proxy.rss_peak_bytes = procs.memory_bytes(pids, "VmHWM")
        self.servers.stop(server)
        return proxy

    def measure(self, scenario: Scenario, server: Server | None) -> None:
        foreign = wait_quiet(self.layout, self.servers.pgids(), self.args.quiet_wait)
        if foreign >= NOISY_PCT:
            print(f"  other processes use {foreign:.0f} % of a core; measuring anyway")
        row = run_row(
            scenario,
            duration_s=self.args.duration,
            layout=self.layout,
            pgids=self.servers.pgids(),
            measured_root=server.pid if server else None,
            raw_path=self.args.out / "wrk" / f"{scenario.target}-c{scenario.conc}.txt",
            warmup_s=self.args.warmup,
            period_s=self.args.delay_ms / 1000,
        )
        if server is not None and not server.alive():
            raise SetupError(f"{server.name} died during {scenario.name}:\n{server.log_tail()}")
        self.rows.append(row)
        steady = row.extra.get("steady_rps")
        print(
            f"  {row.scenario:<16} c={row.conc:<5} {row.rps:>9,.1f} rps"
            + ("" if steady is None else f" (steady {steady:,.1f})")
            + f"  p50 {row.p50_ms:.0f} ms  p99 {row.p99_ms:.0f} ms  errors {row.errors}",
            flush=True,
        )

    def describe_layout(self) -> str:
        load = procs.cpu_list(self.layout.load_cpus)
        proxy = procs.cpu_list(self.layout.proxy_cpus)
        return (
            f"wrk, slow upstream and this harness on CPU {load}; proxy (1 worker) on CPU {proxy}"
            f" — {self.layout_note}"
        )

    def header(self) -> list[str]:
        a = self.args
        soft, hard = self.files
        lines = [
            f"# custom-llm-proxy in flight  {_now()}  {_machine()}",
            f"# {self.describe_layout()}",
            f"# {a.conc} in flight x {a.delay_ms:g} ms upstream (ideal {ideal_rps(a):,.0f} rps), "
            f"{a.duration:g} s per side; proxy config {a.config.name}; API key on; wrk -t1 "
            f"closed loop; open files soft limit {soft} -> {hard}",
            "# whole run: from wrk's start, when its N connections start together and come back "
            "in waves;"
            if a.warmup
            else "# whole run only (--warmup 0)",
        ]
        if a.warmup:
            lines.append(
                f"# steady: from the first whole second {a.warmup:g} s in, whole upstream periods "
                "(answers come in waves of that period) to the end"
            )
        return lines

    def meta(self) -> dict[str, object]:
        a = self.args
        return {
            "created": _now(),
            "machine": _machine(),
            "layout": {
                "load_cpus": list(self.layout.load_cpus),
                "proxy_cpus": list(self.layout.proxy_cpus),
                "shared": self.layout.shared,
                "note": self.layout_note,
            },
            "settings": {
                "conc": a.conc,
                "delay_ms": a.delay_ms,
                "duration_s": a.duration,
                "warmup_s": a.warmup,
                "config": str(a.config),
                "compare_config": None if a.compare_config is None else str(a.compare_config),
                "open_files": {"soft_before": self.files[0], "soft": self.files[1]},
            },
        }


# ---------------------------------------------------------------- the report
# Its own, small: only `report.ProxyRun` and `report.problems` are shared with bench/run.py.


def add_ratios(rows: list[Row], ideal: float) -> None:
    """Each row's `extra`: ideal_rps, pct_of_ideal; vs_direct_pct (and steady_vs_direct_pct
    with a warm-up); ours: vs_compare (and steady_vs_compare)."""
    direct = next((row for row in rows if row.target == "direct"), None)
    compare = next((row for row in rows if row.target == "compare"), None)
    for row in rows:
        row.extra["ideal_rps"] = round(ideal, 1)
        row.extra["pct_of_ideal"] = round(100 * row.rps / ideal, 1)
        if row.target != "direct" and direct is not None:
            _ratio(row, direct, "vs_direct_pct", 100, 2)
        if row.target == "proxy" and compare is not None:
            _ratio(row, compare, "vs_compare", 1, 2)


def _ratio(row: Row, base: Row, name: str, scale: float, digits: int) -> None:
    """row ÷ base, whole run and steady part (when both rows have one)."""
    if base.rps > 0:
        row.extra[name] = round(scale * row.rps / base.rps, digits)
    steady, base_steady = row.extra.get("steady_rps"), base.extra.get("steady_rps")
    if steady is not None and base_steady:
        row.extra[f"steady_{name}"] = round(scale * steady / base_steady, digits)


_COLUMNS = (
    ("row", "<32"),
    ("vs direct", ">9"),
    ("steady vs direct", ">16"),
    ("vs compare", ">10"),
    ("steady vs compare", ">17"),
    ("rps", ">7"),
    ("steady rps", ">10"),
    ("p50 ms", ">8"),
    ("p99 ms", ">8"),
    ("errors", ">6"),
    ("cpu ms/req", ">10"),
    ("steady cpu ms/req", ">17"),
)


def _cells(row: Row, labels: dict[str, str]) -> list[str]:
    extra = row.extra

    def shown(value: float | None, fmt: str, unit: str = "") -> str:
        return "–" if value is None else f"{value:{fmt}}{unit}"

    return [
        f"{labels.get(row.target, row.target)} → {row.upstream}",
        shown(extra.get("vs_direct_pct"), ".1f", " %"),
        shown(extra.get("steady_vs_direct_pct"), ".1f", " %"),
        shown(extra.get("vs_compare"), ".2f", "×"),
        shown(extra.get("steady_vs_compare"), ".2f", "×"),
        f"{row.rps:,.0f}",
        shown(extra.get("steady_rps"), ",.0f"),
        f"{row.p50_ms:,.0f}",
        f"{row.p99_ms:,.0f}",
        str(row.errors),
        shown(row.proxy_cpu_ms_per_request, ".3f"),
        shown(extra.get("steady_cpu_ms_per_request"), ".3f"),
    ]


def _notes(row: Row) -> str:
    busy = "/".join(f"{value:.0f}" for value in row.cpu_busy_pct.values())
    notes = [
        f"{row.extra['pct_of_ideal']:.0f} % of ideal",
        f"cpu{'/'.join(row.cpu_busy_pct)} {busy} % busy",
    ]
    if row.proxy_cpu_pct is not None:
        notes.append(f"proxy {row.proxy_cpu_pct:.0f} % CPU")
    if row.noise_pct >= NOISY_PCT:
        notes.append(f"NOISY: {row.noise_pct:.0f} % CPU used by others")
    steady_noise = row.extra.get("steady_noise_pct")
    if steady_noise is not None and steady_noise >= NOISY_PCT:
        notes.append(f"steady part NOISY: {steady_noise:.0f} %")
    return ", ".join(notes)


def render_table(header: list[str], rows: list[Row], proxies: list[report.ProxyRun]) -> str:
    """Header lines, one line per row (ratios first), then each proxy's memory."""
    labels = dict(zip(("proxy", "compare"), (proxy.label for proxy in proxies), strict=False))
    lines = [*header, "  ".join(format(name, fmt) for name, fmt in _COLUMNS) + "  notes"]
    for row in rows:
        cells = zip(_cells(row, labels), _COLUMNS, strict=True)
        lines.append("  ".join(format(cell, fmt) for cell, (_, fmt) in cells) + "  " + _notes(row))
    for proxy in proxies:
        lines.append(
            f"{proxy.label}: start to first 200 {proxy.startup_s or 0:.2f} s; RSS (process tree) "
            f"idle {_mib(proxy.rss_idle_bytes)}, after the row {_mib(proxy.rss_after_bytes)}, "
            f"peak {_mib(proxy.rss_peak_bytes)}"
        )
    lines += [
        "vs direct = rps ÷ the direct row's, same run; vs compare = ours ÷ the compared config's;",
        "steady = the same over the steady window (whole upstream periods after the warm-up,",
        "from wrk's per-second counts of good answers); the whole run's figures come first;",
        "rps = 2xx answers a second with a right body (every body checked); errors = non-2xx +",
        "wrong bodies + socket errors/timeouts; cpu ms/req = the proxy's process tree per answer.",
    ]
    return "\n".join(lines) + "\n"


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / report.MIB:.0f} MiB"


def write_results(
    out: Path,
    meta: dict[str, object],
    rows: list[Row],
    proxies: list[report.ProxyRun],
    table: str,
) -> Path:
    """table.txt and results.json in `out`; returns the JSON's path."""
    (out / "table.txt").write_text(table)
    path = out / "results.json"
    document = {
        **meta,
        "proxies": [dataclasses.asdict(proxy) for proxy in proxies],
        "rows": [row.as_json() for row in rows],
        "problems": report.problems(rows),
        "table": table.splitlines(),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def ideal_rps(args: argparse.Namespace) -> float:
    return float(args.conc / (args.delay_ms / 1000))


def time_since(server: Server) -> float:
    return time.monotonic() - server.started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if not procs.port_is_free(args.slow_port):
            raise SetupError(f"port {args.slow_port} is in use")
        (args.out / "logs").mkdir(parents=True, exist_ok=True)
        with Servers(args.out / "logs", cwd=PROJECT_DIR) as servers:
            return InFlight(args, servers).run()
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
