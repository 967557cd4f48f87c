"""bench/batching.py, batching off and on against the GPU-like mock, as a short smoke run: the
mock and the proxy for real, on free ports; it asserts every row is there without errors and
that the batched model shared its upstream calls, nothing about speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_a_short_run_measures_both_models_at_each_concurrency(tmp_path: Path) -> None:
    argv = [sys.executable, str(ROOT / "bench" / "batching.py"), "--out", str(tmp_path)]
    argv += ["--duration", "1", "--warmup", "0.5", "--conc", "8", "--conc", "1"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(row["conc"], row["model"]) for row in rows] == [
        (8, "plain"),
        (8, "batched"),
        (1, "plain"),
        (1, "batched"),
    ]
    assert all(row["errors"] == 0 and row["answers"] > 0 for row in rows)
    by = {(row["conc"], row["model"]): row for row in rows}
    assert by[8, "plain"]["calls_per_request"] == 1.0
    assert by[8, "batched"]["calls_per_request"] < 0.5  # 8 clients, 4 GPU slots: shared calls
    assert by[1, "batched"]["calls_per_request"] == 1.0  # a lone client has no company
    assert "| 8 | batched |" in (tmp_path / "table.txt").read_text()
