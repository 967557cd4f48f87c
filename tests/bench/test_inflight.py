"""bench/inflight.py, the many-requests-in-flight row, as a short smoke run: the upstream, the
direct baseline and the proxy for real, on free ports; it asserts the row's figures (whole run
and steady part) are there and that nothing failed, nothing about speed."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MISSING = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]


@pytest.fixture(scope="module")
def load() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "bench"))  # bench/ is scripts, not a package
        yield importlib.import_module("load")


@pytest.mark.parametrize(
    ("now", "duration", "warmup", "period", "window"),
    [
        (100.2, 60, 20, 2.0, (121, 159)),  # 19 waves of 2 s; 159.7 would cut one
        (100.9, 60, 20, 2.0, (121, 159)),
        (100.0, 60, 20, 0.2, (120, 159)),  # short waves: whole seconds
        (100.0, 60, 20, 5.0, (120, 155)),
        (100.0, 25, 10, 2.0, (110, 124)),
        (100.0, 60, 0, 2.0, None),  # no warm-up: no steady part
        (100.0, 10, 9, 2.0, None),  # no whole period left
    ],
)
def test_the_steady_window_holds_whole_periods_after_the_warmup(
    load: ModuleType,
    now: float,
    duration: float,
    warmup: float,
    period: float,
    window: tuple[int, int] | None,
) -> None:
    assert load._steady_window(now, duration, warmup, period) == window


@pytest.mark.skipif(
    bool(MISSING), reason=f"the benchmark needs {', '.join(MISSING)} (apt-get install wrk)"
)
@pytest.mark.timeout(180)
def test_inflight_row_gives_its_figures(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "inflight.py"), "--conc", "64"]
    command += ["--delay-ms", "200", "--duration", "4", "--warmup", "1"]
    command += ["--quiet-wait", "0", "--out", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["problems"] == []
    assert results["settings"]["conc"] == 64 and results["settings"]["delay_ms"] == 200
    rows = {row["target"]: row for row in results["rows"]}
    assert set(rows) == {"direct", "proxy"}
    for row in rows.values():
        assert (row["upstream"], row["conc"]) == ("slow", 64), row
        assert row["checked"] and row["requests"] > 0, row
        assert row["errors"] == 0, row
        assert row["p50_ms"] >= 200 and row["p99_ms"] >= row["p50_ms"], row
        assert row["extra"]["ideal_rps"] == 320, row
        # The steady part: whole seconds from the first after the 1 s warm-up, within the 4 s.
        assert row["extra"]["steady_s"] in (1, 2), row
        assert row["extra"]["steady_rps"] > 0, row
    assert results["settings"]["warmup_s"] == 1
    assert rows["proxy"]["extra"]["vs_direct_pct"] > 0
    assert rows["proxy"]["extra"]["steady_vs_direct_pct"] > 0
    assert rows["proxy"]["extra"]["steady_cpu_ms_per_request"] > 0
    assert rows["proxy"]["proxy_cpu_ms_per_request"] > 0
    (proxy,) = results["proxies"]
    assert proxy["rss_idle_bytes"] > 0 and proxy["rss_after_bytes"] > 0
    table = (tmp_path / "table.txt").read_text()
    assert "64 in flight x 200 ms upstream (ideal 320 rps)" in table
    assert "custom-llm-proxy → slow" in table and "RSS (process tree)" in table
    assert "vs direct" in table and "steady vs direct" in table
    assert "# steady: from the first whole second 1 s in" in table


@pytest.mark.skipif(
    bool(MISSING), reason=f"the benchmark needs {', '.join(MISSING)} (apt-get install wrk)"
)
@pytest.mark.timeout(180)
def test_compare_cmd_measures_another_command_in_the_same_run(tmp_path: Path) -> None:
    other = f"{sys.executable} -m app"  # e.g. an older checkout's, from its own directory
    command = [sys.executable, str(ROOT / "bench" / "inflight.py"), "--conc", "32"]
    command += ["--delay-ms", "200", "--duration", "2", "--quiet-wait", "0", "--out", str(tmp_path)]
    command += ["--compare-config", str(ROOT / "bench" / "proxy_config.yaml")]
    command += ["--compare-cmd", other, "--compare-label", "other checkout"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["problems"] == []
    rows = {row["target"]: row for row in results["rows"]}
    assert set(rows) == {"direct", "proxy", "compare"}
    assert rows["compare"]["requests"] > 0 and rows["compare"]["errors"] == 0
    ours, compared = results["proxies"]
    assert compared["label"] == "other checkout"
    assert compared["command"].startswith(other + " serve --config ")
    assert not ours["command"].startswith(other)
    assert "other checkout → slow" in (tmp_path / "table.txt").read_text()
