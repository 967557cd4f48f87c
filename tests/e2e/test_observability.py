"""Observability with real processes: `serve --workers 2 --log-format json` in front of a mock.

/metrics must add up both workers whichever of them answers the scrape, and the log must be
JSON lines only, with one access line per API request and never the client's key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import (
    Server,
    clean_env,
    free_port,
    running_mock,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-observability-secret"
KEY_NAME = "e2e-team"
MODEL = "obs"
WAVE = 8  # concurrent requests, each on its own connection, so that both workers take some
MAX_WAVES = 15


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("observability")


@pytest.fixture(scope="module")
def mock(log_dir: Path) -> Iterator[Server]:
    with running_mock(log_dir, "mock-upstream", ["--latency", "fixed:20"]) as server:
        yield server


@pytest.fixture(scope="module")
def metrics_dir(log_dir: Path) -> Path:
    directory = log_dir / "prometheus"
    directory.mkdir()
    # An earlier run's file: `serve` must empty the directory (this one would not even parse).
    (directory / "counter_1.db").write_bytes(b"not a metrics file")
    return directory


@pytest.fixture(scope="module")
def proxy(log_dir: Path, mock: Server, metrics_dir: Path) -> Iterator[Server]:
    config = {
        "models": [{"name": MODEL, "api_base": f"{mock.url}/inference"}],
        "api_keys": [{"key": KEY, "name": KEY_NAME}],
    }
    path = log_dir / "observability.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = ["serve", "--config", str(path), "--port", str(port), "--workers", "2"]
    argv += ["--log-format", "json"]
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server = start_server("proxy-2-workers", argv, port=port, log_dir=log_dir, env=env)
    try:
        server.wait_ready("/health")
        wait_until(lambda: server.log_text().count("Application startup complete") == 2, 30)
        yield server
    finally:
        server.stop()


def chat(proxy: Server, request_id: str) -> httpx.Response:
    """One request on a connection of its own (a kept-alive one would stay with one worker)."""
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def scraped_requests(proxy: Server) -> float:
    text = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "proxy_requests_total"
        and sample.labels == {"model": MODEL, "key": KEY_NAME, "status": "200"}
    )


def requests_per_process(metrics_dir: Path) -> dict[str, float]:
    """What each process has written to its counter file so far."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])
        counts[path.stem] = sum(
            sample.value
            for metric in merged
            for sample in metric.samples
            if sample.name == "proxy_requests_total" and sample.labels.get("model") == MODEL
        )
    return counts


def access_lines(proxy: Server) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in proxy.log_text().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "app.access"]


def test_metrics_add_up_both_workers(proxy: Server, metrics_dir: Path) -> None:
    assert not (metrics_dir / "counter_1.db").exists()
    sent = 0
    with ThreadPoolExecutor(WAVE) as pool:
        for wave in range(MAX_WAVES):
            ids = [f"metrics-{wave}-{i}" for i in range(WAVE)]
            list(pool.map(partial(chat, proxy), ids))
            sent += WAVE
            # each worker writes its counts to its file within a second
            wait_until(partial(files_count, metrics_dir, sent))
            served = [n for n in requests_per_process(metrics_dir).values() if n > 0]
            if len(served) >= 2:
                break
    assert len(served) == 2, f"one worker took all {sent} requests"
    for _ in range(6):  # scrapes on fresh connections: either worker may answer each
        wait_until(partial(scrape_counts, proxy, sent))


def files_count(metrics_dir: Path, total: int) -> bool:
    return sum(requests_per_process(metrics_dir).values()) == total


def scrape_counts(proxy: Server, total: int) -> bool:
    return scraped_requests(proxy) == total


def test_the_log_is_json_lines_with_one_access_line_per_request(proxy: Server) -> None:
    ids = [f"log-{os.getpid()}-{i}" for i in range(5)]
    responses = [chat(proxy, request_id) for request_id in ids]
    stream = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        headers={"authorization": f"Bearer {KEY}", "x-request-id": "log-stream"},
        timeout=30,
    )
    assert stream.status_code == 200 and stream.text.endswith("data: [DONE]\n\n")
    refused = httpx.get(f"{proxy.url}/v1/models", headers={"authorization": "Bearer sk-wrong"})
    assert refused.status_code == 401
    httpx.get(f"{proxy.url}/health")

    def logged() -> dict[str, dict[str, Any]]:
        return {line["request_id"]: line for line in access_lines(proxy)}

    wanted = {*ids, "log-stream", refused.headers["x-request-id"]}
    wait_until(lambda: wanted <= set(logged()))

    text = proxy.log_text()
    entries = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(
        entry["logger"].startswith("uvicorn") and "Started server process" in entry["message"]
        for entry in entries
    )
    assert KEY not in text

    lines = logged()
    for request_id, response in zip(ids, responses, strict=True):
        line = lines[request_id]
        assert line["message"] == "POST /v1/chat/completions 200"
        assert (line["key_name"], line["model"], line["deployment"]) == (KEY_NAME, MODEL, "obs[0]")
        assert line["completion_tokens"] == response.json()["usage"]["completion_tokens"]
        assert line["upstream_ms"] >= 20.0  # the mock's latency
        # The header is taken when the answer starts, the line when it is done (same start,
        # same upstream time): the line's overhead is never less, whatever the machine's load.
        # Each is rounded to the microsecond.
        header_ms = float(response.headers["x-proxy-overhead-ms"])
        assert header_ms - 0.002 <= line["overhead_ms"] < line["latency_ms"]
        assert "prompt" not in line
    assert lines["log-stream"]["stream"] is True
    assert (lines[refused.headers["x-request-id"]]["status"]) == 401
    assert not [line for line in access_lines(proxy) if line["path"] in ("/health", "/metrics")]
    counted = [line["request_id"] for line in access_lines(proxy)]
    assert len(counted) == len(set(counted))  # one line per request
