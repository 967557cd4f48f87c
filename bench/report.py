"""The benchmark's output: ratios between rows, the printed table, and the same as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from load import NOISY_PCT, Row

MIB = 1024 * 1024


@dataclass
class ProxyRun:
    """One proxy started by the benchmark: how it was run and what it cost at rest."""

    label: str
    command: str
    url: str
    cpus: str
    startup_s: float | None = None  # start of the process to its first 200 with the expected body
    rss_idle_bytes: int | None = None  # process tree, after both models answered once
    rss_after_bytes: int | None = None  # process tree, after its last row
    rss_peak_bytes: int | None = None  # sum of each process's VmHWM
    failure: str | None = None  # why it could not be measured


def add_ratios(rows: list[Row], slow_ms: float) -> None:
    """Fill each row's `extra`: vs_direct, pct_of_ideal (slow upstream), vs_compare."""
    direct = {(r.upstream, r.conc): r for r in rows if r.target == "direct"}
    compare = {(r.upstream, r.conc, r.stream): r for r in rows if r.target == "compare"}
    for row in rows:
        if row.upstream == "slow":
            ideal = row.conc / (slow_ms / 1000)
            row.extra["ideal_rps"] = round(ideal, 1)
            row.extra["pct_of_ideal"] = round(100 * row.rps / ideal, 1)
        base = direct.get((row.upstream, row.conc))
        if row.target != "direct" and base is not None and base.rps > 0:
            row.extra["vs_direct_pct"] = round(100 * row.rps / base.rps, 2)
        other = compare.get((row.upstream, row.conc, row.stream))
        if row.target == "proxy" and other is not None:
            row.extra["compare_rps"] = other.rps
            if other.rps > 0:
                row.extra["vs_compare"] = round(row.rps / other.rps, 2)


def problems(rows: list[Row]) -> list[str]:
    """Rows of the direct baseline or of our proxy with an error, a bad body or no answer."""
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


_COLUMNS = (
    ("scenario", "<31"),
    ("conc", ">5"),
    ("rps", ">9"),
    ("p50 ms", ">8"),
    ("p99 ms", ">8"),
    ("errors", ">6"),
    ("cpu ms/req", ">10"),
    ("vs direct", ">9"),
    ("vs compare", ">10"),
)


def _cells(row: Row, labels: dict[str, str]) -> list[str]:
    def optional(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    vs_direct = row.extra.get("vs_direct_pct")
    vs_compare = row.extra.get("vs_compare")
    if vs_compare is None and row.extra.get("compare_rps") == 0 and row.rps > 0:
        vs_compare = float("inf")  # the other proxy answered nothing right
    return [
        f"{labels.get(row.target, row.target)} → {row.upstream}{' stream' if row.stream else ''}",
        str(row.conc),
        f"{row.rps:,.0f}",
        f"{row.p50_ms:.2f}",
        f"{row.p99_ms:.2f}",
        str(row.errors),
        optional(row.proxy_cpu_ms_per_request, ".3f"),
        "–" if vs_direct is None else f"{vs_direct:.1f} %",
        "–" if vs_compare is None else "∞" if math.isinf(vs_compare) else f"{vs_compare:.1f}×",
    ]


def _notes(row: Row) -> str:
    cpus, busy = "/".join(row.cpu_busy_pct), "/".join(f"{v:.0f}" for v in row.cpu_busy_pct.values())
    notes = [f"cpu{cpus} {busy} % busy"]
    if row.requests == 0:
        notes.append("NO answer completed within the row")
    if "pct_of_ideal" in row.extra:
        notes.append(f"{row.extra['pct_of_ideal']:.0f} % of ideal {row.extra['ideal_rps']:,.0f}")
    if row.proxy_cpu_pct is not None:
        notes.append(f"proxy {row.proxy_cpu_pct:.0f} % CPU")
    if not row.checked:
        notes.append("bodies unchecked")
    if row.noise_pct >= NOISY_PCT:
        notes.append(f"NOISY: {row.noise_pct:.0f} % CPU used by others, rerun")
    return ", ".join(notes)


def render_table(header: list[str], rows: list[Row], proxies: list[ProxyRun]) -> str:
    """The human-readable report: header lines, one line per row, then each proxy's footprint."""
    labels = {"proxy": proxies[0].label} if proxies else {}
    if len(proxies) > 1:
        labels["compare"] = proxies[1].label
    lines = [*header]
    lines.append("  ".join(format(name, fmt) for name, fmt in _COLUMNS) + "  notes")
    for row in rows:
        cells = _cells(row, labels)
        lines.append(
            "  ".join(format(cell, fmt) for cell, (_, fmt) in zip(cells, _COLUMNS, strict=True))
            + "  "
            + _notes(row)
        )
    for proxy in proxies:
        lines.append(_footprint(proxy))
    lines += [
        "rps = 2xx answers per second whose body was right (checked one by one on proxy rows);",
        "errors = non-2xx + wrong bodies + socket errors/timeouts; p50/p99 from wrk (closed loop:",
        "at high concurrency mostly queueing); cpu ms/req = CPU time of the proxy's process tree",
        "per answer; vs direct = rps as a share of the same row straight to the upstream, measured",
        "in this run; vs compare = our rps / the compared proxy's rps.",
    ]
    return "\n".join(lines) + "\n"


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


def write_results(
    out: Path, meta: dict[str, Any], rows: list[Row], proxies: list[ProxyRun], table: str
) -> Path:
    """table.txt and results.json in `out`; returns the JSON's path."""
    (out / "table.txt").write_text(table)
    path = out / "results.json"
    document = {
        **meta,
        "proxies": [asdict(proxy) for proxy in proxies],
        "rows": [row.as_json() for row in rows],
        "problems": problems(rows),
        "table": table.splitlines(),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path
