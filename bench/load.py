"""One benchmark row: wrk drives load for a while, /proc tells where the CPU went.

wrk runs with one thread, closed loop (each connection sends its next request when the previous
answer has arrived), pinned to the load CPU, with bench/chat.lua building the request and checking
the answers. Around it the harness reads, from /proc: the CPU time of the measured process tree
(the proxy), the busy share of each CPU, and "noise": CPU time spent during the row by processes
this harness did not start (another job on a shared machine), so such rows can be flagged.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import procs

BENCH_DIR = Path(__file__).resolve().parent
WRK_TIMEOUT = "30s"  # a request slower than this counts as a socket error (timeout)
NOISY_PCT = 10.0  # foreign CPU (% of one core) above which a row is marked noisy


@dataclass(frozen=True)
class Scenario:
    """What wrk sends, where to, and what every answer must look like."""

    target: str  # "direct", "proxy" or "compare"
    upstream: str  # "nginx" or "slow"
    conc: int
    url: str
    model: str = "llama"
    stream: bool = False
    check: bool = True

    @property
    def name(self) -> str:
        stream = " stream" if self.stream else ""
        return f"{self.target} → {self.upstream}{stream}"

    def lua_env(self) -> dict[str, str]:
        env = {"BENCH_MODEL": self.model, "BENCH_CHECK": "1" if self.check else "0"}
        if self.stream:
            # SSE: the text may be split over chunks; the answer must end cleanly, without an
            # in-band error event.
            env.update(BENCH_STREAM="1", BENCH_SUFFIX="data: [DONE]", BENCH_FORBID='"error"')
        else:
            env.update(BENCH_EXPECT="ARIS")  # "PARIS." with or without the echoed prompt
        return env


@dataclass
class Row:
    """The measured figures of one scenario."""

    scenario: str
    target: str
    upstream: str
    conc: int
    stream: bool
    duration_s: float
    requests: int
    rps: float  # 2xx answers with a good body, per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    bad_bodies: int
    checked: bool
    errors: int
    cpu_busy_pct: dict[str, float]
    noise_pct: float
    proxy_cpu_ms_per_request: float | None = None
    proxy_cpu_pct: float | None = None
    first_bad: str | None = None
    extra: dict[str, float] = field(default_factory=dict)  # attempts, ratios to other rows

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def mean_row(rows: list[Row]) -> Row:
    """One row for several measurements of the same scenario (--rounds): the mean of rates,
    latencies and CPU, the sum of counts, the worst maximum and noise."""
    if len(rows) == 1:
        return rows[0]

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 3)

    cpus = [r.proxy_cpu_ms_per_request for r in rows]
    busy_keys = rows[0].cpu_busy_pct
    busy = [r.proxy_cpu_pct for r in rows]
    first = rows[0]
    return Row(
        scenario=first.scenario,
        target=first.target,
        upstream=first.upstream,
        conc=first.conc,
        stream=first.stream,
        duration_s=sum(r.duration_s for r in rows),
        requests=sum(r.requests for r in rows),
        rps=mean([r.rps for r in rows]),
        p50_ms=mean([r.p50_ms for r in rows]),
        p90_ms=mean([r.p90_ms for r in rows]),
        p99_ms=mean([r.p99_ms for r in rows]),
        max_ms=max(r.max_ms for r in rows),
        non2xx=sum(r.non2xx for r in rows),
        socket_errors=sum(r.socket_errors for r in rows),
        bad_bodies=sum(r.bad_bodies for r in rows),
        checked=all(r.checked for r in rows),
        errors=sum(r.errors for r in rows),
        cpu_busy_pct={k: mean([r.cpu_busy_pct.get(k, 0.0) for r in rows]) for k in busy_keys},
        noise_pct=max(r.noise_pct for r in rows),
        proxy_cpu_ms_per_request=None if None in cpus else mean([c for c in cpus if c is not None]),
        proxy_cpu_pct=None if None in busy else mean([b for b in busy if b is not None]),
        first_bad=next((r.first_bad for r in rows if r.first_bad), None),
        extra={
            "rounds": len(rows),
            "rps_min": min(r.rps for r in rows),
            "rps_max": max(r.rps for r in rows),
        },
    )


@dataclass(frozen=True)
class Layout:
    """Which CPUs the load (wrk, upstreams, this harness) and the proxy run on."""

    load_cpus: tuple[int, ...]
    proxy_cpus: tuple[int, ...]

    @property
    def all_cpus(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.load_cpus) | set(self.proxy_cpus)))

    @property
    def shared(self) -> bool:
        return bool(set(self.load_cpus) & set(self.proxy_cpus))


@dataclass
class _Snapshot:
    cpus: dict[int, tuple[float, float, float]]
    ours: float  # CPU seconds of everything this harness started or is
    measured: float  # CPU seconds of the measured tree

    @classmethod
    def take(cls, layout: Layout, pgids: list[int], measured: list[int]) -> _Snapshot:
        me = os.times()
        ours = procs.group_cpu_seconds(pgids) + me.user + me.system
        ours += me.children_user + me.children_system  # wrk runs that have ended
        return cls(procs.cpu_times(layout.all_cpus), ours, procs.cpu_seconds(measured))


def foreign_cpu_pct(before: _Snapshot, after: _Snapshot, seconds: float) -> float:
    """CPU (% of one core) used between two snapshots by processes the harness did not start."""
    used = sum(after.cpus[cpu][2] - before.cpus[cpu][2] for cpu in after.cpus)
    return max(0.0, (used - (after.ours - before.ours)) * 100 / seconds)


def busy_pct(before: _Snapshot, after: _Snapshot) -> dict[str, float]:
    busy = {}
    for cpu, (total, idle, _) in after.cpus.items():
        spent = total - before.cpus[cpu][0]
        idle_spent = idle - before.cpus[cpu][1]
        busy[str(cpu)] = round(100 * (spent - idle_spent) / spent, 1) if spent > 0 else 0.0
    return busy


def run_row(
    scenario: Scenario,
    *,
    duration_s: float,
    layout: Layout,
    pgids: list[int],
    measured_root: int | None,
    raw_path: Path,
    warmup_s: float = 0.0,
    period_s: float = 1.0,
) -> Row:
    """Run wrk for one scenario and account for the CPU it took.

    With `warmup_s`, the row's `extra` also holds the figures of its steady part (`steady_window`)
    from the first whole second of the clock `warmup_s` after wrk started, for as many whole
    `period_s` (rounded to whole seconds) as fit before its end: the good answers a second
    (`steady_rps`, from the script's per-second counts) and the measured tree's CPU per answer
    (`steady_cpu_ms_per_request`). With a closed loop on an upstream of fixed latency, answers
    come in waves of that period: a window of whole periods counts whole waves."""
    measured = procs.tree_pids(measured_root) if measured_root else []
    before = _Snapshot.take(layout, pgids, measured)
    window = _steady_window(time.time(), duration_s, warmup_s, period_s)
    marks: list[_Snapshot] = []

    def mark() -> None:
        marks.append(_Snapshot.take(layout, pgids, measured))

    run = _wrk(scenario, duration_s, layout, raw_path, window, mark)
    after = _Snapshot.take(layout, pgids, measured)
    result = run.result
    seconds = result["duration_s"] or duration_s
    requests = int(result["requests"])
    good = requests - int(result["non2xx"]) - int(result["bad_bodies"])
    row = Row(
        scenario=scenario.name,
        target=scenario.target,
        upstream=scenario.upstream,
        conc=scenario.conc,
        stream=scenario.stream,
        duration_s=seconds,
        requests=requests,
        rps=round(good / seconds, 1),
        p50_ms=result["p50_ms"],
        p90_ms=result["p90_ms"],
        p99_ms=result["p99_ms"],
        max_ms=result["max_ms"],
        non2xx=int(result["non2xx"]),
        socket_errors=int(result["socket_errors"]),
        bad_bodies=int(result["bad_bodies"]),
        checked=bool(result["checked"]),
        errors=requests - good + int(result["socket_errors"]),
        cpu_busy_pct=busy_pct(before, after),
        noise_pct=round(foreign_cpu_pct(before, after, seconds), 1),
        first_bad=run.first_bad,
    )
    if measured:
        spent = after.measured - before.measured
        row.proxy_cpu_pct = round(100 * spent / seconds, 1)
        if requests:
            row.proxy_cpu_ms_per_request = round(1000 * spent / requests, 4)
    if window is not None and len(marks) == 2 and run.good_by_second is not None:
        _add_steady(row, window, run.good_by_second, marks, measured=bool(measured))
    return row


def _steady_window(
    now: float, duration_s: float, warmup_s: float, period_s: float
) -> tuple[int, int] | None:
    """[start, end) in whole seconds of the clock, or None when no whole period fits."""
    if warmup_s <= 0:
        return None
    start = math.ceil(now + warmup_s)
    step = max(1, round(period_s))
    periods = math.floor((now + duration_s - 0.5 - start) / step)  # 0.5 s: wrk's own start
    return (start, start + periods * step) if periods > 0 else None


def _add_steady(
    row: Row,
    window: tuple[int, int],
    good_by_second: dict[int, int],
    marks: list[_Snapshot],
    *,
    measured: bool,
) -> None:
    start, end = window
    seconds = end - start
    answers = sum(n for second, n in good_by_second.items() if start <= second < end)
    row.extra["steady_from_s"] = float(start)
    row.extra["steady_s"] = float(seconds)
    row.extra["steady_rps"] = round(answers / seconds, 1)
    row.extra["steady_noise_pct"] = round(foreign_cpu_pct(marks[0], marks[1], seconds), 1)
    if measured and answers:
        spent = marks[1].measured - marks[0].measured
        row.extra["steady_cpu_ms_per_request"] = round(1000 * spent / answers, 4)


@dataclass
class _WrkRun:
    result: dict[str, float]
    first_bad: str | None
    good_by_second: dict[int, int] | None  # the script's per-second counts, when it checked


def _wrk(
    scenario: Scenario,
    duration_s: float,
    layout: Layout,
    raw_path: Path,
    window: tuple[int, int] | None,
    mark: Callable[[], None],
) -> _WrkRun:
    """wrk's figures; calls `mark()` at the start and at the end of `window` (clock seconds)."""
    argv = [
        *("taskset", "-c", procs.cpu_list(layout.load_cpus)),
        *("wrk", "-t1", f"-c{scenario.conc}", f"-d{duration_s:g}s", "--latency"),
        *("--timeout", WRK_TIMEOUT, "-s", str(BENCH_DIR / "chat.lua"), scenario.url),
    ]
    with subprocess.Popen(
        argv,
        env={**os.environ, **scenario.lua_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as wrk:
        for at in window or ():
            time.sleep(max(0.0, at - time.time()))  # wrk prints only at its end: no pipe fills
            if wrk.poll() is None:
                mark()
        try:
            stdout, stderr = wrk.communicate(timeout=duration_s + 60)
        except subprocess.TimeoutExpired:
            wrk.kill()
            stdout, stderr = wrk.communicate()
    raw_path.write_text(f"$ {' '.join(argv)}\n{stdout}{stderr}")
    result = first_bad = by_second = None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line.removeprefix("BENCH_RESULT "))
        elif line.startswith("BENCH_FIRST_BAD "):
            first_bad = line.removeprefix("BENCH_FIRST_BAD ")
        elif line.startswith("BENCH_PER_SECOND "):
            counts = json.loads(line.removeprefix("BENCH_PER_SECOND "))
            by_second = {int(second): int(n) for second, n in counts.items()}
    if wrk.returncode != 0 or result is None:
        raise procs.SetupError(
            f"wrk failed for {scenario.name} c={scenario.conc} (exit {wrk.returncode}); "
            f"see {raw_path}:\n{stderr[-2000:]}"
        )
    return _WrkRun(result, first_bad, by_second)


def wait_quiet(layout: Layout, pgids: list[int], max_wait_s: float) -> float:
    """Wait (in 1 s windows, up to `max_wait_s`) until foreign CPU is below NOISY_PCT; return it."""
    if max_wait_s <= 0:
        return 0.0
    waited = 0.0
    while True:
        before = _Snapshot.take(layout, pgids, [])
        started = time.monotonic()
        time.sleep(1.0)  # a measurement window, not a wait for readiness
        window = time.monotonic() - started
        after = _Snapshot.take(layout, pgids, [])
        foreign = foreign_cpu_pct(before, after, window)
        waited += window
        if foreign < NOISY_PCT or waited >= max_wait_s:
            return foreign
