"""Session fixtures: a real mock upstream and real proxies on free loopback ports.

- `mock_upstream`: `python -m app mock-upstream`.
- `proxy`: `python -m app serve --config e2e.yaml`, with the models in `MODELS` (plain ones,
  templates, and fault models that make the mock misbehave through per-model headers), client key
  `API_KEY` and a 0.2 s stream keep-alive interval.
- `passthrough_proxy`: `serve` with no config and PROXY_API_BASE pointing at the mock.
- `demo_proxy`: bare `serve` (no config, no PROXY_API_BASE): the embedded demo.

When a test fails, the tail of every server log is attached to its report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai import AsyncOpenAI, OpenAI

from tests.e2e.expected import DEFAULTS
from tests.e2e.servers import Server, clean_env, free_port, start_server

API_KEY = "sk-test-1"
KEEPALIVE_SECONDS = 0.2
SLOW_MS = 800  # several keep-alive intervals
LLAMA_MAX_TOKENS = 12

_SERVERS = pytest.StashKey[list[Server]]()


def _models(upstream: str, closed_port: int) -> list[dict[str, Any]]:
    # Fault models show how one failed attempt reaches the client: no retries, no cooldown
    # (tests/e2e/test_resilience.py covers those).
    single_attempt = {"max_retries": 0, "cooldown": {"failures": 1_000_000}}

    def fault(name: str, **headers: str) -> dict[str, Any]:
        return {
            "name": name,
            "api_base": upstream,
            "upstream_model": "demo",
            "headers": headers,
            **single_attempt,
        }

    return [
        {
            "name": "demo-raw",
            "api_base": upstream,
            "upstream_model": "demo",
            "prompt_template": "raw",
            "defaults": DEFAULTS,
        },
        {
            "name": "llama",
            "api_base": upstream,
            "upstream_model": "meta-llama/Llama-2-13b-hf",
            "prompt_template": "llama2",
            "defaults": {"max_tokens": LLAMA_MAX_TOKENS},
        },
        {"name": "chatml-model", "api_base": upstream, "prompt_template": "chatml"},
        {"name": "acme/chat-1", "api_base": upstream, "upstream_model": "acme-chat"},
        fault("bad-json", **{"x-mock-fault": "malformed"}),
        fault("upstream-500", **{"x-mock-fault": "status:500"}),
        fault("not-ok", **{"x-mock-fault": "not-ok"}),
        fault("html-page", **{"x-mock-fault": "html"}),
        fault("cut-short", **{"x-mock-fault": "reset"}),
        {**fault("too-slow", **{"x-mock-delay-ms": "3000"}), "timeout": 0.5},
        {"name": "dead", "api_base": f"http://127.0.0.1:{closed_port}/inference", **single_attempt},
        fault("slow", **{"x-mock-delay-ms": str(SLOW_MS)}),
        fault("slow-500", **{"x-mock-delay-ms": str(SLOW_MS), "x-mock-fault": "status:500"}),
        fault("hang", **{"x-mock-fault": "hang"}),
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:  # noqa: ARG001
    report = yield
    if report.failed:
        for server in item.config.stash.get(_SERVERS, []):
            report.sections.append((f"{server.name} log ({server.log_path})", server.log_tail()))
    return report


def _launch(
    config: pytest.Config, log_dir: Path, name: str, args: list[str], env: dict[str, str]
) -> Server:
    port = free_port()
    argv = [*args, "--host", "127.0.0.1", "--port", str(port)]
    server = start_server(name, argv, port=port, log_dir=log_dir, env=env)
    config.stash.setdefault(_SERVERS, []).append(server)
    return server


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def mock_upstream(pytestconfig: pytest.Config, log_dir: Path) -> Iterator[Server]:
    server = _launch(pytestconfig, log_dir, "mock-upstream", ["mock-upstream"], clean_env())
    try:
        server.wait_ready(None)  # it answers 405 to GET: any HTTP answer means it listens
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def config_path(log_dir: Path, mock_upstream: Server) -> Path:
    config = {
        "models": _models(f"{mock_upstream.url}/inference", closed_port=free_port()),
        "api_keys": [API_KEY],
        "stream_keepalive_seconds": KEEPALIVE_SECONDS,
    }
    path = log_dir / "e2e.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _serve(server: Server) -> Iterator[Server]:
    try:
        server.wait_ready("/health")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def proxy(pytestconfig: pytest.Config, log_dir: Path, config_path: Path) -> Iterator[Server]:
    args = ["serve", "--config", str(config_path)]
    server = _launch(pytestconfig, log_dir, "proxy", args, clean_env())
    yield from _serve(server)


@pytest.fixture(scope="session")
def passthrough_proxy(
    pytestconfig: pytest.Config, log_dir: Path, mock_upstream: Server
) -> Iterator[Server]:
    env = clean_env(PROXY_API_BASE=f"{mock_upstream.url}/inference")
    server = _launch(pytestconfig, log_dir, "passthrough-proxy", ["serve"], env)
    yield from _serve(server)


@pytest.fixture(scope="session")
def demo_proxy(pytestconfig: pytest.Config, log_dir: Path) -> Iterator[Server]:
    server = _launch(pytestconfig, log_dir, "demo-proxy", ["serve"], clean_env())
    yield from _serve(server)


def sdk_client(server: Server, api_key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=30.0)


@pytest.fixture(scope="session")
def client(proxy: Server) -> Iterator[OpenAI]:
    with sdk_client(proxy) as openai_client:
        yield openai_client


@pytest.fixture
async def aclient(proxy: Server) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0, timeout=30.0
    ) as openai_client:
        yield openai_client


@pytest.fixture(scope="session")
def http(proxy: Server) -> Iterator[httpx.Client]:
    """Raw HTTP to the proxy, authorised, for what the SDK hides (SSE lines, headers)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=proxy.url, headers=headers, timeout=30.0) as http_client:
        yield http_client
