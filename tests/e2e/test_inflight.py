"""Many requests in flight, with real processes: `serve` raises its open-file limit and says so,
and requests that wait for an upstream connection (a capped pool) show in /metrics and warn once."""

from __future__ import annotations

import asyncio
import resource
import shutil
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.servers import (
    Server,
    clean_env,
    free_port,
    running_mock,
    scrape,
    serve_config,
    start_server,
)

pytestmark = pytest.mark.e2e

MODEL = "capped"
CAP = 2
REQUESTS = 6  # at once, each held 1 s by the upstream: four wait for a connection


def metric_samples(server: Server, name: str) -> dict[str, float]:
    """The values of one metric's samples by their `upstream` label."""
    return {
        sample.labels["upstream"]: sample.value for sample in scrape(server) if sample.name == name
    }


async def chat_at_once(url: str, count: int) -> list[int]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=body) for _ in range(count))
        )
    return [answer.status_code for answer in answers]


@pytest.mark.timeout(90)
def test_waits_for_an_upstream_connection_show_in_metrics_and_warn_once(tmp_path: Path) -> None:
    with running_mock(tmp_path, "mock-upstream", ["--latency", "fixed:1000"]) as mock:
        config = {
            "models": [{"name": MODEL, "api_base": f"{mock.url}/inference"}],
            "upstream_max_connections": CAP,
        }
        proxy = serve_config(tmp_path, "proxy-capped", config)
        try:
            assert asyncio.run(chat_at_once(proxy.url, REQUESTS)) == [200] * REQUESTS
            upstream = f"http://127.0.0.1:{mock.port}"
            waits = metric_samples(proxy, "proxy_upstream_pool_wait_seconds_count")
            assert waits == {upstream: REQUESTS - CAP}
            seconds = metric_samples(proxy, "proxy_upstream_pool_wait_seconds_sum")
            assert seconds[upstream] > 0.5  # each waited for an answer of 1 s to free a slot
            assert metric_samples(proxy, "proxy_upstream_pool_waiting") == {upstream: 0}
            warnings = [
                line for line in proxy.log_text().splitlines() if "wait for a connection" in line
            ]
            assert len(warnings) == 1, warnings
            assert f"WARNING app.upstream: requests to {upstream} wait" in warnings[0]
            assert f"all {CAP} that upstream_max_connections allows" in warnings[0]
        finally:
            proxy.stop()


def test_the_default_config_has_no_pool_waits(tmp_path: Path) -> None:
    with running_mock(tmp_path, "mock-upstream", ["--latency", "fixed:300"]) as mock:
        config = {"models": [{"name": MODEL, "api_base": f"{mock.url}/inference"}]}
        proxy = serve_config(tmp_path, "proxy-default", config)
        try:
            assert asyncio.run(chat_at_once(proxy.url, 20)) == [200] * 20
            assert metric_samples(proxy, "proxy_upstream_pool_wait_seconds_count") == {}
            assert "wait for a connection" not in proxy.log_text()
        finally:
            proxy.stop()


def open_files_limit(pid: int) -> tuple[int, int]:
    """The soft and hard `Max open files` of a running process, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize(
    ("hard", "expected"),
    [
        (HARD, f"INFO app: open files: soft limit raised from 1,024 to {HARD:,} "),
        (
            2048,
            "WARNING app: open files: soft limit raised from 1,024 to 2,048, so at most about "
            "1,024 requests can be in flight",
        ),
    ],
    ids=["to-the-hard-limit", "low-hard-limit-warns"],
)
def test_serve_raises_its_open_files_soft_limit_and_logs_it(
    tmp_path: Path, hard: int, expected: str
) -> None:
    if hard <= 1024:
        pytest.skip(f"the hard open-file limit is {hard}: nothing to raise")
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"models": [{"name": MODEL, "api_base": "http://127.0.0.1:9/"}]})
    )
    port = free_port()
    # Started as many service managers start services: with a soft limit of 1,024.
    program = ("prlimit", f"--nofile=1024:{hard}", sys.executable, "-m", "app")
    argv = ["serve", "--config", str(path), "--port", str(port)]
    proxy = start_server(
        "proxy-nofile", argv, port=port, log_dir=tmp_path, env=clean_env(), program=program
    )
    try:
        proxy.wait_ready("/health")
        assert open_files_limit(proxy.process.pid) == (hard, hard)
        line = proxy.wait_for_log("open files:")
        assert expected in line, line
    finally:
        proxy.stop()
