"""`serve`'s metrics directory for several workers (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.cli import _share_metrics

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@pytest.fixture(autouse=True)
def no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)


def test_one_worker_needs_no_directory() -> None:
    assert _share_metrics(1) is None
    assert VARIABLE not in os.environ


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_several_workers_get_a_fresh_directory_before_they_start(temp: Path) -> None:
    made = _share_metrics(2)
    assert made is not None and made.is_dir() and made.parent == temp
    assert made.name.startswith(f"custom-llm-proxy-metrics-{os.getpid()}-")
    assert list(made.iterdir()) == []
    assert os.environ[VARIABLE] == str(made)


def test_a_directory_left_by_a_killed_serve_is_removed_at_the_next_start(temp: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    left = temp / f"custom-llm-proxy-metrics-{finished.pid}-abc123"
    running = temp / f"custom-llm-proxy-metrics-{os.getpid()}-def456"
    for directory in (left, running):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"x")
    made = _share_metrics(2)
    assert sorted(path.name for path in temp.iterdir()) == sorted([running.name, made.name])


@pytest.mark.parametrize("workers", [1, 4])
def test_a_named_directory_is_emptied_of_an_earlier_runs_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    named = tmp_path / "metrics"
    named.mkdir()
    (named / "counter_123.db").write_bytes(b"old")
    (named / "gauge_livesum_123.db").write_bytes(b"old")
    (named / "README").write_text("not ours", encoding="utf-8")
    monkeypatch.setenv(VARIABLE, str(named))

    assert _share_metrics(workers) is None  # not made here: not removed at exit
    assert sorted(path.name for path in named.iterdir()) == ["README"]


def test_a_named_directory_that_does_not_exist_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "deep" / "metrics"
    monkeypatch.setenv(VARIABLE, str(named))
    assert _share_metrics(2) is None
    assert named.is_dir()
