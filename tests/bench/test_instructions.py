"""bench/instructions.py as a short run: the proxy under valgrind for real, in front of nginx,
compared with the same commit checked out into a worktree. It asserts the counts are there and
plausible, and that the same code costs about the same, nothing about speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx")
def test_the_same_commit_costs_the_same_per_request(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, str(ROOT / "bench" / "instructions.py"), "--compare", "HEAD"]
    argv += ["--rows", "plain", "--requests", "60", "--warmup", "20", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    counts = json.loads(out.read_text())["plain"]
    assert set(counts) == {"custom-llm-proxy", "HEAD"}
    # A request through the proxy parses HTTP twice, JSON four times and logs a line: far more
    # than 100,000 instructions; far fewer than 10 million.
    assert all(100_000 < count < 10_000_000 for count in counts.values()), counts
    assert 0.9 < counts["custom-llm-proxy"] / counts["HEAD"] < 1.1, counts
    assert "ours ÷ compared" in done.stdout
