"""bench/report.py as data: the ratios of each row to the baselines of the same run, and the
tables that lead with them (cells, not pixels), the text and markdown reports and results.json."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
SLOW_MS = 50.0


@pytest.fixture(scope="module")
def report() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH_DIR))  # bench/ is scripts, not a package
        yield importlib.import_module("report")


def make_row(
    report: ModuleType,
    target: str,
    upstream: str,
    conc: int,
    rps: float,
    *,
    p50: float = 1.0,
    p99: float = 2.0,
    cpu: float | None = None,
    stream: bool = False,
    noise: float = 0.0,
) -> Any:
    name = f"{target} → {upstream}{' stream' if stream else ''}"
    return report.Row(
        scenario=name,
        target=target,
        upstream=upstream,
        conc=conc,
        stream=stream,
        duration_s=10.0,
        requests=int(rps * 10),
        rps=rps,
        p50_ms=p50,
        p90_ms=p99,
        p99_ms=p99,
        max_ms=p99,
        non2xx=0,
        socket_errors=0,
        bad_bodies=0,
        checked=target != "direct",
        errors=0,
        cpu_busy_pct={"0": 100.0, "1": 90.0},
        noise_pct=noise,
        proxy_cpu_ms_per_request=cpu,
        proxy_cpu_pct=None if cpu is None else 60.0,
    )


def run_rows(report: ModuleType, *, compare_rps: float = 40.0) -> list[Any]:
    """A run as bench/run.py measures it: direct, ours, the floor, LiteLLM."""

    def row(*args: Any, **kwargs: Any) -> Any:
        return make_row(report, *args, **kwargs)

    return [
        row("direct", "nginx", 1, 30_000.0, p50=0.03, p99=0.05),
        row("direct", "nginx", 16, 40_000.0, p50=0.30, p99=0.60),
        row("direct", "slow", 256, 5_000.0, p50=50.5, p99=52.0),
        row("proxy", "nginx", 1, 2_000.0, p50=0.45, p99=0.80, cpu=0.40),
        row("proxy", "nginx", 16, 3_000.0, p50=5.0, p99=9.0, cpu=0.30),
        row("proxy", "slow", 256, 3_072.0, p50=80.0, p99=110.0, cpu=0.32),
        row("proxy", "nginx", 16, 2_500.0, p50=6.0, p99=10.0, cpu=0.36, stream=True),
        row("floor", "nginx", 1, 4_000.0, p50=0.22, p99=0.30, cpu=0.20),
        row("floor", "nginx", 16, 6_000.0, p50=2.5, p99=4.0, cpu=0.12),
        row("floor", "slow", 256, 4_800.0, p50=52.0, p99=60.0, cpu=0.16),
        row("floor", "nginx", 16, 5_000.0, p50=3.0, p99=5.0, cpu=0.15, stream=True),
        row("compare", "nginx", 1, compare_rps, p50=23.0, p99=30.0, cpu=24.0),
        row("compare", "nginx", 16, compare_rps, p50=380.0, p99=400.0, cpu=25.0),
        row("compare", "slow", 256, compare_rps, p50=6000.0, p99=7000.0, cpu=27.0),
        row("compare", "nginx", 16, 0.0, p50=150.0, p99=900.0, cpu=30.0, stream=True),
    ]


def by_key(found: list[Any]) -> dict[tuple[str, str, int, bool], Any]:
    return {(r.target, r.upstream, r.conc, r.stream): r for r in found}


def test_each_proxy_row_is_set_against_every_baseline_of_the_run(report: ModuleType) -> None:
    found = by_key(report.ratios(run_rows(report), SLOW_MS))

    c1 = found["proxy", "nginx", 1, False]
    assert c1.rps_of_direct == pytest.approx(2_000 / 30_000, rel=1e-3)
    assert c1.p50_added_ms == pytest.approx(0.42)
    assert c1.p99_added_ms == pytest.approx(0.75)
    assert c1.rps_of_floor == pytest.approx(0.5)
    assert c1.cpu_of_floor == pytest.approx(2.0)
    assert c1.own_cpu_ms == pytest.approx(0.20)
    assert c1.rps_of_compare == pytest.approx(50.0)
    assert c1.cpu_of_compare == pytest.approx(0.40 / 24.0, rel=1e-3)
    assert c1.rps_of_ideal is None

    slow = found["proxy", "slow", 256, False]
    assert slow.rps_of_ideal == pytest.approx(0.6)  # 3,072 of 256 / 50 ms = 5,120
    assert slow.rps_of_direct == pytest.approx(3_072 / 5_000, rel=1e-3)
    assert slow.own_cpu_ms == pytest.approx(0.16)

    # The upstream does not stream: the stream row's direct baseline is the plain row of its
    # concurrency; the floor and the other proxy stream, so theirs is their stream row.
    stream = found["proxy", "nginx", 16, True]
    assert stream.rps_of_direct == pytest.approx(2_500 / 40_000)
    assert stream.rps_of_floor == pytest.approx(0.5)
    assert stream.cpu_of_floor == pytest.approx(2.4)
    assert math.isinf(stream.rps_of_compare)  # it answered none of them right
    assert stream.cpu_of_compare == pytest.approx(0.012)


def test_baselines_are_not_set_against_themselves(report: ModuleType) -> None:
    found = report.ratios(run_rows(report), SLOW_MS)
    assert {r.target for r in found} == {"proxy", "floor", "compare"}  # no direct row
    floor = by_key(found)["floor", "nginx", 16, False]
    assert floor.rps_of_direct == pytest.approx(0.15)
    assert floor.rps_of_floor is floor.cpu_of_floor is floor.rps_of_compare is None
    litellm = by_key(found)["compare", "nginx", 16, False]
    assert litellm.rps_of_floor == pytest.approx(40 / 6_000, rel=1e-3)
    assert litellm.cpu_of_floor == pytest.approx(208.3)  # 4 significant digits
    assert litellm.rps_of_compare is None


def test_a_baseline_not_measured_gives_no_ratio(report: ModuleType) -> None:
    rows = [r for r in run_rows(report) if r.target in ("direct", "proxy") and r.conc != 1]
    rows.append(make_row(report, "proxy", "nginx", 1, 2_000.0, cpu=0.4))  # no direct c=1 row
    found = by_key(report.ratios(rows, SLOW_MS))
    assert found["proxy", "nginx", 1, False].rps_of_direct is None
    assert found["proxy", "nginx", 1, False].p50_added_ms is None
    c16 = found["proxy", "nginx", 16, False]
    assert c16.rps_of_direct == pytest.approx(0.075)
    assert c16.rps_of_floor is c16.own_cpu_ms is c16.rps_of_compare is None


def test_a_baseline_that_answered_nothing_is_no_ratio_but_a_compared_proxy_is_infinitely_slower(
    report: ModuleType,
) -> None:
    rows = run_rows(report, compare_rps=0.0)
    rows[0] = make_row(report, "direct", "nginx", 1, 0.0)
    found = by_key(report.ratios(rows, SLOW_MS))
    assert found["proxy", "nginx", 1, False].rps_of_direct is None
    assert math.isinf(found["proxy", "nginx", 16, False].rps_of_compare)
    # A row that completed nothing has no latency to add (wrk reports zeros).
    assert found["proxy", "nginx", 1, False].p50_added_ms is None
    nothing = found["compare", "slow", 256, False]
    assert nothing.rps_of_direct == 0.0
    assert nothing.p50_added_ms is nothing.p99_added_ms is None


def test_the_ratio_table_leads_with_ratios_to_the_baselines_measured(report: ModuleType) -> None:
    found = report.ratios(run_rows(report), SLOW_MS)
    labels = {"direct": "direct", "proxy": "ours", "floor": "floor", "compare": "LiteLLM"}
    table = report.ratio_table(found, labels)
    assert table.columns == [
        "scenario",
        "conc",
        "rps ÷ direct",
        "p50 + ms",
        "p99 + ms",
        "rps ÷ ideal",
        "rps ÷ floor",
        "CPU ÷ floor",
        "CPU − floor ms",
        "rps ÷ LiteLLM",
        "CPU ÷ LiteLLM",
    ]
    # Our rows first, then the floor's and the other proxy's, each in the order of the run.
    assert [row[0] for row in table.rows] == [
        "ours → nginx",
        "ours → nginx",
        "ours → slow",
        "ours → nginx stream",
        "floor → nginx",
        "floor → nginx",
        "floor → slow",
        "floor → nginx stream",
        "LiteLLM → nginx",
        "LiteLLM → nginx",
        "LiteLLM → slow",
        "LiteLLM → nginx stream",
    ]
    assert table.rows[0] == [
        "ours → nginx", "1",
        "0.0667×", "+0.42", "+0.75", "",  # ÷ direct, latency added, ÷ ideal (slow rows only)
        "0.5×", "2×", "+0.20",  # ÷ floor: rps, CPU per request, own CPU
        "50×", "0.0167×",  # ÷ LiteLLM: rps, CPU per request
    ]  # fmt: skip
    assert table.rows[2][5] == "0.6×"  # of the ideal 5,120 rps
    assert table.rows[3][9] == "∞"  # LiteLLM answered no stream right
    assert table.rows[4][6:] == ["", "", "", "", ""]  # the floor against itself: not applicable
    assert table.rows[8][6:] == ["0.01×", "120×", "+23.80", "", ""]  # LiteLLM c=1 ÷ floor c=1


def test_the_ratio_table_has_columns_only_for_baselines_measured(report: ModuleType) -> None:
    rows = [r for r in run_rows(report) if r.target in ("direct", "proxy") and r.upstream != "slow"]
    table = report.ratio_table(report.ratios(rows, SLOW_MS), {"proxy": "ours"})
    assert table.columns == ["scenario", "conc", "rps ÷ direct", "p50 + ms", "p99 + ms"]
    assert [len(row) for row in table.rows] == [5, 5, 5]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "–"), (math.inf, "∞"), (0.07123, "0.0712×"), (1.534, "1.53×"), (49.72, "49.7×"),
     (1234.5, "1,234×")],
)  # fmt: skip
def test_ratios_are_printed_with_three_digits(
    report: ModuleType, value: float | None, shown: str
) -> None:
    assert report.times(value) == shown


def proxies(report: ModuleType) -> list[Any]:
    def run(label: str, target: str, rss_mib: int, startup: float) -> Any:
        rss = rss_mib * report.MIB
        return report.ProxyRun(
            label, "cmd", "http://127.0.0.1:1", "1", target, startup, rss, rss, rss
        )

    return [
        run("custom-llm-proxy", "proxy", 60, 0.8),
        run("floor", "floor", 30, 0.3),
        run("LiteLLM", "compare", 400, 14.0),
    ]


def test_the_report_gives_the_ratios_first_and_the_figures_second(report: ModuleType) -> None:
    rows = run_rows(report)
    text = report.render_report(["# header"], rows, proxies(report), report.ratios(rows, SLOW_MS))
    lines = text.splitlines()
    assert lines[:3] == ["# header", "", "RATIOS (same run)"]
    assert lines[3].split()[:4] == ["scenario", "conc", "rps", "÷"]
    first_ratio = next(i for i, line in enumerate(lines) if line.startswith("custom-llm-proxy →"))
    figures = lines.index("FIGURES")
    assert first_ratio < figures
    assert lines[figures + 1].split()[:3] == ["scenario", "conc", "rps"]
    assert lines[figures + 2].startswith("direct → nginx")  # the measured rows, in run order
    assert "30,000" in lines[figures + 2]
    assert "30,000" not in "\n".join(lines[:figures])  # no absolute rps among the ratios
    assert "custom-llm-proxy ÷ floor: RSS after the run 2×, start 2.67×" in text
    assert "÷ LiteLLM: RSS after the run 0.15×, start 0.0571×" in text


def test_results_json_and_table_md_lead_with_the_ratios(report: ModuleType, tmp_path: Path) -> None:
    rows = run_rows(report)
    found = report.ratios(rows, SLOW_MS)
    meta = {"created": "now", "settings": {"slow_ms": SLOW_MS}}
    path, text = report.write_results(tmp_path, meta, rows, proxies(report), found, ["# head"])

    document = json.loads(path.read_text())
    assert next(iter(document)) == "ratios"
    first = document["ratios"][0]
    assert first["scenario"] == "custom-llm-proxy → nginx"
    assert first["rps_of_direct"] == pytest.approx(0.06667)
    assert first["own_cpu_ms"] == pytest.approx(0.2)
    stream = document["ratios"][3]
    assert stream["stream"] is True
    assert stream["rps_of_compare"] == "inf"  # JSON has no infinity
    assert len(document["rows"]) == len(rows)
    assert document["table"] == text.splitlines()
    assert (tmp_path / "table.txt").read_text() == text

    markdown = (tmp_path / "table.md").read_text().splitlines()
    ratios_at = markdown.index("Ratios (same run):")
    figures_at = markdown.index("Figures:")
    assert ratios_at < figures_at
    assert markdown[ratios_at + 2].startswith("| scenario | conc | rps ÷ direct | p50 + ms |")
    assert markdown[ratios_at + 3].startswith("|---|---:|---:|")
    assert markdown[ratios_at + 4].startswith("| custom-llm-proxy → nginx | 1 | 0.0667× |")
    assert markdown[figures_at + 2].startswith("| scenario | conc | rps | p50 ms |")


def test_the_figures_note_what_the_idle_proxies_used_during_a_row(report: ModuleType) -> None:
    busy = make_row(report, "proxy", "nginx", 16, 3_000.0, cpu=0.3, noise=25.0)
    busy.extra["idle_proxies_cpu_pct"] = 3.2
    quiet = make_row(report, "floor", "nginx", 16, 6_000.0, cpu=0.12)
    quiet.extra["idle_proxies_cpu_pct"] = 0.4
    table = report.figure_table([busy, quiet], {"proxy": "ours", "floor": "floor"})
    assert table.columns[:3] == ["scenario", "conc", "rps"]
    assert table.rows[0][:7] == ["ours → nginx", "16", "3,000", "1.00", "2.00", "0", "0.300"]
    assert "the idle proxies 3 % CPU" in table.rows[0][-1]
    assert "NOISY: 25 % CPU used by others" in table.rows[0][-1]
    assert "idle proxies" not in table.rows[1][-1]  # below 1 % of a core: not worth a word
    assert "NOISY" not in table.rows[1][-1]


def test_rounds_of_one_scenario_make_one_mean_row(report: ModuleType) -> None:
    load = importlib.import_module("load")  # on the path the report fixture set
    first = make_row(report, "proxy", "nginx", 16, 1_000.0, p50=1.0, p99=3.0, cpu=0.2, noise=2.0)
    second = make_row(report, "proxy", "nginx", 16, 3_000.0, p50=2.0, p99=5.0, cpu=0.4, noise=9.0)
    row = load.mean_row([first, second])
    assert (row.rps, row.p50_ms, row.p99_ms) == (2_000.0, 1.5, 4.0)
    assert row.proxy_cpu_ms_per_request == pytest.approx(0.3)
    assert row.requests == first.requests + second.requests
    assert row.noise_pct == 9.0  # the worse of the two
    assert row.extra == {"rounds": 2, "rps_min": 1_000.0, "rps_max": 3_000.0}
    assert load.mean_row([first]) is first
