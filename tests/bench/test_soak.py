"""The fault soak (bench/soak.py) in its CI form, and the checks it classifies requests with
(bench/soak_requests.py).

The soak starts three mock upstreams (healthy, flapping, hanging) and the proxy for real, runs
16 OpenAI SDK clients for 8 s, kills the flapping upstream at 40 % and restarts it at 60 %. It
needs no nginx or wrk. With a healthy deployment always there, nothing may be lost and at least
99.9 % must succeed.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
DURATION_S = 8
CLIENTS = 16
MIN_REQUESTS = 100  # about 900 on a 2-vCPU machine; far fewer means the clients were stuck


@pytest.fixture(scope="module")
def soak_requests() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH_DIR))  # bench/ is scripts, not a package
        yield importlib.import_module("soak_requests")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("soak")
    command = [
        sys.executable,
        str(BENCH_DIR / "soak.py"),
        *("--duration", str(DURATION_S), "--clients", str(CLIENTS)),
        *("--json", str(out / "soak.json"), "--out", str(out)),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result: dict[str, Any] = json.loads((out / "soak.json").read_text())
    return result


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_soak_loses_nothing_while_deployments_fail(report: dict[str, Any]) -> None:
    assert report["passed"], report["problems"]
    assert report["lost"] == 0, report["lost_reasons"]
    assert report["sent"] >= MIN_REQUESTS
    assert report["sent"] == report["succeeded"] + report["failed_proper"]
    assert report["success_rate"] >= 0.999
    # Every failure was counted as proper only because its body was an OpenAI envelope.
    assert sum(report["errors"].values()) == report["failed_proper"]
    assert all(detail.startswith(("HTTP ", "in-band ")) for detail in report["errors"])
    assert set(report["by_kind"]) == {"chat", "chat-stream", "chat-stream-raw", "completion"}
    assert all(counts.get("ok", 0) > 0 for counts in report["by_kind"].values())
    assert report["latency_ms"]["p50"] is not None
    assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"]
    assert report["proxy_log"]["tracebacks"] == 0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_soak_exercised_every_fault(report: dict[str, Any]) -> None:
    flapping = report["flapping"]
    assert flapping["killed"] and flapping["restarted"], report["events"]
    assert flapping["stats_before_kill"]["requests"] > 0  # it took traffic before the kill
    healthy, flapped, hanging = report["deployments"]
    assert healthy["failures"] == 0
    assert flapped["failures"] > 0 and flapped["cooldowns"] > 0
    assert hanging["failures"] > 0 and hanging["cooldowns"] > 0  # read timeouts, retried
    assert report["upstream_stats"]["hanging"]["faults"] > 0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_soak_reports_proxy_memory(report: dict[str, Any]) -> None:
    rss = report["rss"]
    assert rss["before_bytes"] > 0 and rss["after_bytes"] > 0
    assert len(rss["samples"]) >= DURATION_S  # before, then one a second
    assert "second_half_slope_bytes_per_min" in rss


ENVELOPE = {"error": {"message": "boom", "type": "upstream_error", "param": None, "code": "x"}}
CHUNK = {
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "Hi."}, "finish_reason": None}],
}
LAST_CHUNK = {
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
}


@pytest.mark.parametrize(
    ("body", "proper"),
    [
        (ENVELOPE, True),
        ({"detail": "Not Found"}, False),
        ({"error": "boom"}, False),
        ({"error": {"message": "boom", "type": "server_error"}}, False),  # no param, no code
        ({"error": {**ENVELOPE["error"], "message": " "}}, False),
        ({**ENVELOPE, "extra": 1}, False),
    ],
)
def test_envelope_check(soak_requests: ModuleType, body: object, proper: bool) -> None:
    assert (soak_requests.envelope_problem(body) is None) is proper


@pytest.mark.parametrize(
    ("events", "verdict"),
    [
        ([CHUNK, LAST_CHUNK, "[DONE]"], "ok"),
        ([CHUNK, LAST_CHUNK], "lost"),  # cut before [DONE]
        ([CHUNK, "[DONE]"], "lost"),  # no finish_reason
        ([CHUNK, LAST_CHUNK, "[DONE]", "[DONE]"], "lost"),
        (["[DONE]"], "lost"),  # no text
        ([ENVELOPE, "[DONE]"], "error"),  # in-band error, then the end
        ([{"error": {"message": "boom"}}, "[DONE]"], "lost"),
        ([CHUNK, "{not json", LAST_CHUNK, "[DONE]"], "lost"),
    ],
)
def test_stream_check(soak_requests: ModuleType, events: list[object], verdict: str) -> None:
    payloads = [event if isinstance(event, str) else json.dumps(event) for event in events]
    assert soak_requests.check_events(payloads).verdict == verdict
