"""docker-compose.yml's profile `replicated`, run without containers: its files, real processes.

The images of the profile (Redis, nginx) cannot be pulled on the project's machine, so the
services are played by local processes: config/nginx-lb.conf in a real nginx, in front of two
`serve` processes with the replicas' environment from docker-compose.yml and their config,
config/compose-replicated.yaml, sharing a real redis-server of the test's own. Only addresses are
rewritten (service names and ports to loopback ones, the mock upstream's URL); every rewrite must
match exactly once, so a changed file fails here instead of being tested in another form.

What holds: the key's per-minute budget is spent once across both replicas, nginx round-robins
to both, request ids pass through in both directions, streams arrive as they are written, and
with one replica gone the other serves everything.

Access lines are written after the answer has left (nginx's log phase; the proxy's line after
the last byte is sent), so a client holding its answer may find them not yet written: the tests
wait until every request they sent is logged, then count.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest
import yaml

from tests.e2e.servers import (
    START_DEADLINE,
    STOP_DEADLINE,
    Server,
    clean_env,
    free_port,
    running_mock,
    start_server,
    wait_until,
)
from tests.redis_server import RedisServer, require_redis_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
REPLICAS = ("proxy-a", "proxy-b")
CONFIG = yaml.safe_load((ROOT / "config/compose-replicated.yaml").read_text(encoding="utf-8"))
KEY = CONFIG["api_keys"][0]
SLOW_MS = 1500  # the upstream time of model demo-slow (a model this test adds)
KEEPALIVE_SECONDS = 0.2

NGINX_MAIN = """\
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    include {lb};
}}
"""


@dataclass
class Stack:
    """nginx on `url`, the replicas behind it (by compose service name), its access log, and a
    client of nginx (keep-alive: nginx picks a replica per request, not per connection)."""

    url: str
    replicas: dict[str, Server]
    access_log: Path
    client: httpx.Client

    def access_lines(self) -> list[str]:
        return self.access_log.read_text(encoding="utf-8").splitlines()

    def api_lines(self) -> list[str]:
        """nginx's access lines of chat completions (not of the start-up's /health polls)."""
        return [line for line in self.access_lines() if '"POST /v1/chat/completions ' in line]


def rewrite(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in config/nginx-lb.conf"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_redis_server()
    if subprocess.run(["nginx", "-v"], capture_output=True, check=False).returncode != 0:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return tmp_path_factory.mktemp("compose-replicated")


@pytest.fixture(scope="module")
def redis_server(log_dir: Path) -> Iterator[RedisServer]:
    with RedisServer.start(log_dir) as server:
        yield server


@pytest.fixture(scope="module")
def mock(log_dir: Path) -> Iterator[Server]:
    with running_mock(log_dir, "mock-upstream") as server:
        yield server


@pytest.fixture(scope="module")
def config_path(log_dir: Path, mock: Server) -> Path:
    """config/compose-replicated.yaml with the mock's address, a slow model, short keep-alives."""
    config: dict[str, Any] = yaml.safe_load(yaml.safe_dump(CONFIG))
    (model,) = config["models"]
    assert model["api_base"] == "http://mock-upstream:9000/inference"
    model["api_base"] = f"{mock.url}/inference"
    slow = {"name": "demo-slow", "api_base": model["api_base"]}
    config["models"].append({**slow, "headers": {"x-mock-delay-ms": str(SLOW_MS)}})
    config["stream_keepalive_seconds"] = KEEPALIVE_SECONDS
    path = log_dir / "compose-replicated.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_replica(name: str, log_dir: Path, config_path: Path, redis_server: RedisServer) -> Server:
    """`serve` with the compose service's PROXY_* environment, addresses made local."""
    env = {key: str(value) for key, value in COMPOSE[name]["environment"].items()}
    assert env["PROXY_REDIS_URL"] == "redis://redis:6379/0"
    port = free_port()
    env.update(
        PROXY_CONFIG=str(config_path),
        PROXY_HOST="127.0.0.1",
        PROXY_PORT=str(port),
        PROXY_REDIS_URL=redis_server.url,
    )
    return start_server(name, ["serve"], port=port, log_dir=log_dir, env=clean_env(**env))


def start_nginx(prefix: Path, replicas: dict[str, Server]) -> tuple[subprocess.Popen[bytes], int]:
    (prefix / "tmp").mkdir(parents=True)
    text = (ROOT / "config/nginx-lb.conf").read_text(encoding="utf-8")
    for name, server in replicas.items():
        text = rewrite(text, f"server {name}:8000 ", f"server 127.0.0.1:{server.port} ")
    port = free_port()
    text = rewrite(text, "listen 8080;", f"listen 127.0.0.1:{port};")
    text = rewrite(text, "access_log /dev/stdout clp;", f"access_log {prefix}/access.log clp;")
    (prefix / "lb.conf").write_text(text, encoding="utf-8")
    (prefix / "nginx.conf").write_text(NGINX_MAIN.format(lb=prefix / "lb.conf"), encoding="utf-8")
    log: IO[bytes] = (prefix / "nginx.log").open("wb")
    process = subprocess.Popen(
        ["nginx", "-e", "stderr", "-p", f"{prefix}/", "-c", "nginx.conf", "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child has its own copy
    return process, port


@pytest.fixture
def stack(
    log_dir: Path, config_path: Path, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    redis_server.client().flushall()  # a fresh budget for each test
    run_dir = log_dir / request.node.name
    run_dir.mkdir()
    replicas = {name: start_replica(name, run_dir, config_path, redis_server) for name in REPLICAS}
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for server in replicas.values():
            server.wait_ready("/health")
        nginx, port = start_nginx(run_dir / "nginx", replicas)
        url = f"http://127.0.0.1:{port}"
        wait_until(partial(_answers, nginx, url, run_dir), START_DEADLINE)
        with httpx.Client(base_url=url, timeout=30) as client:
            yield Stack(url, replicas, run_dir / "nginx/access.log", client)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(STOP_DEADLINE)
        for server in replicas.values():
            server.stop()


def _answers(nginx: subprocess.Popen[bytes], url: str, run_dir: Path) -> bool:
    if nginx.poll() is not None:
        log = (run_dir / "nginx/nginx.log").read_text(errors="replace")
        raise AssertionError(f"nginx exited with {nginx.returncode}:\n{log}")
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def chat(stack: Stack, model: str = "demo", **headers: str) -> httpx.Response:
    """One chat completion through nginx with the config's key."""
    return stack.client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        headers={"authorization": f"Bearer {KEY['key']}", **headers},
    )


def access_entries(server: Server) -> list[dict[str, Any]]:
    """The replica's JSON access-log lines (PROXY_LOG_FORMAT=json, as in docker-compose.yml)."""
    lines = [orjson.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "app.access"]


def replicas_entries(stack: Stack) -> list[dict[str, Any]]:
    """Both replicas' access-log lines."""
    return [line for server in stack.replicas.values() for line in access_entries(server)]


def wait_logged(stack: Stack, requests: int) -> None:
    """Wait until nginx and the replicas have logged `requests` chat completions each (their
    lines are written after the answers leave, see the module docstring)."""
    wait_until(lambda: len(stack.api_lines()) >= requests)
    wait_until(lambda: len(replicas_entries(stack)) >= requests)


def test_the_key_spends_its_budget_once_across_both_replicas(stack: Stack) -> None:
    rpm = KEY["rpm"]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: chat(stack), range(rpm + 10)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * rpm + [429] * 10
    wait_logged(stack, rpm + 10)
    refused = next(response for response in responses if response.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert f"of key '{KEY['name']}': Limit {rpm}, Used {rpm}" in error["message"]
    served = {
        name: sum(1 for line in access_entries(server) if line["status"] == 200)
        for name, server in stack.replicas.items()
    }
    assert sum(served.values()) == rpm and all(served.values()), f"round-robin? {served}"
    upstreams = set(re.findall(r"upstream=([\d.]+:\d+)", "\n".join(stack.api_lines())))
    assert upstreams == {f"127.0.0.1:{server.port}" for server in stack.replicas.values()}


def test_request_ids_pass_through_nginx_and_the_proxy(stack: Stack) -> None:
    given = chat(stack, **{"x-request-id": "clp-compose-e2e-1"})
    assert given.status_code == 200
    assert given.headers["x-request-id"] == "clp-compose-e2e-1"

    made = chat(stack)  # no id: nginx's $request_id, 32 hex digits, logged by both
    request_id = made.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    wait_logged(stack, 2)
    for wanted in ("clp-compose-e2e-1", request_id):
        assert sum(f"request_id={wanted} " in line for line in stack.api_lines()) == 1
        assert [line["request_id"] for line in replicas_entries(stack)].count(wanted) == 1


def test_streams_pass_through_as_they_are_written(stack: Stack) -> None:
    body = {"model": "demo-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"authorization": f"Bearer {KEY['key']}"}
    started = time.monotonic()
    with stack.client.stream(
        "POST", "/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(lines)
        first_at = time.monotonic() - started
        rest = list(lines)
    assert first.startswith(":")  # a keep-alive comment while the upstream works
    assert first_at < SLOW_MS / 1000 / 2, f"the first line took {first_at:.2f} s: buffered?"
    assert time.monotonic() - started >= SLOW_MS / 1000
    assert [line for line in rest if line.startswith("data:")][-1] == "data: [DONE]"


def test_one_replica_gone_the_other_serves_everything(stack: Stack) -> None:
    gone, staying = (stack.replicas[name] for name in REPLICAS)
    gone.stop()

    statuses = [chat(stack).status_code for _ in range(6)]

    assert statuses == [200] * 6  # a refused connection moves on to the other replica
    wait_until(lambda: len(access_entries(staying)) >= 6)
    assert sum(1 for line in access_entries(staying) if line["status"] == 200) == 6
