"""Model aliases through the app: exact names and patterns reach the configured model, the
answer names the model the client asked for, keys' `models` apply to the configured name, and
`/v1/models` lists exact aliases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import ApiKeyConfig, ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model

SONNET = {"Authorization": "Bearer sk-sonnet"}
OTHER = {"Authorization": "Bearer sk-other"}


@pytest.fixture
async def client(make_client: Any) -> httpx.AsyncClient:
    config = ProxyConfig(
        models=[
            model("local-big", aliases=["claude-sonnet-4-5", "claude-opus-*"]),
            model("local-small", aliases=["gpt-5*"]),
        ],
        api_keys=[
            ApiKeyConfig(key="sk-sonnet", name="sonnet", models=["local-big"]),
            ApiKeyConfig(key="sk-other", name="other", models=["local-small"]),
        ],
    )
    result: httpx.AsyncClient = await make_client(config)
    return result


@pytest.mark.parametrize(
    ("asked", "upstream_path"),
    [
        ("claude-sonnet-4-5", "/local-big"),
        ("claude-opus-4-1-20250805", "/local-big"),
        ("local-big", "/local-big"),
    ],
)
async def test_an_alias_reaches_its_model_and_the_answer_names_what_was_asked(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream, asked: str, upstream_path: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model=asked), headers=SONNET
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == asked
    assert fake_upstream.requests[-1].url.path == upstream_path


async def test_keys_models_apply_to_the_configured_name(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="claude-sonnet-4-5"), headers=OTHER
    )
    error = assert_error(response, 403, code="model_not_allowed", param="model")
    assert "local-big" in error["message"]
    allowed = await client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-5-codex"), headers=OTHER
    )
    assert allowed.status_code == 200, allowed.text


async def test_unknown_names_are_still_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="claude-haiku-4-5"), headers=SONNET
    )
    assert_error(response, 404, code="model_not_found")


async def test_models_lists_exact_aliases_for_the_keys_models(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models", headers=SONNET)).json()
    assert [m["id"] for m in listed["data"]] == ["local-big", "claude-sonnet-4-5"]
    one = await client.get("/v1/models/claude-opus-4-1", headers=SONNET)
    assert one.status_code == 200 and one.json()["id"] == "claude-opus-4-1"
    assert_error(await client.get("/v1/models/gpt-5", headers=SONNET), 403)
