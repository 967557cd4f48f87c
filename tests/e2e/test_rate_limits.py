"""Rate limits across real processes: two `serve` processes share one budget through a real
redis-server of the test's own, and the fail_open / fail_closed policies hold while Redis is
killed, and end when it is back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import (
    Server,
    clean_env,
    running_mock,
    serve_config,
    wait_until,
)
from tests.redis_server import RedisServer, require_redis_server

pytestmark = pytest.mark.e2e

KEY = "sk-team"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_redis_server()
    return tmp_path_factory.mktemp("rate-limits")


@pytest.fixture(scope="module")
def upstream(log_dir: Path) -> Iterator[Server]:
    with running_mock(log_dir, "mock") as server:
        yield server


@pytest.fixture
def redis_server(log_dir: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    with RedisServer.start(log_dir, name=f"redis-{request.node.name}") as server:
        yield server


def start_proxy(
    log_dir: Path, name: str, upstream: Server, redis: RedisServer, **rate_limit: Any
) -> Server:
    config = {
        "models": [{"name": "m", "api_base": f"{upstream.url}/inference"}],
        "api_keys": [{"key": KEY, "name": "team", "rpm": 20}],
        "rate_limit": {"retry_seconds": 0.2, **rate_limit},
    }
    return serve_config(log_dir, name, config, clean_env(PROXY_REDIS_URL=redis.url))


@pytest.fixture
def proxies(
    log_dir: Path, upstream: Server, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[list[Server]]:
    name = request.node.name
    servers: list[Server] = []
    try:
        for index in range(2):
            servers.append(start_proxy(log_dir, f"{name}-{index}", upstream, redis_server))
        yield servers
    finally:
        for server in servers:
            server.stop()


def post(server: Server, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=BODY, headers=headers, timeout=30)


def test_two_proxies_share_one_budget_exactly(
    proxies: list[Server], redis_server: RedisServer
) -> None:
    targets = [proxies[i % 2] for i in range(40)]  # alternated across both processes

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(post, targets))

    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(ok), len(limited)) == (20, 20), [r.status_code for r in responses]
    for response in ok:
        assert response.json()["object"] == "chat.completion"
        assert response.headers["x-ratelimit-limit-requests"] == "20"
        assert 0 <= int(response.headers["x-ratelimit-remaining-requests"]) < 20
    for response in limited:
        error = response.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert error["code"] == "rate_limit_exceeded"
        assert "of key 'team': Limit 20, Used 20" in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-ratelimit-limit-requests"] == "20"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"]
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok)
    assert remaining == list(range(20))  # each admission seen by one process exactly once
    assert redis_server.client().zcard("clp:rl:key:team:requests") == 20
    # Refused requests still get their envelope; a key without a budget problem is untouched.
    assert post(proxies[0], {"Authorization": "Bearer sk-wrong"}).status_code == 401
    assert httpx.get(f"{proxies[1].url}/health", timeout=5).status_code == 200


def test_fail_open_keeps_serving_while_redis_is_down(
    log_dir: Path, upstream: Server, redis_server: RedisServer
) -> None:
    proxy = start_proxy(log_dir, "fail-open", upstream, redis_server, policy="fail_open")
    try:
        assert [post(proxy).status_code for _ in range(21)] == [200] * 20 + [429]

        redis_server.kill()
        during = [post(proxy) for _ in range(5)]

        assert [r.status_code for r in during] == [200] * 5  # served, unlimited
        assert all("x-ratelimit-limit-requests" not in r.headers for r in during)
        line = proxy.wait_for_log("cannot be reached")
        assert "WARNING" in line and "policy fail_open" in line
        assert proxy.log_text().count("cannot be reached") == 1  # once per incident

        redis_server.restart()  # empty: a fresh budget
        wait_until(lambda: "x-ratelimit-limit-requests" in post(proxy).headers, seconds=10)
        proxy.wait_for_log("answers again")
    finally:
        proxy.stop()


def test_fail_closed_refuses_while_redis_is_down_then_resumes(
    log_dir: Path, upstream: Server, redis_server: RedisServer
) -> None:
    proxy = start_proxy(log_dir, "fail-closed", upstream, redis_server, policy="fail_closed")
    try:
        assert post(proxy).status_code == 200

        redis_server.kill()
        refused = post(proxy)

        assert refused.status_code == 503
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "rate_limit_backend_unavailable")
        assert refused.headers["retry-after"] == "1"
        assert httpx.get(f"{proxy.url}/health", timeout=5).status_code == 200  # still alive
        line = proxy.wait_for_log("cannot be reached")
        assert "policy fail_closed" in line

        redis_server.restart()
        wait_until(lambda: post(proxy).status_code == 200, seconds=10)
        resumed = post(proxy)
        assert resumed.status_code == 200
        assert resumed.headers["x-ratelimit-limit-requests"] == "20"
    finally:
        proxy.stop()
