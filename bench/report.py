"""The benchmark's output: ratios to the baselines of the same run first, then the measured figures.

On a shared machine an absolute figure moves with whatever else runs; a ratio between two rows
measured minutes apart on the same CPUs holds. So every row of a proxy is set against:

- **direct**: the same row sent straight to the upstream (throughput ratio, latency added);
- **floor**: the same row through `bench/floors.py forwarder` (the proxy's server and upstream
  client with none of its work: `--with-floor`), throughput and CPU per request;
- **compare**: the same row through another proxy (`--compare-cmd`, e.g. LiteLLM; `--yardstick`;
  `--floor`), throughput and CPU per request.

Pure: rows and proxies in, `Ratios` and tables (lists of cells) out, rendered as text or
markdown. Every ratio is ours ÷ the baseline's, row for row.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from load import NOISY_PCT, Row

MIB = 1024 * 1024
BASELINES = ("direct", "floor", "compare")  # the targets a row can be set against


@dataclass
class ProxyRun:
    """One proxy started by the benchmark: how it was run and what it cost at rest."""

    label: str
    command: str
    url: str
    cpus: str
    target: str = "proxy"  # "proxy" (ours), "floor" (--with-floor) or "compare"
    startup_s: float | None = None  # start of the process to its first 200 with the expected body
    rss_idle_bytes: int | None = None  # process tree, after both models answered once
    rss_after_bytes: int | None = None  # process tree, after its last row
    rss_peak_bytes: int | None = None  # sum of each process's VmHWM
    failure: str | None = None  # why it could not be measured


@dataclass(frozen=True)
class Ratios:
    """One row of a proxy set against the rows of the same run. None: that baseline was not
    measured in this run (or has no figure to divide by)."""

    target: str
    upstream: str
    conc: int
    stream: bool
    rps_of_direct: float | None = None  # rps ÷ direct rps
    p50_added_ms: float | None = None  # p50 − direct p50
    p99_added_ms: float | None = None  # p99 − direct p99
    rps_of_floor: float | None = None  # rps ÷ the forwarder floor's rps
    cpu_of_floor: float | None = None  # CPU per request ÷ the floor's
    own_cpu_ms: float | None = None  # CPU per request − the floor's: the proxy's own work
    rps_of_compare: float | None = None  # rps ÷ the compared proxy's; inf: it answered nothing
    cpu_of_compare: float | None = None  # CPU per request ÷ the compared proxy's
    rps_of_ideal: float | None = None  # slow rows: rps ÷ (conc / upstream latency)


def _divide(ours: float | None, theirs: float | None, *, zero_is_inf: bool = False) -> float | None:
    if ours is None or theirs is None:
        return None
    if theirs > 0:
        return float(f"{ours / theirs:.4g}")  # 4 significant digits, however small
    return math.inf if zero_is_inf and ours > 0 else None


def _subtract(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else round(ours - theirs, 4)


def ratios(rows: list[Row], slow_ms: float) -> list[Ratios]:
    """The ratios of every row that is not a direct one, in the order of `rows`.

    A row's direct baseline is the direct row of the same upstream and concurrency (the upstream
    does not stream, so a stream row is set against the plain one); its floor and compare
    baselines are the rows of the same upstream, concurrency and streaming."""
    direct = {(r.upstream, r.conc): r for r in rows if r.target == "direct"}
    floor = {(r.upstream, r.conc, r.stream): r for r in rows if r.target == "floor"}
    compare = {(r.upstream, r.conc, r.stream): r for r in rows if r.target == "compare"}
    found = []
    for row in rows:
        if row.target == "direct":
            continue
        key = (row.upstream, row.conc, row.stream)
        base = direct.get((row.upstream, row.conc))
        # wrk's percentiles of a row that completed nothing are zeros, not latencies.
        timed = base if row.requests and base is not None and base.requests else None
        bare = floor.get(key) if row.target != "floor" else None
        other = compare.get(key) if row.target == "proxy" else None
        cpu = row.proxy_cpu_ms_per_request
        bare_cpu = None if bare is None else bare.proxy_cpu_ms_per_request
        other_cpu = None if other is None else other.proxy_cpu_ms_per_request
        found.append(
            Ratios(
                target=row.target,
                upstream=row.upstream,
                conc=row.conc,
                stream=row.stream,
                rps_of_direct=_divide(row.rps, None if base is None else base.rps),
                p50_added_ms=_subtract(row.p50_ms, None if timed is None else timed.p50_ms),
                p99_added_ms=_subtract(row.p99_ms, None if timed is None else timed.p99_ms),
                rps_of_floor=_divide(row.rps, None if bare is None else bare.rps),
                cpu_of_floor=_divide(cpu, bare_cpu),
                own_cpu_ms=_subtract(cpu, bare_cpu),
                rps_of_compare=_divide(
                    row.rps, None if other is None else other.rps, zero_is_inf=True
                ),
                cpu_of_compare=_divide(cpu, other_cpu),
                rps_of_ideal=(
                    _divide(row.rps, row.conc / (slow_ms / 1000))
                    if row.upstream == "slow" and slow_ms > 0
                    else None
                ),
            )
        )
    return found


def problems(rows: list[Row]) -> list[str]:
    """Rows of the baselines or of our proxy with an error, a bad body or no answer."""
    found = []
    for row in rows:
        if row.target == "compare":
            continue  # another proxy's failures are its figures, not ours
        if row.errors or row.requests == 0:
            what = (
                f"{row.scenario} c={row.conc}: {row.requests} requests, {row.non2xx} non-2xx, "
                f"{row.bad_bodies} bad bodies, {row.socket_errors} socket errors/timeouts"
            )
            found.append(what + (f"; first bad answer: {row.first_bad}" if row.first_bad else ""))
    return found


# ------------------------------------------------------------------ tables as data


@dataclass(frozen=True)
class Table:
    """Column names, and rows of cells as they are printed (right-aligned but the first)."""

    columns: list[str]
    rows: list[list[str]]


def labels_of(proxies: list[ProxyRun]) -> dict[str, str]:
    """Each target's name in the tables: the proxies' labels, "direct" for the upstream."""
    return {"direct": "direct", **{proxy.target: proxy.label for proxy in proxies}}


def times(value: float | None) -> str:
    """A ratio as printed: 3 significant digits and ×, ∞ or – (not measured)."""
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}×" if value >= 1000 else f"{value:.3g}×"


def _ms(value: float | None, sign: bool = False) -> str:
    return "–" if value is None else f"{value:+.2f}" if sign else f"{value:.2f}"


def _scenario(label: str, upstream: str, stream: bool) -> str:
    return f"{label} → {upstream}{' stream' if stream else ''}"


def ratio_table(found: list[Ratios], labels: dict[str, str]) -> Table:
    """Ratios to every baseline measured in the run: our rows first, then the floor's and the
    compared proxy's. A baseline's columns are there only when it was measured; a cell is empty
    where the baseline does not apply (the floor against itself), – where it has no figure."""
    measured = {r.target for r in found}
    slow = any(r.rps_of_ideal is not None for r in found)
    columns = ["scenario", "conc", "rps ÷ direct", "p50 + ms", "p99 + ms"]
    columns += ["rps ÷ ideal"] if slow else []
    if "floor" in measured:
        columns += ["rps ÷ floor", "CPU ÷ floor", "CPU − floor ms"]
    if "compare" in measured:
        name = labels.get("compare", "compare")
        columns += [f"rps ÷ {name}", f"CPU ÷ {name}"]
    order = {"proxy": 0, "floor": 1, "compare": 2}
    cells = []
    for r in sorted(found, key=lambda r: order.get(r.target, 3)):  # stable: run order within
        row = [_scenario(labels.get(r.target, r.target), r.upstream, r.stream), str(r.conc)]
        row += [times(r.rps_of_direct), _ms(r.p50_added_ms, True), _ms(r.p99_added_ms, True)]
        if slow:
            row.append("" if r.rps_of_ideal is None else times(r.rps_of_ideal))
        if "floor" in measured and r.target == "floor":
            row += ["", "", ""]
        elif "floor" in measured:
            row += [times(r.rps_of_floor), times(r.cpu_of_floor), _ms(r.own_cpu_ms, True)]
        if "compare" in measured and r.target == "proxy":
            row += [times(r.rps_of_compare), times(r.cpu_of_compare)]
        elif "compare" in measured:
            row += ["", ""]
        cells.append(row)
    return Table(columns, cells)


def figure_table(rows: list[Row], labels: dict[str, str]) -> Table:
    """The measured figures, row by row in the order of the run."""
    columns = ["scenario", "conc", "rps", "p50 ms", "p99 ms", "errors", "CPU ms/req", "notes"]
    cells = []
    for row in rows:
        cpu = row.proxy_cpu_ms_per_request
        cells.append(
            [
                _scenario(labels.get(row.target, row.target), row.upstream, row.stream),
                str(row.conc),
                f"{row.rps:,.0f}",
                f"{row.p50_ms:.2f}",
                f"{row.p99_ms:.2f}",
                str(row.errors),
                "–" if cpu is None else f"{cpu:.3f}",
                _notes(row),
            ]
        )
    return Table(columns, cells)


def _notes(row: Row) -> str:
    cpus, busy = "/".join(row.cpu_busy_pct), "/".join(f"{v:.0f}" for v in row.cpu_busy_pct.values())
    notes = [f"cpu{cpus} {busy} % busy"]
    if row.requests == 0:
        notes.append("NO answer completed within the row")
    if row.proxy_cpu_pct is not None:
        notes.append(f"proxy {row.proxy_cpu_pct:.0f} % CPU")
    if not row.checked:
        notes.append("bodies unchecked")
    if row.extra.get("idle_proxies_cpu_pct", 0.0) >= 1.0:
        notes.append(f"the idle proxies {row.extra['idle_proxies_cpu_pct']:.0f} % CPU")
    if row.noise_pct >= NOISY_PCT:
        notes.append(f"NOISY: {row.noise_pct:.0f} % CPU used by others, rerun")
    return ", ".join(notes)


def footprint_lines(proxies: list[ProxyRun]) -> list[str]:
    """Each proxy's start time and RSS, ours also as ratios to the others'."""
    lines = [_footprint(proxy) for proxy in proxies]
    ours = next((p for p in proxies if p.target == "proxy" and p.failure is None), None)
    others = [p for p in proxies if p is not ours and p.failure is None]
    if ours is not None and others:
        parts = []
        for other in others:
            rss = times(_divide(ours.rss_after_bytes, other.rss_after_bytes))
            start = times(_divide(ours.startup_s, other.startup_s))
            parts.append(f"÷ {other.label}: RSS after the run {rss}, start {start}")
        lines.append(f"{ours.label} " + "; ".join(parts))
    return lines


def _footprint(proxy: ProxyRun) -> str:
    def mib(value: int | None) -> str:
        return "?" if value is None else f"{value / MIB:.0f} MiB"

    if proxy.failure is not None:
        return f"{proxy.label}: NOT MEASURED: {proxy.failure.splitlines()[0]}"
    startup = "?" if proxy.startup_s is None else f"{proxy.startup_s:.2f} s"
    return (
        f"{proxy.label} on CPU {proxy.cpus}: start to first 200 {startup}; RSS (process tree) "
        f"idle {mib(proxy.rss_idle_bytes)}, after the run {mib(proxy.rss_after_bytes)}, "
        f"peak {mib(proxy.rss_peak_bytes)}"
    )


RATIO_LEGEND = (
    "Ratios: ours ÷ the baseline's, row for row, every baseline measured in this run on the",
    "same CPUs. direct = the same row straight to the upstream (p50/p99 + ms: the latency the",
    "proxy adds); floor = bench/floors.py forwarder, the same server and upstream client with",
    "none of the proxy's work (CPU − floor: what that work costs per request); then a compared",
    "proxy, if any.",
)
FIGURE_LEGEND = (
    "Figures, second: they move with the machine's load far more than the ratios do. rps = 2xx",
    "answers per second whose body was right (checked one by one on proxy rows); errors =",
    "non-2xx + wrong bodies + socket errors/timeouts; p50/p99 from wrk (closed loop: at high",
    "concurrency mostly queueing); CPU ms/req = CPU time of the measured process tree per answer.",
)


# ------------------------------------------------------------------ rendering


def render_text(table: Table) -> list[str]:
    """Aligned columns: the first and the notes to the left, the rest to the right."""
    columns = zip(table.columns, *table.rows, strict=True)
    widths = [max(len(cell) for cell in column) for column in columns]

    def line(cells: list[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            left = i == 0 or table.columns[i] == "notes"
            out.append(cell.ljust(width) if left else cell.rjust(width))
        return "  ".join(out).rstrip()

    return [line(table.columns), *(line(row) for row in table.rows)]


def render_markdown(table: Table) -> list[str]:
    """A GitHub table with the same cells (the README's form)."""
    align = ["---" if i == 0 or c == "notes" else "---:" for i, c in enumerate(table.columns)]
    lines = ["| " + " | ".join(cells) + " |" for cells in (table.columns, *table.rows)]
    lines.insert(1, "|" + "|".join(align) + "|")
    return lines


def render_report(
    header: list[str], rows: list[Row], proxies: list[ProxyRun], found: list[Ratios]
) -> str:
    """The printed report: header, the ratios, then the figures and each proxy's footprint."""
    labels = labels_of(proxies)
    lines = [*header, "", "RATIOS (same run)"]
    lines += render_text(ratio_table(found, labels))
    lines += [*RATIO_LEGEND, "", "FIGURES"]
    lines += render_text(figure_table(rows, labels))
    lines += footprint_lines(proxies)
    lines += FIGURE_LEGEND
    return "\n".join(lines) + "\n"


def render_markdown_report(
    header: list[str], rows: list[Row], proxies: list[ProxyRun], found: list[Ratios]
) -> str:
    """The same report as markdown (table.md), ready to paste into the README."""
    labels = labels_of(proxies)
    lines = [line.removeprefix("# ") + "  " for line in header]
    lines += ["", "Ratios (same run):", "", *render_markdown(ratio_table(found, labels)), ""]
    lines += [" ".join(RATIO_LEGEND), "", "Figures:", ""]
    lines += [*render_markdown(figure_table(rows, labels)), ""]
    lines += [f"- {line}" for line in footprint_lines(proxies)]
    return "\n".join(lines) + "\n"


def _finite(value: object) -> object:
    """JSON has no infinity: a proxy that answered nothing is ∞ times slower, written "inf"."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def write_results(
    out: Path,
    meta: dict[str, Any],
    rows: list[Row],
    proxies: list[ProxyRun],
    found: list[Ratios],
    header: list[str],
) -> tuple[Path, str]:
    """table.txt, table.md and results.json in `out`, each leading with the ratios; returns the
    JSON's path and the text report."""
    table = render_report(header, rows, proxies, found)
    (out / "table.txt").write_text(table)
    (out / "table.md").write_text(render_markdown_report(header, rows, proxies, found))
    labels = labels_of(proxies)
    document = {
        "ratios": [
            {"scenario": _scenario(labels.get(r.target, r.target), r.upstream, r.stream)}
            | {k: _finite(v) for k, v in asdict(r).items()}
            for r in found
        ],
        **meta,
        "proxies": [asdict(proxy) for proxy in proxies],
        "rows": [row.as_json() for row in rows],
        "problems": problems(rows),
        "table": table.splitlines(),
    }
    path = out / "results.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path, table
