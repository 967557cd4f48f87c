"""Property-based fuzzing of the generation endpoints (hypothesis): whatever the body, the proxy
answers with a status below 500, an error is always OpenAI's envelope, and it keeps serving.

Bodies are built from the request schema's own field names with values of every JSON type
(huge integers, deep nesting, odd unicode), plus raw bytes. CI runs a short form; set
FUZZ_EXAMPLES for a longer run by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import ProxyConfig
from app.main import create_app
from app.protocols.openai.schemas import ChatCompletionRequest, CompletionRequest
from app.settings import Settings
from app.upstream import HttpxUpstream
from tests.api.conftest import FakeUpstream, model

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])
            | json_values,
            "content": st.text(max_size=60)
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}))
            | json_values,
            "name": st.text(max_size=10),
        },
    ),
    max_size=4,
)


def bodies(fields: list[str], known: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts whose keys are mostly the schema's fields, with values of any type."""
    return st.dictionaries(
        st.sampled_from(fields) | st.text(max_size=8),
        json_values,
        max_size=8,
    ).flatmap(
        lambda body: st.fixed_dictionaries({}, optional=dict(known)).map(
            lambda extra: {**body, **extra}
        )
    )


MODELS = st.sampled_from(["raw-model", "llama", "nope", "custom/x", ""]) | st.text(max_size=12)
CHAT_BODIES = bodies(
    list(ChatCompletionRequest.model_fields),
    {"model": MODELS, "messages": messages, "stream": st.booleans()},
)
COMPLETION_BODIES = bodies(
    list(CompletionRequest.model_fields),
    {
        "model": MODELS,
        "prompt": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3) | json_values,
        "stream": st.booleans(),
    },
)


class SyncProxy:
    """The app with its lifespan running on a private event loop, called synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.upstream = FakeUpstream()
        config = ProxyConfig(
            models=[model("raw-model"), model("llama", prompt_template="llama2")],
            stream_keepalive_seconds=5,
        )
        app = create_app(
            Settings(api_base=None, api_keys=[], config=None),
            config=config,
            upstream_factory=lambda _c: HttpxUpstream(
                transport=httpx.MockTransport(self.upstream.handle)
            ),
        )
        self.lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://proxy.test",
        )

    def post(self, path: str, content: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return self.loop.run_until_complete(
            self.client.post(path, content=content, headers=headers)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def proxy() -> Iterator[SyncProxy]:
    running = SyncProxy()
    yield running
    running.close()


def encode(body: dict[str, Any]) -> bytes:
    """The standard library's encoder: unlike orjson it writes integers of any size."""
    return json.dumps(body).encode()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    elif response.headers["content-type"].startswith("application/json"):
        assert response.json()["choices"]
    else:
        assert response.text.rstrip().endswith("data: [DONE]")


@FUZZ
@given(body=CHAT_BODIES)
def test_chat_never_5xx(proxy: SyncProxy, body: dict[str, Any]) -> None:
    check(proxy.post("/v1/chat/completions", encode(body)))


@FUZZ
@given(body=COMPLETION_BODIES)
def test_completions_never_5xx(proxy: SyncProxy, body: dict[str, Any]) -> None:
    check(proxy.post("/v1/completions", encode(body)))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_5xx(proxy: SyncProxy, raw: bytes) -> None:
    check(proxy.post("/v1/chat/completions", raw))


def test_after_the_fuzzing_it_still_serves(proxy: SyncProxy) -> None:
    body = {"model": "raw-model", "messages": [{"role": "user", "content": "hi"}]}
    response = proxy.post("/v1/chat/completions", orjson.dumps(body))
    assert response.status_code == 200
