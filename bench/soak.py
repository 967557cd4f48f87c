"""Fault soak: many OpenAI SDK clients against one model whose deployments misbehave.

    .venv/bin/python bench/soak.py                              # 30 s, 32 clients
    .venv/bin/python bench/soak.py --duration 8 --clients 16    # the CI form (tests/bench)
    .venv/bin/python bench/soak.py --duration 600 --clients 64 --json soak.json

One run (see bench/README.md, "Fault soak"):
1. starts three `python -m app mock-upstream` processes on free loopback ports: `healthy`
   (5-30 ms), `flapping` (the same, and half the requests answered 500, 502 or 503) and
   `hanging` (never answers), and the proxy with model `soak` on the three of them (least-busy,
   2 retries, read timeouts retried, 1 s timeout on the hanging one, cooldown after 3 failures);
2. runs `--clients` concurrent `openai.AsyncOpenAI` clients (no SDK retries) for `--duration`
   seconds: chat completions, streamed chat read through the SDK's stream, streamed chat read
   line by line (so a stream cut before `data: [DONE]` is seen), legacy completions;
3. SIGKILLs the flapping upstream at 40 % of the duration and starts it again on the same port
   at 60 % (polling until it answers);
4. samples the proxy's RSS before the load, every second during it and after it;
5. prints the report and, with `--json`, writes it as JSON.

Every request ends as one of: succeeded (a valid answer with text; a stream with a
finish_reason and, where read raw, `data: [DONE]` last), failed with a proper OpenAI error (an
HTTP error whose body is the envelope {"error": {"message", "type", "param", "code"}}, or that
envelope in-band in a stream), or lost (anything else: connection errors, client timeouts,
invalid bodies, cut streams, a missing envelope). A healthy deployment is always there, so the
exit status is 1 when anything was lost or fewer than 99.9 % succeeded; 2 when the setup failed,
3 past the hard deadline, 130 on Ctrl-C. Every process it starts is stopped in all cases.

The requests and their classification are in soak_requests.py, the report in soak_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import openai
import procs
from procs import Server, SetupError
from soak_report import format_report, log_findings, percentile, rss_summary
from soak_requests import KINDS, MODEL, Outcome, Verdict, lost, send

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
API_KEY = "sk-soak-1"
MIN_SUCCESS_RATE = 0.999
KILL_AT, RESTART_AT = 0.4, 0.6  # fractions of the duration
CLIENT_TIMEOUT_S = 30.0  # far above the model's deadline: a client timeout is a lost request
READY_DEADLINE_S = 60.0

UPSTREAMS: dict[str, list[str]] = {
    "healthy": ["--latency", "uniform:5-30"],
    "flapping": ["--latency", "uniform:5-30", "--error-rate", "0.5"]
    + ["--error-status", "500", "--error-status", "502", "--error-status", "503"],
    "hanging": ["--fault", "hang"],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/soak.py",
        description="Fault soak: OpenAI SDK clients against a model with a healthy, a flapping "
        "and a hanging deployment; the flapping one is killed and restarted mid-run.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=30.0, help="seconds of load [30]")
    add("--clients", type=int, default=32, help="concurrent SDK clients [32]")
    add("--seed", type=int, default=1, help="seeds the request mix and the upstreams' draws [1]")
    add("--json", type=Path, help="also write the report as JSON to this file")
    add("--out", type=Path, help="folder for the config and logs [a new one under /tmp]")
    add("--hard-deadline", type=float, help="seconds for the whole run [duration + 120]")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.clients < 1:
        parser.error("--duration must be > 0 and --clients >= 1")
    args.hard_deadline = args.hard_deadline or args.duration + CLIENT_TIMEOUT_S + 90.0
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="custom-llm-proxy-soak-"))).resolve()
    return args


# ---------------------------------------------------------------- processes


class Fleet:
    """The processes of one run, each in its own process group; all stopped by `stop_all`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: dict[str, Server] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        self.env["PYTHONUNBUFFERED"] = "1"

    def start(self, name: str, argv: Sequence[str], log_name: str | None = None) -> Server:
        log_path = self.log_dir / f"{log_name or name}.log"
        log = log_path.open("wb")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=PROJECT_DIR,
                start_new_session=True,  # its own group: only what we started is signalled
            )
        except BaseException:
            log.close()
            raise
        server = Server(name, process, log_path, time.monotonic(), log)
        self.servers[name] = server
        return server

    def kill(self, name: str) -> None:
        """SIGKILL the server's group (no chance to close anything cleanly), then reap it."""
        server = self.servers.pop(name)
        with contextlib.suppress(ProcessLookupError):  # it died by itself already
            os.killpg(server.pid, signal.SIGKILL)
        server.stop()  # reaps the leader, waits for the group to be gone, closes the log

    def stop_all(self) -> None:
        for name in reversed(list(self.servers)):
            self.servers.pop(name).stop()


def get_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any] | None:
    """GET on a fresh connection: (status, parsed body), or None when nothing answered."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request("GET", "/" + path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def wait_answering(url: str, server: Server, what: str) -> None:
    procs.wait_until(
        lambda: True if (got := get_json(url)) and got[0] == 200 else None,
        deadline_s=READY_DEADLINE_S,
        what=what,
        server=server,
    )


@dataclass
class Setup:
    ports: dict[str, int]
    proxy: Server
    proxy_url: str
    config_path: Path

    def upstream_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def upstream_argv(name: str, port: int, seed: int) -> list[str]:
    return ["mock-upstream", "--port", str(port), "--seed", str(seed), *UPSTREAMS[name]]


def proxy_config(ports: dict[str, int]) -> dict[str, Any]:
    def deployment(name: str, **extra: Any) -> dict[str, Any]:
        return {"api_base": f"http://127.0.0.1:{ports[name]}/inference", **extra}

    return {
        "api_keys": [API_KEY],
        "stream_keepalive_seconds": 0.5,  # streams held by the hanging one start with keep-alives
        "connect_timeout": 1.0,
        "models": [
            {
                "name": MODEL,
                "upstream_model": "demo",
                "routing": "least-busy",
                "max_retries": 2,
                "retry_read_timeouts": True,
                "deadline": 10.0,
                "timeout": 5.0,
                "cooldown": {"failures": 3, "seconds": 2.0},
                "deployments": [
                    deployment("healthy"),
                    deployment("flapping"),
                    deployment("hanging", timeout=1.0),
                ],
            }
        ],
    }


def start_all(args: argparse.Namespace, fleet: Fleet) -> Setup:
    """The three upstreams and the proxy, each answering."""
    ports: dict[str, int] = {}
    for name in (*UPSTREAMS, "proxy"):
        ports[name] = procs.free_port(avoid=set(ports.values()))
    for offset, name in enumerate(UPSTREAMS):
        server = fleet.start(name, upstream_argv(name, ports[name], args.seed + offset))
        wait_answering(f"http://127.0.0.1:{ports[name]}/_mock/stats", server, f"starting {name}")
    config_path = args.out / "soak.yaml"
    config_path.write_text(json.dumps(proxy_config(ports), indent=2))  # JSON is YAML
    argv = ["serve", "--config", str(config_path), "--port", str(ports["proxy"])]
    proxy = fleet.start("proxy", [*argv, "--host", "127.0.0.1"])
    proxy_url = f"http://127.0.0.1:{ports['proxy']}"
    wait_answering(f"{proxy_url}/health/ready", proxy, "starting the proxy")
    return Setup(ports, proxy, proxy_url, config_path)


def proxy_rss(setup: Setup) -> int:
    return procs.memory_bytes(procs.tree_pids(setup.proxy.pid))


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    """Every request of the run, by verdict and kind; latencies of the successes."""

    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    ok_latencies: list[float] = field(default_factory=list)
    in_flight: int = 0

    def record(self, kind: str, outcome: Outcome, seconds: float) -> None:
        self.by_kind.setdefault(kind, Counter())[outcome.verdict] += 1
        if outcome.verdict == "ok":
            self.ok_latencies.append(seconds)
        elif outcome.verdict == "error":
            self.errors[outcome.detail] += 1
        else:
            self.lost[outcome.detail[:300]] += 1

    def count(self, verdict: Verdict) -> int:
        return sum(counts[verdict] for counts in self.by_kind.values())


@dataclass
class Run:
    """What happens during the load, besides the requests."""

    started: float
    tally: Tally = field(default_factory=Tally)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    flapping_stats_before_kill: Any = None
    restart_answered_after_s: float | None = None
    cpu_share: dict[str, float] = field(default_factory=dict)  # of one core, over the load

    def note(self, text: str) -> None:
        self.events.append((time.monotonic() - self.started, text))


def new_client(setup: Setup) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{setup.proxy_url}/v1", api_key=API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


async def client_loop(
    index: int, client: openai.AsyncOpenAI, run: Run, seed: int, end: float
) -> None:
    rng = random.Random(f"{seed}:{index}")
    names = list(KINDS)
    weights = [share for _, share in KINDS.values()]
    number = 0
    while time.monotonic() < end:
        number += 1
        kind = rng.choices(names, weights)[0]
        prompt = f"Soak client {index}, request {number}: say something."
        began = time.monotonic()
        run.tally.in_flight += 1
        try:
            outcome = await send(client, kind, prompt, rng.randint(8, 32))
        finally:
            run.tally.in_flight -= 1
        run.tally.record(kind, outcome, time.monotonic() - began)


async def sample_rss(setup: Setup, run: Run, end: float) -> None:
    """One sample a second of the run's clock (the "before" sample is taken by `load`)."""
    tick = 1
    while (due := run.started + tick) < end:
        await asyncio.sleep(max(0.0, due - time.monotonic()))  # the sampling period
        run.rss_samples.append((time.monotonic() - run.started, proxy_rss(setup)))
        tick += 1


async def flap(fleet: Fleet, setup: Setup, run: Run, duration: float, seed: int) -> None:
    """Kill the flapping upstream at KILL_AT of the run, start it again at RESTART_AT."""
    # The run's schedule, not a wait for a condition:
    await asyncio.sleep(max(0.0, run.started + KILL_AT * duration - time.monotonic()))
    url = setup.upstream_url("flapping")
    stats = await asyncio.to_thread(kill_when_busy, fleet, f"{url}/_mock/stats")
    run.flapping_stats_before_kill = stats
    run.note(f"SIGKILL flapping ({stats and stats['in_flight']} requests in flight)")
    await asyncio.sleep(max(0.0, run.started + RESTART_AT * duration - time.monotonic()))
    argv = upstream_argv("flapping", setup.ports["flapping"], seed + 100)
    server = fleet.start("flapping", argv, log_name="flapping-restarted")
    run.note(f"restarted flapping (pid {server.pid})")
    began = time.monotonic()
    await asyncio.to_thread(wait_answering, f"{url}/_mock/stats", server, "restarting flapping")
    run.restart_answered_after_s = time.monotonic() - began
    run.note("flapping answers again")


def kill_when_busy(fleet: Fleet, stats_url: str, patience_s: float = 2.0) -> Any:
    """Kill the flapping upstream, preferably while it holds requests (it spends much of the
    run cooling down), so that the kill breaks some off. Its last stats, or None."""
    end = time.monotonic() + patience_s
    while True:
        got = get_json(stats_url)
        if (got is not None and got[1]["in_flight"] > 0) or time.monotonic() > end:
            break
        time.sleep(procs.POLL_S)  # the poll's period
    fleet.kill("flapping")
    return got[1] if got is not None else None


async def warm_up(client: openai.AsyncOpenAI) -> None:
    """One request of each kind, not counted: lazy imports and first connections."""
    for kind in KINDS:
        await send(client, kind, "warm-up", 8)


async def load(args: argparse.Namespace, fleet: Fleet, setup: Setup) -> Run:
    async with contextlib.AsyncExitStack() as stack:
        # Built before the clock starts: each takes a while (an SSL context, among others).
        clients = [await stack.enter_async_context(new_client(setup)) for _ in range(args.clients)]
        await warm_up(clients[0])
        run = Run(started=time.monotonic())
        run.rss_samples.append((0.0, proxy_rss(setup)))  # before the load
        cpu_before = cpu_seconds(setup)
        end = run.started + args.duration
        helpers = [
            asyncio.create_task(flap(fleet, setup, run, args.duration, args.seed)),
            asyncio.create_task(sample_rss(setup, run, end)),
        ]
        tasks = [
            asyncio.create_task(client_loop(i, client, run, args.seed, end))
            for i, client in enumerate(clients)
        ]
        await drain(run, [*helpers, *tasks], args.duration + CLIENT_TIMEOUT_S + 15.0)
    run.note("load over")
    elapsed = time.monotonic() - run.started
    cpu_after = cpu_seconds(setup)
    run.cpu_share = {who: (cpu_after[who] - cpu_before[who]) / elapsed for who in cpu_after}
    return run


def cpu_seconds(setup: Setup) -> dict[str, float]:
    """CPU time used so far by the clients (this process) and by the proxy."""
    own = os.times()
    return {
        "clients": own.user + own.system,
        "proxy": procs.cpu_seconds(procs.tree_pids(setup.proxy.pid)),
    }


async def drain(run: Run, tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    """Wait for the tasks; requests under way at the end finish, each within the client
    timeout. What is still in flight after `timeout_s` counts as lost."""
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    cut = run.tally.in_flight  # before the cancellations below take them off
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for _ in range(cut):
        run.tally.record("cut", lost("still in flight at the soak's drain deadline"), 0.0)
    for task in done:
        if (error := task.exception()) is not None:
            raise error


# ---------------------------------------------------------------- the report


def collect(args: argparse.Namespace, setup: Setup, run: Run) -> dict[str, Any]:
    tally = run.tally
    sent = sum(sum(counts.values()) for counts in tally.by_kind.values())
    succeeded, failed, lost_n = tally.count("ok"), tally.count("error"), tally.count("lost")
    rate = succeeded / sent if sent else 0.0
    ready = get_json(f"{setup.proxy_url}/health/ready")
    stats = {name: get_json(f"{setup.upstream_url(name)}/_mock/stats") for name in UPSTREAMS}
    restarted = run.restart_answered_after_s is not None
    report: dict[str, Any] = {
        "config": {
            "duration_s": args.duration,
            "clients": args.clients,
            "seed": args.seed,
            "model": MODEL,
            "deployments": list(UPSTREAMS),
            "kill_at": KILL_AT,
            "restart_at": RESTART_AT,
        },
        "sent": sent,
        "succeeded": succeeded,
        "failed_proper": failed,
        "lost": lost_n,
        "success_rate": rate,
        "by_kind": {kind: dict(counts) for kind, counts in sorted(tally.by_kind.items())},
        "errors": dict(tally.errors.most_common()),
        "lost_reasons": dict(tally.lost.most_common(20)),
        "latency_ms": {
            name: None if value is None else round(value * 1000, 1)
            for name, value in (
                ("p50", percentile(tally.ok_latencies, 0.50)),
                ("p99", percentile(tally.ok_latencies, 0.99)),
                ("max", percentile(tally.ok_latencies, 1.0)),
            )
        },
        "rss": rss_summary(run.rss_samples, proxy_rss(setup)),
        "cpu_share": {who: round(share, 3) for who, share in run.cpu_share.items()},
        "flapping": {
            "killed": any(text.startswith("SIGKILL flapping") for _, text in run.events),
            "restarted": restarted,
            "answered_after_restart_s": run.restart_answered_after_s,
            "stats_before_kill": run.flapping_stats_before_kill,
            "requests_after_restart": (stats["flapping"] or (0, {}))[1].get("requests"),
        },
        "events": [[round(t, 2), text] for t, text in run.events],
        "deployments": ready[1]["models"][0]["deployments"] if ready else None,
        "upstream_stats": {name: got[1] if got else None for name, got in stats.items()},
        "proxy_log": {"path": str(setup.proxy.log_path), **log_findings(setup.proxy.log_path)},
        "logs": str(fleet_log_dir(args)),
    }
    problems = []
    if lost_n:
        problems.append(f"{lost_n} request(s) lost or malformed")
    if rate < MIN_SUCCESS_RATE:
        problems.append(f"success rate {rate:.4%} < {MIN_SUCCESS_RATE:.1%}")
    if not restarted:
        problems.append("the flapping upstream was not restarted")
    elif recovery_missed(args, run, report["flapping"]["requests_after_restart"]):
        problems.append("the proxy sent nothing to the restarted flapping upstream")
    report["problems"] = problems
    report["passed"] = not problems
    return report


def recovery_missed(args: argparse.Namespace, run: Run, requests_after: int | None) -> bool:
    """Whether the restarted upstream got no request although it answered early enough for a
    probe: a cooldown (2 s) and some margin before the end of the load."""
    back = {text: t for t, text in run.events}.get("flapping answers again")
    return back is not None and back < args.duration - 5.0 and not requests_after


def fleet_log_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) / "logs"


# ---------------------------------------------------------------- main


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:  # noqa: ARG001
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def _exit_on_deadline(signum: int, frame: object) -> NoReturn:  # noqa: ARG001
    print("soak: past the hard deadline; stopping everything", file=sys.stderr)
    raise SystemExit(3)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGALRM, _exit_on_deadline)
    signal.alarm(math.ceil(args.hard_deadline))
    fleet_log_dir(args).mkdir(parents=True, exist_ok=True)
    fleet = Fleet(fleet_log_dir(args))
    try:
        setup = start_all(args, fleet)
        run = asyncio.run(load(args, fleet, setup))
        report = collect(args, setup, run)
    except SetupError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        fleet.stop_all()
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
