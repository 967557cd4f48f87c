"""The fault soak's report (bench/soak.py): percentiles, the RSS trend, the text table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..1) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def rss_summary(samples: list[tuple[float, int]], after: int) -> dict[str, Any]:
    """Before/after, and the trend: the mean of the load's second half against its first, and
    the slope of a least-squares line through the second half (past the warm-up)."""
    during = samples[1:] or samples
    half = len(during) // 2
    first = [rss for _, rss in during[:half] or during]
    second = [rss for _, rss in during[half:]]
    first_mean, second_mean = sum(first) / len(first), sum(second) / len(second)
    return {
        "before_bytes": samples[0][1],
        "after_bytes": after,
        "peak_bytes": max(rss for _, rss in samples),
        "first_half_mean_bytes": round(first_mean),
        "second_half_mean_bytes": round(second_mean),
        "trend_bytes": round(second_mean - first_mean),
        "second_half_slope_bytes_per_min": round(slope(during[half:]) * 60),
        "samples": [[round(t, 2), rss] for t, rss in samples],
    }


def slope(points: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of y over x; 0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def log_findings(path: Path) -> dict[str, int]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": sum(1 for line in text.splitlines() if " ERROR " in line),
        "answers_broken_off": text.count("broke off its answer"),  # e.g. by the kill
    }


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def format_report(report: dict[str, Any]) -> str:
    config, latency, rss = report["config"], report["latency_ms"], report["rss"]
    lines = [
        f"fault soak: {config['clients']} clients, {config['duration_s']:g} s, "
        f"seed {config['seed']}; model '{config['model']}' = healthy + flapping (50 % 5xx, "
        f"killed at {config['kill_at']:.0%}, restarted at {config['restart_at']:.0%}) "
        "+ hanging (1 s timeout)",
        "",
        f"  {'requests sent':<34}{report['sent']:>10}",
        f"  {'succeeded':<34}{report['succeeded']:>10}",
        f"  {'failed with a proper OpenAI error':<34}{report['failed_proper']:>10}",
        f"  {'malformed / lost (must be 0)':<34}{report['lost']:>10}",
        f"  {'success rate (≥ 99.9 %)':<34}{report['success_rate']:>10.4%}",
        f"  {'latency of successes p50 / p99':<34}{ms(latency['p50']):>10} / "
        f"{ms(latency['p99'])}  (max {ms(latency['max'])})",
        f"  {'CPU (1 = a core): clients / proxy':<34}{report['cpu_share']['clients']:>10.2f} / "
        f"{report['cpu_share']['proxy']:.2f}  (latency includes the clients' own queueing)",
        f"  {'proxy RSS before / after':<34}{mib(rss['before_bytes']):>10} / "
        f"{mib(rss['after_bytes'])}  (peak {mib(rss['peak_bytes'])})",
        f"  {'RSS trend (2nd half − 1st half)':<34}{rss['trend_bytes'] / MIB:>+9.1f} MiB"
        f"  (2nd half: {rss['second_half_slope_bytes_per_min'] / MIB:+.2f} MiB/min; "
        f"{len(rss['samples'])} samples)",
        "",
        "  by kind: "
        + "; ".join(
            f"{kind} {counts.get('ok', 0)} ok / {counts.get('error', 0)} err / "
            f"{counts.get('lost', 0)} lost"
            for kind, counts in report["by_kind"].items()
        ),
    ]
    lines += [f"  error {n:>6} × {detail}" for detail, n in report["errors"].items()]
    lines += [f"  LOST  {n:>6} × {detail}" for detail, n in report["lost_reasons"].items()]
    lines += [f"  t={t:>6.2f} s  {text}" for t, text in report["events"]]
    flapping = report["flapping"]
    lines.append(
        f"  flapping: answered {flapping['answered_after_restart_s'] or 0:.2f} s after its "
        f"restart, then got {flapping['requests_after_restart']} requests"
    )
    names = config["deployments"]
    for name, deployment in zip(names, report["deployments"] or [], strict=False):
        lines.append(
            f"  {name:<9}{deployment['state']:<13} requests {deployment['requests']:>7}  "
            f"failures {deployment['failures']:>6}  cooldowns {deployment['cooldowns']:>4}"
        )
    log = report["proxy_log"]
    lines.append(
        f"  proxy log: {log['tracebacks']} tracebacks, {log['error_lines']} ERROR lines, "
        f"{log['answers_broken_off']} upstream answers broken off ({log['path']})"
    )
    lines.append("")
    lines.append("PASS" if report["passed"] else "FAIL: " + "; ".join(report["problems"]))
    return "\n".join(lines)
