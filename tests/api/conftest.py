"""App tests: the real app over httpx.ASGITransport, the upstream faked with httpx.MockTransport.

`FakeUpstream` answers like the reference mock upstream (its pure `complete`), records every
request the proxy sent, and can be told to fail in any of the ways a real endpoint does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from app.config import ModelConfig, ProxyConfig
from app.main import create_app
from app.mock_upstream import complete
from app.settings import Settings
from app.upstream import HttpxUpstream

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeUpstream:
    """What the proxy sent, and what to answer next."""

    requests: list[httpx.Request] = field(default_factory=list)
    override: Handler | None = None
    delay: float = 0.0

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(request.content) for request in self.requests]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)  # simulated upstream latency, not a wait
        if self.override is not None:
            return self.override(request)
        return mock_answer(request)


def mock_answer(request: httpx.Request) -> httpx.Response:
    """What the reference mock upstream answers to the proxy's request."""
    status, payload = complete(orjson.loads(request.content))
    return httpx.Response(status, content=orjson.dumps(payload))


def failing_on(path: str, status: int) -> Handler:
    """Answer `status` for one model's upstream path, and as the mock does for the others."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == path:
            return httpx.Response(status, json={"message": "down", "data": []})
        return mock_answer(request)

    return handler


def model(name: str, **fields: Any) -> ModelConfig:
    """A model on the fake upstream; no retries unless asked, so each test sees one attempt."""
    fields.setdefault("max_retries", 0)
    return ModelConfig(name=name, api_base=f"http://upstream.test/{name}", **fields)


@pytest.fixture
def fake_upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def default_config() -> ProxyConfig:
    return ProxyConfig(
        models=[
            model("raw-model", upstream_model="meta-llama/Llama-2-13b-hf"),
            model("llama", prompt_template="llama2", headers={"Authorization": "Bearer up-1"}),
            model("org/slashed", defaults={"max_tokens": 12, "temperature": 0.0}),
        ],
        stream_keepalive_seconds=0.05,
    )


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(
    fake_upstream: FakeUpstream,
) -> AsyncIterator[Callable[..., Any]]:
    """Build an app for a config and return an httpx client bound to it (lifespan running)."""
    stack: list[Any] = []

    async def build(
        config: ProxyConfig, *, settings: Settings | None = None, upstream: Any = None
    ) -> httpx.AsyncClient:
        def factory(_config: ProxyConfig) -> Any:
            if upstream is not None:
                return upstream
            return HttpxUpstream(transport=httpx.MockTransport(fake_upstream.handle))

        app = create_app(
            settings or Settings(api_base=None, api_keys=[], config=None),
            config=config,
            upstream_factory=factory,
        )
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://proxy.test",
        )
        stack.append((lifespan, client))
        return client

    yield build
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: Callable[..., Any], default_config: ProxyConfig) -> httpx.AsyncClient:
    result: httpx.AsyncClient = await make_client(default_config)
    return result


def chat_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "raw-model",
        "messages": [{"role": "user", "content": "The capital of France is P"}],
    }
    body.update(fields)
    return body


def assert_error(
    response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The response is an OpenAI error envelope with this status (and code/param if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in response.text
    assert response.headers.get("x-request-id")
    return dict(error)
