"""Who may call: keys in Authorization / api-key / x-api-key, plain or hashed, expired, limited
to some models; keys in query strings refused; the client's key never sent upstream. Every
refusal is an envelope, and the next normal request still succeeds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.config import ApiKeyConfig, ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model

GOOD = {"Authorization": "Bearer sk-good"}
LIMITED = {"Authorization": "Bearer sk-limited"}


@pytest.fixture
def keyed_config() -> ProxyConfig:
    return ProxyConfig(
        models=[
            model("raw-model"),
            model("llama", headers={"Authorization": "Bearer upstream-token"}),
        ],
        api_keys=[
            ApiKeyConfig(key="sk-good", name="good"),
            ApiKeyConfig(key="sk-limited", name="limited", models=["raw-model"]),
            ApiKeyConfig(key="sk-expired", name="old", expires=datetime(2020, 1, 1, tzinfo=UTC)),
            ApiKeyConfig(key=f"sha256:{hashlib.sha256(b'sk-hashed').hexdigest()}"),
        ],
    )


@pytest.fixture
async def keyed(make_client: Any, keyed_config: ProxyConfig) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(keyed_config)
    return client


async def assert_next_request_succeeds(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(), headers=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("headers", "code", "words"),
    [
        ({}, "invalid_api_key", "You didn't provide an API key"),
        ({"Authorization": "Bearer sk-wrong"}, "invalid_api_key", "Incorrect API key"),
        ({"Authorization": "Basic c2stZ29vZA=="}, "invalid_api_key", "'Bearer <key>'"),
        ({"x-api-key": "sk-wrong"}, "invalid_api_key", "Incorrect API key"),
        ({"Authorization": "Bearer sk-expired"}, "expired_api_key", "'old' expired at 2020-01-01"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_missing_wrong_or_expired_key_is_401(
    keyed: httpx.AsyncClient, headers: dict[str, str], code: str, words: str, path: str
) -> None:
    body: dict[str, Any] = chat_body() if "chat" in path else {"model": "raw-model", "prompt": "x"}

    response = await keyed.post(path, json=body, headers=headers)

    error = assert_error(response, 401, code=code)
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]
    assert "sk-" not in response.text
    await assert_next_request_succeeds(keyed)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk-good"},
        {"api-key": "sk-good"},
        {"x-api-key": "sk-good"},
        {"Authorization": "Bearer sk-hashed"},  # configured only as its sha256
    ],
)
async def test_key_header_variants(keyed: httpx.AsyncClient, headers: dict[str, str]) -> None:
    chat = await keyed.post("/v1/chat/completions", json=chat_body(), headers=headers)
    legacy = await keyed.post(
        "/v1/completions", json={"model": "raw-model", "prompt": "Hi"}, headers=headers
    )
    models = await keyed.get("/v1/models", headers=headers)

    assert chat.status_code == 200, chat.text
    assert legacy.status_code == 200, legacy.text
    assert models.status_code == 200, models.text


@pytest.mark.parametrize("query", ["api_key=sk-good", "api-key=sk-good", "key=sk-good",
                                   "access_token=sk-good", "a=1&KEY=sk-good"])  # fmt: skip
@pytest.mark.parametrize("open_proxy", [False, True], ids=["keyed", "open"])
async def test_key_in_query_string_is_refused(
    make_client: Any, keyed_config: ProxyConfig, query: str, open_proxy: bool
) -> None:
    config = keyed_config.model_copy(update={"api_keys": []}) if open_proxy else keyed_config
    client: httpx.AsyncClient = await make_client(config)

    for response in (
        await client.post(f"/v1/chat/completions?{query}", json=chat_body(), headers=GOOD),
        await client.post(f"/v1/completions?{query}", json={"model": "raw-model", "prompt": "x"}),
        await client.get(f"/v1/models?{query}", headers=GOOD),
        await client.get(f"/v1/models/raw-model?{query}", headers=GOOD),
    ):
        error = assert_error(response, 400, code="api_key_in_query")
        assert "Authorization: Bearer" in error["message"]
        assert "sk-good" not in response.text
    await assert_next_request_succeeds(client)
    fine = await client.post("/v1/chat/completions?foo=bar", json=chat_body(), headers=GOOD)
    assert fine.status_code == 200


async def test_model_outside_the_keys_models_is_403_unknown_is_404(
    keyed: httpx.AsyncClient,
) -> None:
    refused = await keyed.post(
        "/v1/chat/completions", json=chat_body(model="llama"), headers=LIMITED
    )
    error = assert_error(refused, 403, code="model_not_allowed", param="model")
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "The API key 'limited' may not use the model 'llama'."
    legacy = await keyed.post(
        "/v1/completions", json={"model": "llama", "prompt": "x"}, headers=LIMITED
    )
    assert_error(legacy, 403, code="model_not_allowed")
    unknown = await keyed.post(
        "/v1/chat/completions", json=chat_body(model="gpt-9"), headers=LIMITED
    )
    assert_error(unknown, 404, code="model_not_found")

    allowed = await keyed.post("/v1/chat/completions", json=chat_body(), headers=LIMITED)
    assert allowed.status_code == 200
    await assert_next_request_succeeds(keyed)


async def test_model_list_shows_what_the_key_may_use(keyed: httpx.AsyncClient) -> None:
    limited = await keyed.get("/v1/models", headers=LIMITED)
    everything = await keyed.get("/v1/models", headers=GOOD)

    assert [m["id"] for m in limited.json()["data"]] == ["raw-model"]
    assert [m["id"] for m in everything.json()["data"]] == ["raw-model", "llama"]
    assert_error(await keyed.get("/v1/models/llama", headers=LIMITED), 403)
    assert (await keyed.get("/v1/models/raw-model", headers=LIMITED)).status_code == 200
    assert_error(await keyed.get("/v1/models", headers={"x-api-key": "nope"}), 401)


@pytest.mark.parametrize(
    "headers", [GOOD, {"api-key": "sk-good"}, {"x-api-key": "sk-good"}], ids=lambda h: next(iter(h))
)
async def test_client_key_is_never_sent_upstream(
    keyed: httpx.AsyncClient, fake_upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    await keyed.post("/v1/chat/completions", json=chat_body(model="llama"), headers=headers)
    await keyed.post("/v1/chat/completions", json=chat_body(), headers=headers)

    with_token, without = fake_upstream.requests
    assert with_token.headers["authorization"] == "Bearer upstream-token"  # the model's own
    assert "authorization" not in without.headers
    for sent in (with_token, without):
        assert "api-key" not in sent.headers and "x-api-key" not in sent.headers
        assert b"sk-good" not in sent.content
        assert "sk-good" not in str(sent.headers)


async def test_open_proxy_needs_no_key(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer anything"}, {"x-api-key": "whatever"}):
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
        assert response.status_code == 200
        assert not any(name.startswith("x-ratelimit") for name in response.headers)


async def test_start_up_warns_when_the_proxy_is_open(
    make_client: Any, keyed_config: ProxyConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="app")
    await make_client(keyed_config)
    assert not any("open to anyone" in record.getMessage() for record in caplog.records)

    await make_client(keyed_config.model_copy(update={"api_keys": []}))
    warnings = [r for r in caplog.records if "open to anyone" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
