"""`custom-llm-proxy mock-upstream` as a real process: the plan's faults, the connection faults
that only a real server shows (`reset-body`, `trickle`, `hang`) and the counters."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from app.mock_upstream import complete
from tests.e2e.servers import (
    MOCK_READY,
    Server,
    clean_env,
    launch_mock,
    mock_stats,
    wait_until,
)

pytestmark = pytest.mark.e2e

REQUEST = {"model": "demo", "params": {"prompt": ["Hello", "Once upon a time"], "max_tokens": 20}}
ANSWER = orjson.dumps(complete(REQUEST)[1])

# One mock per plan, all started at once so that their start-up times overlap.
PLANS = {
    "plain": [],
    "errors": ["--error-rate", "0.5", "--seed", "1", "--retry-after", "2"],
    "hang": ["--fault", "hang"],
    "reset-body": ["--fault", "reset-body"],
}


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    log_dir = tmp_path_factory.mktemp("mock-upstream-cli")
    servers: dict[str, Server] = {}
    try:
        for name, args in PLANS.items():
            servers[name] = launch_mock(log_dir, name, args)
        for server in servers.values():
            server.wait_ready(MOCK_READY)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_error_rate_with_a_seed_fails_about_half(mocks: dict[str, Server]) -> None:
    server = mocks["errors"]
    with httpx.Client(base_url=server.url, timeout=5) as client:
        responses = [client.post("/inference", json=REQUEST) for _ in range(200)]
    errors = [response for response in responses if response.status_code != 200]
    assert 70 <= len(errors) <= 130
    for response in errors:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json() == {"message": "mock fault: status 503", "data": []}
    for response in responses:
        if response.status_code == 200:
            assert response.content == ANSWER
            assert "retry-after" not in response.headers
    assert mock_stats(server) == {"requests": 200, "faults": len(errors), "in_flight": 0}


def test_fault_hang_times_the_request_out(mocks: dict[str, Server]) -> None:
    server = mocks["hang"]
    with (
        httpx.Client(base_url=server.url, timeout=0.3) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/inference", json=REQUEST)
    assert mock_stats(server)["faults"] == 1
    wait_until(lambda: mock_stats(server)["in_flight"] == 0)  # the mock saw the client leave


def test_fault_reset_body_cuts_the_body_short(mocks: dict[str, Server]) -> None:
    received = b""
    with (
        httpx.Client(base_url=mocks["reset-body"].url, timeout=5) as client,
        client.stream("POST", "/inference", json=REQUEST) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(ANSWER))
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete|peer closed"):
            for chunk in response.iter_raw():
                received += chunk
    assert received == ANSWER[: len(ANSWER) // 2]


def test_trickle_sends_a_byte_at_a_time_until_the_client_leaves(
    mocks: dict[str, Server],
) -> None:
    server = mocks["plain"]
    received = b""
    started = time.monotonic()
    with (
        httpx.Client(base_url=server.url, timeout=2) as client,
        client.stream(
            "POST", "/inference", json=REQUEST, headers={"x-mock-fault": "trickle"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(1 << 30)
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= 3:
                break
    assert received == ANSWER[: len(received)]
    assert time.monotonic() - started >= 0.4  # bytes at 0, 0.2 and 0.4 s
    wait_until(lambda: mock_stats(server)["in_flight"] == 0)
    # A read timeout shorter than the trickle's interval catches it.
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=0.1)) as client,
        pytest.raises(httpx.ReadTimeout),
        client.stream(
            "POST", "/inference", json=REQUEST, headers={"x-mock-fault": "trickle"}
        ) as response,
    ):
        response.read()


def test_stats_count_and_reset(mocks: dict[str, Server]) -> None:
    server = mocks["plain"]
    wait_until(lambda: mock_stats(server)["in_flight"] == 0)  # other tests share this mock
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.post("/_mock/reset-stats")
        for fault in [None, None, "status:429", "not-ok"]:
            headers = {"x-mock-fault": fault} if fault else {}
            client.post("/inference", json=REQUEST, headers=headers)
        assert client.get("/inference").status_code == 405
        assert mock_stats(server) == {"requests": 4, "faults": 2, "in_flight": 0}
        reset = client.post("/_mock/reset-stats")
        assert reset.json() == {"requests": 4, "faults": 2, "in_flight": 0}
    assert mock_stats(server) == {"requests": 0, "faults": 0, "in_flight": 0}


def test_a_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "mock-upstream", "--latency", "gamma:3"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "argument --latency: unknown latency 'gamma:3'" in result.stderr
