"""Errors under /v1/messages are Anthropic's envelope, wherever they are made: the route's own
refusals, Starlette's 404 and 405, the telemetry middleware's 500; every other path keeps
OpenAI's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import ProxyConfig
from tests.api.conftest import assert_error, model
from tests.api.test_errors import ExplodingUpstream

MESSAGE = {"model": "raw-model", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def assert_anthropic_error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """Anthropic's envelope with this status and type, and the request id in `request-id`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == type_
    assert response.headers["request-id"] == response.headers["x-request-id"] == body["request_id"]
    error: dict[str, Any] = body["error"]
    return error


async def test_an_internal_error_is_a_500_in_anthropics_envelope(make_client: Any) -> None:
    client = await make_client(
        ProxyConfig(models=[model("raw-model")]), upstream=ExplodingUpstream()
    )
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    strict = httpx.AsyncClient(  # the 500 is answered inside the app, not raised to the server
        transport=httpx.ASGITransport(app=transport.app, raise_app_exceptions=True),
        base_url="http://proxy.test",
    )
    async with strict:
        response = await strict.post("/v1/messages", json=MESSAGE)
        error = assert_anthropic_error(response, 500, "api_error")
        assert "secret detail" not in error["message"]
        assert response.headers["request-id"] in error["message"]
        assert_error(await strict.post("/v1/chat/completions", json={**MESSAGE}), 500)


@pytest.mark.parametrize(
    ("method", "path", "status", "type_"),
    [
        ("POST", "/v1/messages/batches", 404, "not_found_error"),
        ("GET", "/v1/messages", 405, "invalid_request_error"),
        ("GET", "/v1/messages/count_tokens", 405, "invalid_request_error"),
        ("POST", "/v1/messages", 400, "invalid_request_error"),  # no body
    ],
)
async def test_routing_errors_under_messages(
    client: httpx.AsyncClient, method: str, path: str, status: int, type_: str
) -> None:
    assert_anthropic_error(await client.request(method, path), status, type_)


@pytest.mark.parametrize("path", ["/v1/messagesx", "/v1/message", "/v2/messages"])
async def test_other_paths_keep_openais_envelope(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={})
    assert_error(response, 404, code="not_found")
    assert "request-id" not in response.headers


async def test_a_validation_error_of_the_models_list_is_openais(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", params={"limit": 0})
    assert_error(response, 400, param="limit")
