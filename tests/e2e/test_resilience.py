"""Resilience with real processes: a proxy in front of several mock upstreams, each with its
faults, and the OpenAI SDK (or httpx, for what the SDK hides) as the client.

One module-wide proxy serves models whose deployments are the mocks below; tests whose state
must not be shared (cooldown, readiness, shutdown) start a proxy of their own.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.servers import (
    MOCK_READY,
    Server,
    free_port,
    launch_mock,
    mock_stats,
    scrape,
    serve_config,
    wait_until,
)

pytestmark = pytest.mark.e2e

MOCKS = {
    "good": [],
    "w3": [],  # the weighted pair
    "w1": [],
    "backup": [],
    "always-503": ["--error-rate", "1", "--error-status", "503"],
    "rate-limited": ["--error-rate", "1", "--error-status", "429", "--retry-after", "7"],
    "slow": ["--latency", "fixed:700"],
    "hang": ["--fault", "hang"],
}
MESSAGES = [{"role": "user", "content": "Say something"}]


def start_mocks(log_dir: Path, plans: dict[str, list[str]]) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    try:
        for name, args in plans.items():
            servers[name] = launch_mock(log_dir, name, args)
        for server in servers.values():
            server.wait_ready(MOCK_READY)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def start_proxy(log_dir: Path, name: str, config: dict[str, Any]) -> Server:
    return serve_config(log_dir, name, config)


def base(server: Server) -> str:
    return f"{server.url}/inference"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resilience")


@pytest.fixture(scope="module")
def mocks(log_dir: Path) -> Iterator[dict[str, Server]]:
    servers = start_mocks(log_dir, MOCKS)
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def proxy(log_dir: Path, mocks: dict[str, Server]) -> Iterator[Server]:
    dead = f"http://127.0.0.1:{free_port()}/inference"
    config = {
        "models": [
            {
                "name": "ha",
                "routing": "weighted",  # in order: dead, then 503, then the good one
                "deployments": [
                    {"api_base": dead},
                    {"api_base": base(mocks["always-503"])},
                    {"api_base": base(mocks["good"])},
                ],
                "cooldown": {"failures": 1000},
            },
            {
                "name": "weighted",
                "routing": "weighted",
                "deployments": [
                    {"api_base": base(mocks["w3"]), "weight": 3},
                    {"api_base": base(mocks["w1"]), "weight": 1, "upstream_model": "other"},
                ],
            },
            {"name": "primary", "api_base": dead, "fallbacks": ["backup"], "max_retries": 1},
            {"name": "backup", "api_base": base(mocks["backup"]), "prompt_template": "chatml"},
            {
                "name": "narrow",
                "api_base": base(mocks["slow"]),
                "max_concurrency": 2,
                "queue": {"size": 2, "timeout": 30},
            },
            {"name": "limited", "api_base": base(mocks["rate-limited"]), "max_retries": 1},
            {"name": "hangs", "api_base": base(mocks["hang"]), "timeout": 60},
            {
                "name": "huge",
                "api_base": base(mocks["good"]),
                "headers": {"x-mock-fault": "huge:2000000"},
                "max_retries": 0,
            },
            {
                "name": "trickle",
                "api_base": base(mocks["good"]),
                "headers": {"x-mock-fault": "trickle"},
                "timeout": 0.5,
                "max_retries": 0,
            },
        ],
        "max_response_bytes": 1_000_000,
    }
    server = start_proxy(log_dir, "proxy", config)
    yield server
    server.stop()


@pytest.fixture
def client(proxy: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def chat(client: openai.OpenAI, model: str) -> str:
    completion = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8)
    assert completion.model == model
    content = completion.choices[0].message.content
    assert content
    return content


def test_retries_pass_over_a_dead_and_a_failing_deployment(
    client: openai.OpenAI, mocks: dict[str, Server]
) -> None:
    before = mock_stats(mocks["always-503"])["requests"]

    for _ in range(3):
        chat(client, "ha")

    assert mock_stats(mocks["good"])["requests"] >= 3
    assert mock_stats(mocks["always-503"])["requests"] > before


def test_a_stream_is_retried_before_its_first_byte(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="ha", messages=MESSAGES, max_tokens=8, stream=True
    )
    chunks = list(stream)

    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks)


def test_weighted_routing_splits_in_proportion(
    client: openai.OpenAI, mocks: dict[str, Server]
) -> None:
    for _ in range(40):
        chat(client, "weighted")

    assert mock_stats(mocks["w3"])["requests"] == 30
    assert mock_stats(mocks["w1"])["requests"] == 10


def test_fallback_model_answers_when_every_deployment_failed(
    client: openai.OpenAI, mocks: dict[str, Server], proxy: Server
) -> None:
    before = mock_stats(mocks["backup"])["requests"]

    content = chat(client, "primary")

    assert content
    assert mock_stats(mocks["backup"])["requests"] == before + 1
    assert "falling back to backup" in proxy.log_text()


def test_backpressure_queues_then_refuses_with_503_overloaded(
    proxy: Server, mocks: dict[str, Server]
) -> None:
    # 2 in flight + 2 queued are served; the 5th and 6th find the queue full.
    body = {"model": "narrow", "messages": MESSAGES, "max_tokens": 4}
    barrier = threading.Barrier(6)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            barrier.wait()
            return http.post("/v1/chat/completions", json=body)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 200, 200, 200, 503, 503]
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "overloaded"
            assert response.headers["retry-after"] == "1"
    assert mock_stats(mocks["slow"])["requests"] == 4


def test_the_sdk_sees_overloaded_as_a_retryable_server_error(
    proxy: Server, mocks: dict[str, Server]
) -> None:
    # Fill the model's 2 slots and 2 queue places from other threads, then ask with the SDK.
    body = {"model": "narrow", "messages": MESSAGES, "max_tokens": 4}
    with ThreadPoolExecutor(4) as pool:
        busy = [
            pool.submit(httpx.post, f"{proxy.url}/v1/chat/completions", json=body, timeout=30)
            for _ in range(4)
        ]
        wait_until(lambda: mock_stats(mocks["slow"])["in_flight"] == 2)
        # and the other two in the proxy, past the upstream's two (they may arrive after them)
        wait_until(lambda: requests_in_flight(proxy, "narrow") == 4)
        with (
            openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0) as sdk,
            pytest.raises(openai.InternalServerError) as caught,
        ):
            sdk.chat.completions.create(model="narrow", messages=MESSAGES)
        assert all(future.result().status_code == 200 for future in busy)

    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"


def requests_in_flight(proxy: Server, model: str) -> float:
    """The proxy's `proxy_requests_in_flight` gauge for a model."""
    return sum(
        sample.value
        for sample in scrape(proxy)
        if sample.name == "proxy_requests_in_flight" and sample.labels == {"model": model}
    )


def test_upstream_retry_after_reaches_the_client(proxy: Server, mocks: dict[str, Server]) -> None:
    before = mock_stats(mocks["rate-limited"])["requests"]

    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "limited", "messages": MESSAGES},
        timeout=30,
    )

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "7"
    # 7 s is longer than a retry may wait, and there is no other deployment: one attempt
    assert mock_stats(mocks["rate-limited"])["requests"] == before + 1


def test_client_disconnect_cancels_a_non_streamed_upstream_request(
    proxy: Server, mocks: dict[str, Server]
) -> None:
    hang = mocks["hang"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "hangs", "messages": MESSAGES},
            timeout=httpx.Timeout(10, read=1.0),
        )

    # The proxy notices the client is gone and drops its upstream request, long before the
    # model's 60 s timeout.
    wait_until(lambda: mock_stats(hang)["in_flight"] == 0, seconds=10)
    proxy.wait_for_log("client closed the connection; upstream request cancelled")


def test_client_disconnect_cancels_a_streamed_upstream_request(
    proxy: Server, mocks: dict[str, Server]
) -> None:
    hang = mocks["hang"]
    before = mock_stats(hang)["requests"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "hangs", "messages": MESSAGES, "stream": True},
            timeout=httpx.Timeout(10, read=1.0),
        )

    assert mock_stats(hang)["requests"] == before + 1
    wait_until(lambda: mock_stats(hang)["in_flight"] == 0, seconds=30)


def test_an_oversized_answer_is_a_502_and_the_proxy_carries_on(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, "huge")

    assert caught.value.status_code == 502
    assert "larger than 1000000 bytes" in caught.value.message
    assert chat(client, "ha")


def test_a_slowloris_upstream_is_cut_by_the_timeout(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, "trickle")

    assert caught.value.status_code == 504
    assert "did not answer within 0.5 s" in caught.value.message


# proxies of their own


def test_cooldown_skips_a_dead_deployment_then_a_probe_brings_it_back(log_dir: Path) -> None:
    mocks = start_mocks(log_dir, {"steady": [], "flaky": []})
    flaky_port = mocks["flaky"].port
    config = {
        "models": [
            {
                "name": "m",
                "routing": "weighted",
                "deployments": [
                    {"api_base": base(mocks["flaky"])},
                    {"api_base": base(mocks["steady"])},
                ],
                "cooldown": {"failures": 1, "seconds": 0.5},
            }
        ]
    }
    proxy = start_proxy(log_dir, "cooldown-proxy", config)
    restarted: Server | None = None
    try:
        mocks["flaky"].stop()
        with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0) as sdk:
            chat(sdk, "m")  # flaky refuses, the retry goes to steady
            ready = httpx.get(f"{proxy.url}/health/ready").json()
            flaky, steady = ready["models"][0]["deployments"]
            # its 0.5 s may be over by the time of this GET on a busy machine: then it waits
            # for its probe, which no request has been yet
            assert flaky["state"] in ("cooling_down", "probing") and flaky["cooldowns"] == 1
            assert steady["state"] == "healthy"
            proxy.wait_for_log("deployment m[0] failed 1 in a row; cooling down for 0.5 s")

            again = restarted = launch_mock(log_dir, "flaky-again", port=flaky_port)
            again.wait_ready(MOCK_READY)

            def probed() -> bool:
                chat(sdk, "m")
                return mock_stats(again)["requests"] > 0

            wait_until(probed, seconds=10)
        proxy.wait_for_log("deployment m[0] is healthy again")
        ready = httpx.get(f"{proxy.url}/health/ready").json()
        assert ready["models"][0]["deployments"][0]["state"] == "healthy"
    finally:
        proxy.stop()
        for server in (*mocks.values(), restarted):
            if server is not None:
                server.stop()


def deployment_metrics(proxy: Server, model: str, deployment: str) -> dict[str, float]:
    """The proxy's per-deployment samples for one deployment, by name."""
    return {
        sample.name: sample.value
        for sample in scrape(proxy)
        if sample.labels == {"model": model, "deployment": deployment}
    }


@pytest.mark.parametrize(
    ("status", "retry_after", "client_requests", "attempts_each"),
    [
        (500, None, 1, 3),  # 500 is retried, on the same deployment: 3 failures in one request
        (503, "20", 3, 1),  # 20 s is more than a retry may wait: one attempt per request
    ],
    ids=["500", "503-retry-after"],
)
def test_a_lone_deployment_that_hiccups_is_not_refused_during_its_cooldown(
    log_dir: Path, status: int, retry_after: str | None, client_requests: int, attempts_each: int
) -> None:
    name = f"hiccup-{status}"
    args = ["--error-rate", "1", "--error-status", str(status)]
    if retry_after is not None:
        args += ["--retry-after", retry_after]
    failing = start_mocks(log_dir, {name: args})[name]
    config = {
        "models": [
            {
                "name": "lone",
                "api_base": base(failing),
                "cooldown": {"failures": 3, "seconds": 60},  # over long before the test is
            }
        ]
    }
    proxy = start_proxy(log_dir, f"{name}-proxy", config)
    recovered: Server | None = None
    try:
        for request in range(1, client_requests + 1):
            response = httpx.post(
                f"{proxy.url}/v1/chat/completions",
                json={"model": "lone", "messages": MESSAGES},
                timeout=30,
            )
            # the upstream's own error, never the proxy's "cooling down"
            assert response.status_code == {500: 502, 503: 503}[status], response.text
            message = response.json()["error"]["message"]
            assert message.startswith(f"upstream answered HTTP {status}: "), message
            assert response.headers.get("retry-after") == retry_after
            assert mock_stats(failing)["requests"] == request * attempts_each
        proxy.wait_for_log("deployment lone[0] failed 3 in a row; cooling down for 60 s")

        ready = httpx.get(f"{proxy.url}/health/ready", timeout=10)
        assert ready.status_code == 503
        (deployment,) = ready.json()["models"][0]["deployments"]
        assert deployment["state"] == "cooling_down"
        assert (deployment["failures"], deployment["cooldowns"]) == (3, 1)
        metrics = deployment_metrics(proxy, "lone", "lone[0]")
        assert metrics["proxy_deployment_failures_total"] == 3
        assert metrics["proxy_deployment_cooldowns_total"] == 1
        assert metrics["proxy_deployment_up"] == 0

        # The upstream recovers (on the same port) 59 s before the cooldown would end.
        port = failing.port
        failing.stop()
        recovered = launch_mock(log_dir, f"{name}-recovered", port=port)
        recovered.wait_ready(MOCK_READY)
        with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0) as sdk:
            assert chat(sdk, "lone")

        assert mock_stats(recovered)["requests"] == 1
        proxy.wait_for_log("deployment lone[0] is healthy again")
        ready = httpx.get(f"{proxy.url}/health/ready", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["models"][0]["deployments"][0]["state"] == "healthy"
        assert deployment_metrics(proxy, "lone", "lone[0]")["proxy_deployment_up"] == 1
    finally:
        proxy.stop()
        for server in (failing, recovered):
            if server is not None:
                server.stop()


def test_ready_is_503_when_no_model_can_serve(log_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/inference"
    config = {
        "models": [{"name": "m", "api_base": dead, "max_retries": 0, "cooldown": {"failures": 1}}]
    }
    proxy = start_proxy(log_dir, "ready-proxy", config)
    try:
        ready = httpx.get(f"{proxy.url}/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"

        failed = httpx.post(
            f"{proxy.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
        )
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "upstream_unavailable"

        ready = httpx.get(f"{proxy.url}/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        (deployment,) = body["models"][0]["deployments"]
        assert deployment["state"] == "cooling_down"
        assert deployment["failures"] == 1 and deployment["in_flight"] == 0
        assert httpx.get(f"{proxy.url}/health").status_code == 200  # alive all the same
    finally:
        proxy.stop()


def test_sigterm_finishes_requests_in_flight_then_exits(log_dir: Path) -> None:
    mocks = start_mocks(log_dir, {"slow-for-shutdown": ["--latency", "fixed:1500"]})
    slow = mocks["slow-for-shutdown"]
    proxy = start_proxy(
        log_dir, "shutdown-proxy", {"models": [{"name": "m", "api_base": base(slow)}]}
    )
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{proxy.url}/v1/chat/completions",
                json={"model": "m", "messages": MESSAGES},
                timeout=30,
            )
            wait_until(lambda: mock_stats(slow)["in_flight"] == 1)
            os.kill(proxy.process.pid, signal.SIGTERM)
            proxy.wait_for_log("Shutting down")
            # New connections are refused while the one in flight is finished.
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{proxy.url}/health", timeout=2)
            response = pending.result(timeout=30)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        assert proxy.process.wait(timeout=10) in (0, -signal.SIGTERM)
        assert "Traceback" not in proxy.log_text()
    finally:
        proxy.stop()
        slow.stop()
