"""`serve --workers 2` with PROXY_REDIS_URL: the workers share one rate-limit budget and one
set of metrics.

A real redis-server of the test's own and a real `python -m app serve --workers 2` in front of
the mock upstream. A key with rpm 10 sends 20 requests at once, each on a connection of its own
so that both workers take some: exactly 10 are served and 10 refused, and GET /metrics (whichever
worker answers it) counts exactly that. tests/e2e/test_rate_limits.py does the same across two
`serve` processes; tests/e2e/test_observability.py checks metrics of two workers without limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
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
from tests.redis_server import RedisServer, require_redis_server

pytestmark = pytest.mark.e2e

RPM = 10
BURST = 2 * RPM
MODEL = "m"
# One key per attempt: an attempt counts only when both workers took part in it (almost always
# the first), and a key's budget cannot be used twice within the minute.
KEYS = {f"sk-workers-{index}": f"team-{index}" for index in range(4)}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_redis_server()
    return tmp_path_factory.mktemp("workers-limits")


@pytest.fixture(scope="module")
def redis_server(log_dir: Path) -> Iterator[RedisServer]:
    with RedisServer.start(log_dir) as server:
        yield server


@pytest.fixture(scope="module")
def upstream(log_dir: Path) -> Iterator[Server]:
    with running_mock(log_dir, "mock") as server:
        yield server


@pytest.fixture(scope="module")
def metrics_dir(log_dir: Path) -> Path:
    directory = log_dir / "prometheus"
    directory.mkdir()
    return directory


@pytest.fixture(scope="module")
def proxy(
    log_dir: Path, upstream: Server, redis_server: RedisServer, metrics_dir: Path
) -> Iterator[Server]:
    config = {
        "models": [{"name": MODEL, "api_base": f"{upstream.url}/inference"}],
        "api_keys": [{"key": key, "name": name, "rpm": RPM} for key, name in KEYS.items()],
    }
    path = log_dir / "workers.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    argv = ["serve", "--config", str(path), "--port", str(port), "--workers", "2"]
    # The metrics directory named, so that the test can read each worker's own counts.
    env = clean_env(PROXY_REDIS_URL=redis_server.url, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server = start_server("proxy-2-workers", argv, port=port, log_dir=log_dir, env=env)
    try:
        server.wait_ready("/health")
        wait_until(lambda: server.log_text().count("Application startup complete") == 2, 30)
        yield server
    finally:
        server.stop()


def burst(proxy: Server, key: str) -> list[httpx.Response]:
    """BURST chat completions at once, each on a connection of its own: either worker may
    accept each (a kept-alive connection would stay with one worker)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with (
        httpx.Client(base_url=proxy.url, timeout=30, limits=limits) as client,
        ThreadPoolExecutor(BURST) as pool,
    ):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        headers = {"authorization": f"Bearer {key}"}
        post = partial(client.post, "/v1/chat/completions", json=body, headers=headers)
        return list(pool.map(lambda _: post(), range(BURST)))


def requests_per_worker(metrics_dir: Path, key_name: str) -> list[float]:
    """The requests of one key each worker process has counted in its metrics file so far."""
    counts = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        merged = MultiProcessCollector.merge([str(path)])
        counts.append(
            sum(
                sample.value
                for metric in merged
                for sample in metric.samples
                if sample.name == "proxy_requests_total" and sample.labels["key"] == key_name
            )
        )
    return counts


def scraped(proxy: Server, key_name: str) -> dict[str, float]:
    """From GET /metrics: the key's requests by status, and its 429s from the limiter."""
    text = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("key") != key_name:
                continue
            if sample.name == "proxy_requests_total":
                status = sample.labels["status"]
                found[status] = found.get(status, 0) + sample.value
            elif sample.name == "proxy_rate_limited_total":
                found["rate_limited"] = found.get("rate_limited", 0) + sample.value
    return found


def test_two_workers_share_one_budget_and_count_it_once(
    proxy: Server, redis_server: RedisServer, metrics_dir: Path
) -> None:
    for key, name in KEYS.items():
        responses = burst(proxy, key)

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * RPM + [429] * RPM, statuses
        served = [response for response in responses if response.status_code == 200]
        remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in served)
        assert remaining == list(range(RPM))  # each admission seen by one worker exactly once
        for response in responses:
            if response.status_code == 429:
                error = response.json()["error"]
                assert error["code"] == "rate_limit_exceeded"
                assert f"of key '{name}': Limit {RPM}, Used {RPM}" in error["message"]
        assert redis_server.client().zcard(f"clp:rl:key:{name}:requests") == RPM

        # Each worker writes its counts to its own file within a second (app.telemetry).
        wait_until(lambda name=name: sum(requests_per_worker(metrics_dir, name)) == BURST)
        if len([count for count in requests_per_worker(metrics_dir, name) if count]) == 2:
            break
    else:
        pytest.fail(f"one worker took every request of all {len(KEYS)} bursts")

    expected = {"200": RPM, "429": RPM, "rate_limited": RPM}
    for _ in range(6):  # scrapes on fresh connections: either worker may answer each
        assert scraped(proxy, name) == expected
