"""The benchmark's smoke mode, as CI runs it: a few seconds of concurrent load, no wrong answer.

It starts nginx, the latency upstream, the proxy and the forwarder floor for real
(bench/run.py --smoke --with-floor) on free ports, so it needs nginx and wrk
(`apt-get install nginx wrk`); without them it is skipped. It asserts nothing about speed, only
that every request through the proxy and the floor got a right answer, and that the report
leads with the ratios to both baselines of the run.
"""

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
TOOLS = ("nginx", "wrk", "taskset")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]


@pytest.mark.skipif(
    bool(MISSING), reason=f"the benchmark needs {', '.join(MISSING)} (apt-get install nginx wrk)"
)
@pytest.mark.timeout(300)
def test_smoke_benchmark_has_no_errors(tmp_path: Path) -> None:
    # Without port options the benchmark picks free loopback ports itself.
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--with-floor"]
    command += ["--rounds", "2"]  # ours, the floor, the floor, ours: one mean row each
    command += ["--out", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["problems"] == []
    proxy_rows = {
        (row["upstream"], row["conc"], row["stream"]): row
        for row in results["rows"]
        if row["target"] == "proxy"
    }
    assert set(proxy_rows) == {
        ("nginx", 16, False),
        ("nginx", 64, False),
        ("slow", 64, False),
        ("nginx", 16, True),
    }
    for row in proxy_rows.values():
        assert row["checked"], row
        assert row["requests"] > 0, row
        assert row["errors"] == row["non2xx"] == row["bad_bodies"] == row["socket_errors"] == 0, row
        assert row["proxy_cpu_ms_per_request"] > 0, row
        assert row["extra"]["rounds"] == 2, row
        assert row["extra"]["rps_min"] <= row["rps"] <= row["extra"]["rps_max"], row
    floor_rows = [row for row in results["rows"] if row["target"] == "floor"]
    assert {(r["upstream"], r["conc"], r["stream"]) for r in floor_rows} == set(proxy_rows)
    for row in floor_rows:
        assert row["requests"] > 0 and row["errors"] == 0, row
    ours, floor = results["proxies"]
    assert (ours["target"], floor["target"]) == ("proxy", "floor")
    for proxy in (ours, floor):
        assert proxy["startup_s"] > 0
        assert proxy["rss_after_bytes"] > 0

    # The report leads with the ratios: ours and the floor's, to every baseline of the run.
    assert next(iter(results)) == "ratios"
    ratios = {(r["target"], r["upstream"], r["conc"], r["stream"]): r for r in results["ratios"]}
    assert set(ratios) == {("proxy", *key) for key in proxy_rows} | {
        ("floor", *key) for key in proxy_rows
    }
    for key, row in proxy_rows.items():
        ratio = ratios[("proxy", *key)]
        assert ratio["rps_of_direct"] > 0 and ratio["rps_of_floor"] > 0, ratio
        assert ratio["cpu_of_floor"] > 0, ratio
        assert ratio["p50_added_ms"] is not None, ratio
        floor_row = next(r for r in floor_rows if (r["upstream"], r["conc"], r["stream"]) == key)
        assert ratio["rps_of_floor"] == pytest.approx(row["rps"] / floor_row["rps"], rel=1e-3)
    table = (tmp_path / "table.txt").read_text()
    assert table.index("RATIOS") < table.index("FIGURES")
    assert done.stdout.index("RATIOS") < done.stdout.index("FIGURES")
    assert "| scenario | conc | rps ÷ direct |" in (tmp_path / "table.md").read_text()


@pytest.fixture(scope="module")
def run_module() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "bench"))  # bench/ is scripts, not a package
        yield importlib.import_module("run")


def test_with_floor_starts_the_forwarder_floor_on_a_port_of_its_own(run_module: ModuleType) -> None:
    args = run_module.parse_args(["--with-floor", "--yardstick", "--slow-ms", "20"])
    floor_port = int(args.floor_url.removeprefix("http://127.0.0.1:"))
    ports = {args.nginx_port, args.slow_port, args.proxy_port, floor_port}
    assert len(ports) == 4
    assert args.compare_url != args.floor_url
    assert args.floor_cmd == (
        f"{sys.executable} {ROOT / 'bench'}/floors.py forwarder --slow-ms 20 --port {floor_port}"
        " --nginx-url $BENCH_NGINX_URL --slow-url $BENCH_SLOW_URL"
    )
    assert run_module.parse_args([]).floor_cmd is None


def test_with_floor_and_floor_forwarder_are_one_too_many(
    run_module: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_module.parse_args(["--with-floor", "--floor", "forwarder"])
    assert exited.value.code == 2
    assert "already measures the forwarder floor" in capsys.readouterr().err
