"""`forward_client_auth`: the client's own key goes upstream only for models that say so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import ModelConfig, ProxyConfig
from tests.api.conftest import FakeUpstream, chat_body, mock_answer, model

CONFIG = ProxyConfig(
    models=[
        model("forwarding", forward_client_auth=True),
        model("own-token", headers={"Authorization": "Bearer upstream-secret"}),
        model("with-fallback", fallbacks=["forwarding"]),
    ]
)


@pytest.mark.parametrize(
    "header",
    [
        ("authorization", "Bearer sk-client-1"),
        ("api-key", "sk-client-1"),
        ("x-api-key", "sk-client-1"),
    ],
)
async def test_a_forwarding_model_sends_the_clients_key_as_bearer(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream, header: tuple[str, str]
) -> None:
    client: httpx.AsyncClient = await make_client(CONFIG)

    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="forwarding"), headers=dict([header])
    )

    assert response.status_code == 200, response.text
    assert fake_upstream.requests[0].headers["authorization"] == "Bearer sk-client-1"


async def test_other_models_never_see_the_clients_key(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client: httpx.AsyncClient = await make_client(CONFIG)
    headers = {"authorization": "Bearer sk-client-1"}

    await client.post("/v1/chat/completions", json=chat_body(model="own-token"), headers=headers)

    assert fake_upstream.requests[0].headers["authorization"] == "Bearer upstream-secret"
    assert "sk-client-1" not in str(fake_upstream.requests[0].headers)


async def test_a_forwarding_fallback_gets_the_key_a_non_forwarding_primary_kept(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client: httpx.AsyncClient = await make_client(CONFIG)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/with-fallback":
            return httpx.Response(503, text="down")
        return mock_answer(request)

    fake_upstream.override = handler
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(model="with-fallback"),
        headers={"authorization": "Bearer sk-client-2"},
    )

    assert response.status_code == 200, response.text
    primary, fallback = fake_upstream.requests
    assert "authorization" not in primary.headers
    assert fallback.headers["authorization"] == "Bearer sk-client-2"


async def test_no_client_key_means_no_authorization_upstream(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client: httpx.AsyncClient = await make_client(CONFIG)

    await client.post("/v1/chat/completions", json=chat_body(model="forwarding"))

    assert "authorization" not in fake_upstream.requests[0].headers


def test_forwarding_and_an_own_authorization_header_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        ModelConfig(
            name="m",
            deployments=[{"api_base": "http://h/x", "headers": {"authorization": "Bearer t"}}],
            forward_client_auth=True,
        )
