"""The proxy's own limits over HTTP: 429 envelopes with OpenAI's headers, x-ratelimit-* on
answers, tokens reserved and settled, model budgets shared by keys, and the Redis policy when
Redis cannot be reached (a closed port: no server needed)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.config import ApiKeyConfig, ProxyConfig, RateLimitConfig
from app.settings import Settings
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model
from tests.e2e.servers import free_port

ALICE = {"Authorization": "Bearer sk-alice"}
BOB = {"Authorization": "Bearer sk-bob"}
RATE_HEADERS = {"limit", "remaining", "reset"}


def config(**rate_limit: Any) -> ProxyConfig:
    return ProxyConfig(
        models=[model("raw-model"), model("shared", rpm=3)],
        api_keys=[
            ApiKeyConfig(key="sk-alice", name="alice", rpm=2, tpm=1000),
            ApiKeyConfig(key="sk-bob", name="bob"),
        ],
        rate_limit=RateLimitConfig(**rate_limit),
    )


def ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


async def test_key_rpm_429_with_openai_headers_then_other_keys_still_pass(
    make_client: Any,
) -> None:
    client: httpx.AsyncClient = await make_client(config())

    first = await client.post("/v1/chat/completions", json=chat_body(), headers=ALICE)
    second = await client.post("/v1/chat/completions", json=chat_body(), headers=ALICE)
    refused = await client.post("/v1/chat/completions", json=chat_body(), headers=ALICE)

    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    error = assert_error(refused, 429, code="rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert error["message"].startswith(
        "Rate limit reached for requests per min (RPM) of key 'alice': Limit 2, Used 2, "
        "Requested 1. Please try again in "
    )
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"} <= set(refused.headers)

    legacy = await client.post(
        "/v1/completions", json={"model": "raw-model", "prompt": "x"}, headers=ALICE
    )
    assert_error(legacy, 429, code="rate_limit_exceeded")  # one budget for both endpoints
    other = await client.post("/v1/chat/completions", json=chat_body(), headers=BOB)
    assert other.status_code == 200
    assert ratelimit_headers(other) == {}  # bob has no limits, raw-model none either


async def test_model_rpm_is_shared_by_every_key(make_client: Any) -> None:
    client: httpx.AsyncClient = await make_client(config())
    body = chat_body(model="shared")

    statuses = [
        (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code
        for headers in (BOB, BOB, BOB, BOB)
    ]
    refused = await client.post("/v1/chat/completions", json=body, headers=ALICE)

    assert statuses == [200, 200, 200, 429]
    error = assert_error(refused, 429, code="rate_limit_exceeded")
    assert "of model 'shared' (all keys): Limit 3, Used 3" in error["message"]
    # alice's own budget has room: the headers show the tightest, the model's.
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    other_model = await client.post("/v1/chat/completions", json=chat_body(), headers=BOB)
    assert other_model.status_code == 200


async def test_tokens_are_reserved_then_settled_with_the_usage(
    make_client: Any, fake_upstream: FakeUpstream
) -> None:
    def short_answer(request: httpx.Request) -> httpx.Response:
        prompts = orjson.loads(request.content)["params"]["prompt"]
        data = [{"prompt": p, "output": [p + " Paris."]} for p in prompts]
        return httpx.Response(200, content=orjson.dumps({"data": data, "message": "ok"}))

    fake_upstream.override = short_answer
    client: httpx.AsyncClient = await make_client(
        config().model_copy(
            update={"api_keys": [ApiKeyConfig(key="sk-alice", name="alice", tpm=1000)]}
        )
    )
    body = chat_body(max_tokens=300)

    first = await client.post("/v1/chat/completions", json=body, headers=ALICE)
    reserved = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    used = first.json()["usage"]["total_tokens"]
    second = await client.post("/v1/chat/completions", json=body, headers=ALICE)

    assert reserved > 300 > used  # the prompt and max_tokens reserved, far less used
    # The first request counts with its real usage now, the second with its reservation.
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - used - reserved

    fake_upstream.override = lambda _request: httpx.Response(500, content=b"{}")
    failed = await client.post("/v1/chat/completions", json=body, headers=ALICE)
    assert failed.status_code == 502
    fake_upstream.override = short_answer
    third = await client.post("/v1/chat/completions", json=body, headers=ALICE)
    # The failed one released its reservation; the second settled to its usage.
    assert int(third.headers["x-ratelimit-remaining-tokens"]) == 1000 - 2 * used - reserved


async def test_request_larger_than_the_token_budget(make_client: Any) -> None:
    client: httpx.AsyncClient = await make_client(config())

    response = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2000), headers=ALICE
    )

    error = assert_error(response, 429, code="rate_limit_exceeded")
    assert error["message"].startswith(
        "Request too large for tokens per min (TPM) of key 'alice': Limit 1000, Requested "
    )
    assert "retry-after" not in response.headers
    ok = await client.post("/v1/chat/completions", json=chat_body(max_tokens=20), headers=ALICE)
    assert ok.status_code == 200


async def test_streamed_answers_carry_the_headers_too(make_client: Any) -> None:
    client: httpx.AsyncClient = await make_client(config())

    response = await client.post(
        "/v1/chat/completions", json=chat_body(stream=True, max_tokens=10), headers=ALICE
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-ratelimit-remaining-requests"] == "1"
    assert response.text.rstrip().endswith("data: [DONE]")


def unreachable_redis() -> Settings:
    return Settings(
        api_base=None, api_keys=[], config=None, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )


async def test_fail_open_serves_without_limits_while_redis_is_unreachable(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="app")
    client: httpx.AsyncClient = await make_client(
        config(policy="fail_open"), settings=unreachable_redis()
    )

    responses = [
        await client.post("/v1/chat/completions", json=chat_body(), headers=ALICE)
        for _ in range(4)  # past alice's rpm of 2: nothing is counted
    ]

    assert [r.status_code for r in responses] == [200] * 4
    assert all(ratelimit_headers(r) == {} for r in responses)
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.limits"]
    assert len(warnings) == 1
    assert "cannot be reached" in warnings[0] and "fail_open" in warnings[0]


async def test_fail_closed_answers_503_while_redis_is_unreachable(make_client: Any) -> None:
    client: httpx.AsyncClient = await make_client(
        config(policy="fail_closed"), settings=unreachable_redis()
    )

    refused = await client.post("/v1/chat/completions", json=chat_body(), headers=ALICE)
    unlimited = await client.post("/v1/chat/completions", json=chat_body(), headers=BOB)

    error = assert_error(refused, 503, code="rate_limit_backend_unavailable")
    assert error["type"] == "server_error"
    assert refused.headers["retry-after"] == "1"
    assert unlimited.status_code == 200  # no budget applies to bob on raw-model: no Redis call
