"""The benchmark's smoke mode, as CI runs it: a few seconds of concurrent load, no wrong answer.

It starts nginx, the latency upstream and the proxy for real (bench/run.py --smoke) on free ports,
so it needs nginx and wrk (`apt-get install nginx wrk`); without them it is skipped. It asserts
nothing about speed, only that every request through the proxy got a right answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)]
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
    (ours,) = results["proxies"]
    assert ours["startup_s"] > 0
    assert ours["rss_after_bytes"] > 0
