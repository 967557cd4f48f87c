"""Benchmark of custom-llm-proxy against the upstream it sits in front of, measured in one run.

    .venv/bin/python bench/run.py                 # the full matrix, 15 s per row (about 3 minutes)
    .venv/bin/python bench/run.py --smoke         # a few seconds; exit 1 if any answer was wrong
    .venv/bin/python bench/run.py --compare-cmd 'CMD' --compare-url http://127.0.0.1:PORT
    .venv/bin/python bench/run.py --yardstick  # next to bench/prototype.py (the issue's yardstick)
    .venv/bin/python bench/run.py --floor forwarder   # next to a bare floor (bench/floors.py)
    .venv/bin/python bench/run.py --with-floor --compare-cmd 'CMD' --compare-url URL  # both

What one run does (see bench/README.md):
1. starts nginx (a fixed custom-format answer from memory, the zero-cost upstream) and
   bench/slow_upstream.py (the same answer after --slow-ms), both pinned with wrk to the load CPU;
2. starts `custom-llm-proxy serve --config bench/proxy_config.yaml` (API keys on) alone on the
   proxy CPU and records its start time and RSS; then, one at a time on the same CPU, the
   forwarder floor (--with-floor, bench/floors.py) and the compared proxy (--compare-cmd);
3. measures each scenario straight to the upstream (the baseline), then through each proxy in
   turn, so that the rows a ratio divides are measured seconds apart;
4. prints the report, ratios to the baselines of the run first, then the measured figures, and
   writes it (table.txt, table.md, results.json), the logs and raw wrk output to --out.
Every process it starts has its own process group and is stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import functools
import http.client
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import procs
import report
from load import BENCH_DIR, NOISY_PCT, Layout, Row, Scenario, mean_row, run_row, wait_quiet
from procs import Server, Servers, SetupError
from slow_upstream import ANSWER

PROJECT_DIR = BENCH_DIR.parent
API_KEY = "sk-bench-1234"
WARMUP_S = 2.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark custom-llm-proxy next to its direct-to-upstream baseline.",
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="2 s rows at c=16,64 + stream + slow at c=64")
    add("--duration", type=float, help="seconds per row [15; smoke 2]")
    add("--conc", help="concurrencies of the nginx rows, comma-separated [1,16,64; smoke 16,64]")
    add("--slow-conc", type=int, help="concurrency of the slow-upstream rows [256; smoke 64]")
    add("--slow-ms", type=float, default=50.0, help="latency of the slow upstream [50]")
    add("--stream-conc", type=int, default=16, help="concurrency of the stream row [16]")
    add("--workers", type=int, default=1, help="proxy worker processes [1]")
    add("--loop", choices=("uvloop", "asyncio"), help="the proxy's event loop (PROXY_LOOP)")
    add("--compare-cmd", help="command that starts another proxy to measure in the same run")
    add("--compare-url", help="its base URL, e.g. http://127.0.0.1:14000")
    add("--compare-label", default="compare", help="its name in the table [compare]")
    add(
        "--yardstick",
        action="store_true",
        help="compare with bench/prototype.py, the bare FastAPI + aiohttp proxy the performance "
        "issue's targets were set against (instead of --compare-cmd)",
    )
    add(
        "--floor",
        choices=("asgi", "forwarder"),
        help="compare with a bare app on the proxy's server (asgi) or server and upstream client "
        "(forwarder), from bench/floors.py (instead of --compare-cmd)",
    )
    add(
        "--with-floor",
        action="store_true",
        help="also measure the forwarder floor (bench/floors.py forwarder) in the run, each row "
        "right after ours, for the 'rps ÷ floor' and 'CPU ÷ floor' ratios",
    )
    add("--nginx-port", type=int, default=0, help="[0: a free port]")
    add("--slow-port", type=int, default=0, help="[0: a free port]")
    add("--proxy-port", type=int, default=0, help="[0: a free port]")
    add("--ready-timeout", type=float, default=120.0, help="seconds to wait for a proxy [120]")
    add(
        "--quiet-wait",
        type=float,
        help="before a row, wait up to S s for other CPU use < 10 %% [30; smoke 0]",
    )
    add("--retries", type=int, help="measure a noisy row again up to N times [1; smoke 0]")
    add(
        "--rounds",
        type=int,
        default=1,
        help="measure each proxy's row N times, the order of the proxies reversed every other "
        "round (2: ABBA, so that neither proxy gains from going second), and report their mean [1]",
    )
    add("--out", type=Path, help="results folder [/tmp/custom-llm-proxy-bench/<UTC time>]")
    args = parser.parse_args(argv)
    if bool(args.compare_cmd) != bool(args.compare_url):
        parser.error("--compare-cmd and --compare-url go together")
    for url in filter(None, [args.compare_url]):
        if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
            parser.error(f"the compared proxy must listen on loopback: {url}")
    args.duration = args.duration or (2.0 if args.smoke else 15.0)
    args.conc = [int(c) for c in (args.conc or ("16,64" if args.smoke else "1,16,64")).split(",")]
    args.slow_conc = args.slow_conc or (64 if args.smoke else 256)
    args.quiet_wait = (0.0 if args.smoke else 30.0) if args.quiet_wait is None else args.quiet_wait
    args.retries = (0 if args.smoke else 1) if args.retries is None else args.retries
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    taken = {args.nginx_port, args.slow_port, args.proxy_port} - {0}
    for option in ("nginx_port", "slow_port", "proxy_port"):
        if getattr(args, option) == 0:
            port = procs.free_port(avoid=taken)
            setattr(args, option, port)
            taken.add(port)
    _compared_proxies(parser, args, taken)
    args.out = (args.out or Path("/tmp/custom-llm-proxy-bench") / stamp).resolve()
    return args


def _compared_proxies(
    parser: argparse.ArgumentParser, args: argparse.Namespace, taken: set[int]
) -> None:
    """The commands and URLs of --yardstick, --floor and --with-floor, on free ports."""
    builtin = [name for name in ("yardstick", "floor") if getattr(args, name)]
    if len(builtin) > 1 or (builtin and args.compare_cmd):
        parser.error("--yardstick, --floor and --compare-cmd each name the compared proxy: one")
    if args.with_floor and args.floor == "forwarder":
        parser.error("--floor forwarder already measures the forwarder floor; drop --with-floor")
    if builtin:
        port = procs.free_port(avoid=taken)
        taken.add(port)
        args.compare_url = f"http://127.0.0.1:{port}"
        if args.yardstick:
            args.compare_label = "prototype"
            program = str(BENCH_DIR / "prototype.py")
        else:
            args.compare_label = f"{args.floor} floor"
            program = _floor_program(args.floor, args.slow_ms)
        args.compare_cmd = _builtin_command(program, port)
    args.floor_url = args.floor_cmd = None
    if args.with_floor:
        port = procs.free_port(avoid=taken)
        args.floor_url = f"http://127.0.0.1:{port}"
        args.floor_cmd = _builtin_command(_floor_program("forwarder", args.slow_ms), port)


def _floor_program(floor: str, slow_ms: float) -> str:
    return f"{BENCH_DIR / 'floors.py'} {floor} --slow-ms {slow_ms:g}"


def _builtin_command(program: str, port: int) -> str:
    # bash -c expands the upstream URLs Bench puts in the environment.
    return (
        f"{sys.executable} {program} --port {port}"
        " --nginx-url $BENCH_NGINX_URL --slow-url $BENCH_SLOW_URL"
    )


def choose_layout(workers: int) -> tuple[Layout, str]:
    """Load on the first allowed CPU, the proxy on the next `workers` ones if there are enough."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 1 + workers:
        layout = Layout((allowed[0],), tuple(allowed[1 : 1 + workers]))
        return layout, "the proxy has its CPUs to itself"
    layout = Layout((allowed[0],), tuple(allowed))
    return layout, (
        f"SHARED: {workers} worker(s) need more CPUs than the {len(allowed)} here, so the proxy "
        "runs on all of them, next to wrk and the upstreams; its rps is lower than on cores "
        "of its own"
    )


class Bench:
    """One run of the matrix; `run()` returns the exit status."""

    def __init__(self, args: argparse.Namespace, servers: Servers) -> None:
        self.args = args
        self.servers = servers
        self.layout, self.layout_note = choose_layout(args.workers)
        self.rows: list[Row] = []
        self.proxies: list[report.ProxyRun] = []
        self.proxy_servers: list[Server] = []  # the proxies up now: idle but for the one measured
        self.started, self.load_at_start = _now(), _load_average()
        self.load_at_end = self.load_at_start  # read again once every server is stopped
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        # Where the proxies find the upstreams (bench/proxy_config.yaml, bench/litellm_config.yaml).
        self.env.update(
            BENCH_NGINX_PORT=str(args.nginx_port),
            BENCH_SLOW_PORT=str(args.slow_port),
            BENCH_NGINX_URL=f"http://127.0.0.1:{args.nginx_port}/",
            BENCH_SLOW_URL=f"http://127.0.0.1:{args.slow_port}/",
        )
        if args.loop:
            self.env["PROXY_LOOP"] = args.loop

    # ------------------------------------------------------------ upstreams and baseline

    def start_upstreams(self) -> None:
        nginx = start_nginx(
            self.servers,
            self.args.out / "nginx",
            self.args.nginx_port,
            self.layout.load_cpus,
            self.env,
        )
        slow = self.servers.start(
            "slow_upstream",
            [sys.executable, str(BENCH_DIR / "slow_upstream.py"), f"--port={self.args.slow_port}"]
            + [f"--delay-ms={self.args.slow_ms:g}"],
            self.layout.load_cpus,
            self.env,
        )
        for server, port in ((nginx, self.args.nginx_port), (slow, self.args.slow_port)):
            url = f"http://127.0.0.1:{port}/"
            procs.wait_until(
                functools.partial(answers, url, b"{}", {}, ANSWER),
                deadline_s=30,
                what=f"waiting for {server.name} to answer at {url}",
                server=server,
            )

    # ------------------------------------------------------------ proxies

    def start_proxies(self, proxy_argv: list[str]) -> list[tuple[report.ProxyRun, Server]]:
        """Ours, the floor (--with-floor) and the compared proxy, one after the other (each start
        timed alone), all left running: they are idle while another one is measured."""
        args = self.args
        cpus = procs.cpu_list(self.layout.proxy_cpus)
        ours = report.ProxyRun(
            "custom-llm-proxy", " ".join(proxy_argv), f"http://127.0.0.1:{args.proxy_port}", cpus
        )
        started = [(ours, self.start_proxy(ours, proxy_argv))]
        if args.with_floor:
            floor = report.ProxyRun("floor", args.floor_cmd, args.floor_url, cpus, target="floor")
            started.append(
                (floor, self.start_proxy(floor, ["bash", "-c", f"exec {floor.command}"]))
            )
        if args.compare_cmd:
            other = report.ProxyRun(
                args.compare_label, args.compare_cmd, args.compare_url, cpus, target="compare"
            )
            try:
                server = self.start_proxy(other, ["bash", "-c", f"exec {other.command}"])
            except SetupError as exc:  # still measure ours; exit 2 at the end
                self.compare_failed(other, exc)
            else:
                started.append((other, server))
        return started

    def start_proxy(self, proxy: report.ProxyRun, argv: list[str]) -> Server:
        """Start a proxy on the proxy CPUs, wait for its right answers, take its start and RSS."""
        port = int(proxy.url.rsplit(":", 1)[1])
        if not procs.port_is_free(port):
            raise SetupError(f"port {port} is in use; stop that process or pick another port")
        self.proxies.append(proxy)
        server = self.servers.start(proxy.target, argv, self.layout.proxy_cpus, self.env)
        self.proxy_servers.append(server)
        chat = proxy.url + "/v1/chat/completions"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        procs.wait_until(
            lambda: answers(chat, _chat_body("llama"), auth, b"ARIS"),
            deadline_s=self.args.ready_timeout,
            what=f"waiting for {proxy.label}'s first 200 at {chat}",
            server=server,
        )
        proxy.startup_s = round(time.monotonic() - server.started, 3)
        procs.wait_until(
            lambda: answers(chat, _chat_body("llama-slow"), auth, b"ARIS"),
            deadline_s=30,
            what=f"waiting for {proxy.label} to serve llama-slow",
            server=server,
        )
        if proxy.target == "proxy" and self.args.workers > 1:
            self.wait_workers(server)
        proxy.rss_idle_bytes = procs.memory_bytes(procs.tree_pids(server.pid))
        print(f"{proxy.label} ready after {proxy.startup_s:.2f} s", flush=True)
        if not self.args.smoke:  # warm-up: first connections, lazy imports, caches
            for model in ("llama", "llama-slow"):
                warmup = Scenario(proxy.target, "warmup", 16, chat, model)
                self.measure_once(warmup, WARMUP_S, server)
        return server

    def stop_proxy(self, proxy: report.ProxyRun, server: Server) -> None:
        pids = procs.tree_pids(server.pid)
        proxy.rss_after_bytes = procs.memory_bytes(pids)
        proxy.rss_peak_bytes = procs.memory_bytes(pids, "VmHWM")
        self.proxy_servers.remove(server)
        self.servers.stop(server)

    def compare_failed(self, proxy: report.ProxyRun, exc: SetupError) -> None:
        print(f"bench: the compared proxy failed: {exc}", file=sys.stderr)
        proxy.failure = f"{exc} (log: {self.args.out / 'logs' / 'compare.log'})"

    def wait_workers(self, server: Server) -> None:
        def all_started() -> bool | None:
            started = server.log_path.read_text(errors="replace").count("Application startup comp")
            return True if started >= self.args.workers else None

        procs.wait_until(all_started, deadline_s=60, what="waiting for every worker", server=server)

    # ------------------------------------------------------------ the matrix, interleaved

    def measure_matrix(self, started: list[tuple[report.ProxyRun, Server]]) -> None:
        """Each scenario straight to the upstream, then through each proxy, back to back: a
        ratio's two rows are seconds apart, not minutes, whatever the rest of the machine does.
        A compared proxy that dies is reported and left out of the rest."""
        args = self.args
        direct_s = 1.0 if args.smoke else args.duration
        # Unchecked in the full run: looking at every body costs wrk CPU and would lower the limit.
        check = args.smoke
        groups = [("nginx", conc, "llama", False) for conc in args.conc]
        groups.append(("slow", args.slow_conc, "llama-slow", False))
        groups.append(("nginx", args.stream_conc, "llama", True))
        for upstream, conc, model, stream in groups:
            if not stream or conc not in args.conc:  # the upstream does not stream
                url = f"http://127.0.0.1:{self.upstream_port(upstream)}/"
                self.measure(Scenario("direct", upstream, conc, url, check=check), direct_s)
            taken: dict[str, list[Row]] = {}
            for round_ in range(args.rounds):
                order = list(started) if round_ % 2 == 0 else list(reversed(started))
                for proxy, server in order:
                    chat = proxy.url + "/v1/chat/completions"
                    scenario = Scenario(proxy.target, upstream, conc, chat, model, stream)
                    try:
                        row = self.measure(scenario, args.duration, server, keep=False)
                    except SetupError as exc:
                        if proxy.target != "compare":
                            raise
                        self.compare_failed(proxy, exc)
                        started.remove((proxy, server))
                        self.proxy_servers.remove(server)
                        self.servers.stop(server)
                        taken.pop(proxy.target, None)
                        continue
                    taken.setdefault(proxy.target, []).append(row)
            self.rows.extend(mean_row(rows) for rows in taken.values())

    def upstream_port(self, upstream: str) -> int:
        return self.args.nginx_port if upstream == "nginx" else self.args.slow_port

    # ------------------------------------------------------------ rows

    def measure(
        self, scenario: Scenario, duration: float, server: Server | None = None, keep: bool = True
    ) -> Row:
        """Measure a row for the table (`keep`: add it now); a noisy one again (--retries),
        keeping the quietest."""
        row = None
        for attempt in range(1 + self.args.retries):
            wait_quiet(self.layout, self.servers.pgids(), self.args.quiet_wait)
            again = self.measure_once(scenario, duration, server, f"-try{attempt + 1}")
            if row is None or again.noise_pct < row.noise_pct:
                row = again
            row.extra["attempts"] = attempt + 1
            if row.noise_pct < NOISY_PCT:
                break
            print(f"  {scenario.name} c={scenario.conc}: {again.noise_pct:.0f} % foreign CPU")
        assert row is not None
        if keep:
            self.rows.append(row)
        cpu_ms = row.proxy_cpu_ms_per_request
        cpu = "" if cpu_ms is None else f", {cpu_ms} ms CPU/req"
        print(
            f"  {row.scenario:<24} c={row.conc:<4} {row.rps:>10,.1f} rps  p50 {row.p50_ms:.2f} ms"
            f"  p99 {row.p99_ms:.2f} ms  errors {row.errors}{cpu}",
            flush=True,
        )
        return row

    def measure_once(
        self, scenario: Scenario, duration: float, server: Server | None, tag: str = ""
    ) -> Row:
        """One wrk run; its raw output goes to OUT/wrk/<target>-<upstream>-c<conc>[-stream]<tag>."""
        stream = "-stream" if scenario.stream else ""
        name = f"{scenario.target}-{scenario.upstream}-c{scenario.conc}{stream}{tag}.txt"
        raw = self.args.out / "wrk" / name
        # The proxies not measured in this row should be idle: what they use is written down.
        idle = [other.pid for other in self.proxy_servers if other is not server]
        idle_before, started = procs.group_cpu_seconds(idle), time.monotonic()
        row = run_row(
            scenario,
            duration_s=duration,
            layout=self.layout,
            pgids=self.servers.pgids(),
            measured_root=server.pid if server else None,
            raw_path=raw,
        )
        if idle:
            spent = procs.group_cpu_seconds(idle) - idle_before
            row.extra["idle_proxies_cpu_pct"] = round(100 * spent / (time.monotonic() - started), 1)
        if server is not None and not server.alive():
            raise SetupError(f"{server.name} died during {scenario.name}:\n{server.log_tail()}")
        return row

    # ------------------------------------------------------------ the whole run

    def run(self) -> int:
        args = self.args
        (args.out / "wrk").mkdir(parents=True, exist_ok=True)
        os.sched_setaffinity(0, self.layout.load_cpus)  # the harness stays off the proxy's CPUs
        print(f"results -> {args.out}\nlayout: {self.describe_layout()}", flush=True)
        self.start_upstreams()
        proxy_argv = [*_proxy_command(), "serve", "--config", str(BENCH_DIR / "proxy_config.yaml")]
        proxy_argv += ["--port", str(args.proxy_port), "--workers", str(args.workers)]
        started = self.start_proxies(proxy_argv)
        self.measure_matrix(started)
        for proxy, server in started:
            self.stop_proxy(proxy, server)
        self.servers.stop_all()
        self.load_at_end = _load_average()
        found_ratios = report.ratios(self.rows, args.slow_ms)
        path, table = report.write_results(
            args.out, self.meta(), self.rows, self.proxies, found_ratios, self.header()
        )
        print("\n" + table, end="")
        print(f"written: {path}, table.txt and table.md")
        found = report.problems(self.rows)
        for problem in found:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        compare_failed = any(p.failure for p in self.proxies if p.target == "compare")
        return 1 if found else 2 if compare_failed else 0

    def describe_layout(self) -> str:
        load = procs.cpu_list(self.layout.load_cpus)
        proxy = procs.cpu_list(self.layout.proxy_cpus)
        return (
            f"wrk, nginx, slow upstream and this harness on CPU {load}; proxy "
            f"({self.args.workers} worker{'s' if self.args.workers > 1 else ''}) on CPU {proxy}"
            f" — {self.layout_note}"
        )

    def header(self) -> list[str]:
        a = self.args
        noisy = sum(row.noise_pct >= NOISY_PCT for row in self.rows)
        return [
            f"# custom-llm-proxy benchmark  {self.started} to {_now()}  {_machine()}",
            f"# {self.describe_layout()}",
            f"# {a.duration:g} s per row{' (smoke)' if a.smoke else ''}; slow upstream "
            f"{a.slow_ms:g} ms; API key on; wrk -t1 closed loop; {_versions()}",
            f"# load average (1/5/15 min) {self.load_at_start} at the start, {self.load_at_end} "
            f"at the end; {noisy} of {len(self.rows)} rows NOISY",
        ]

    def meta(self) -> dict[str, Any]:
        a = self.args
        return {
            "created": _now(),
            "started": self.started,
            "load_average": {"start": self.load_at_start, "end": self.load_at_end},
            "machine": _machine(),
            "versions": _versions(),
            "layout": {
                "load_cpus": list(self.layout.load_cpus),
                "proxy_cpus": list(self.layout.proxy_cpus),
                "shared": self.layout.shared,
                "note": self.layout_note,
            },
            "settings": {
                "smoke": a.smoke,
                "duration_s": a.duration,
                "conc": a.conc,
                "slow_conc": a.slow_conc,
                "slow_ms": a.slow_ms,
                "stream_conc": a.stream_conc,
                "workers": a.workers,
                "with_floor": a.with_floor,
            },
        }


def _chat_body(model: str) -> bytes:
    return (
        b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", '
        b'"content": "The capital of France is P"}], "max_tokens": 32}'
    )


def start_nginx(
    servers: Servers, prefix: Path, port: int, cpus: Sequence[int], env: dict[str, str]
) -> Server:
    """nginx answering every POST on `port` with the fixed custom-format ANSWER."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    template = (BENCH_DIR / "nginx.conf.template").read_text()
    conf = template.replace("@PORT@", str(port))
    (prefix / "nginx.conf").write_text(conf.replace("@ANSWER@", ANSWER.decode()))
    return servers.start(
        "nginx",
        ["nginx", "-e", "stderr", "-p", f"{prefix}/", "-c", "nginx.conf", "-g", "daemon off;"],
        cpus,
        env,
    )


def answers(url: str, body: bytes, headers: dict[str, str], expected: bytes) -> bool | None:
    """True once `url` answers a POST with 200 and a body containing `expected`."""
    try:
        status, answer = procs.post(url, body, headers, timeout_s=5)
    except (OSError, http.client.HTTPException):
        return None
    return True if status == 200 and expected in answer else None


def _proxy_command() -> list[str]:
    script = Path(sys.executable).parent / "custom-llm-proxy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB, Linux {platform.release()}"


def _versions() -> str:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    wrk = first_line(["wrk", "-v"]).split(" [")[0]
    nginx = first_line(["nginx", "-v"]).removeprefix("nginx version: ")
    return f"Python {platform.python_version()} from {sys.base_prefix}, {wrk}, {nginx}"


def _check_tools(args: argparse.Namespace) -> None:
    missing = [tool for tool in ("wrk", "nginx", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SetupError(
            f"missing: {', '.join(missing)} (Debian/Ubuntu: apt-get install nginx wrk util-linux)"
        )
    for port in (args.nginx_port, args.slow_port):
        if not procs.port_is_free(port):
            raise SetupError(f"port {port} is in use (an earlier run still going?)")


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:  # noqa: ARG001
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _check_tools(args)
        # The proxy's modules byte-compiled, as pip leaves an installed package (and the image):
        # start-up is then measured as deployed, even where PYTHONDONTWRITEBYTECODE is set and a
        # checkout would compile every module again at every start (90 ms on this machine).
        compileall.compile_dir(PROJECT_DIR / "app", quiet=1)
        with Servers(_log_dir(args.out), cwd=PROJECT_DIR) as servers:
            return Bench(args, servers).run()
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


def _log_dir(out: Path) -> Path:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    return out / "logs"


if __name__ == "__main__":
    sys.exit(main())
