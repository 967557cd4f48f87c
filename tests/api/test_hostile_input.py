"""Hostile and oversized input: each gets its 4xx envelope, and the next normal request works.

Request limits (messages, prompt size, max_tokens cap), header injection through model names
and request ids, and bodies built to hurt a parser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from app.config import ModelConfig, ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model

Client = httpx.AsyncClient


async def limited(make_client: Callable[..., Any], **limits: Any) -> Client:
    config = ProxyConfig(
        models=[
            model("raw-model"),
            model("capped", max_tokens_cap=50, defaults={"max_tokens": 16}),
        ],
        **limits,
    )
    client: Client = await make_client(config)
    return client


async def still_serves(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text


def messages(count: int, text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}] * count


async def test_too_many_messages_is_400(make_client: Callable[..., Any]) -> None:
    client = await limited(make_client, max_messages=3)

    ok = await client.post("/v1/chat/completions", json=chat_body(messages=messages(3)))
    assert ok.status_code == 200
    error = assert_error(
        await client.post("/v1/chat/completions", json=chat_body(messages=messages(4))),
        400,
        param="messages",
    )
    assert error["message"] == "The request has 4 messages; the limit is 3."
    await still_serves(client)


async def test_too_many_legacy_prompts_is_400_before_n_multiplies_them(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await limited(make_client, max_messages=3)

    response = await client.post(
        "/v1/completions", json={"model": "raw-model", "prompt": ["a"] * 4, "n": 128}
    )

    assert_error(response, 400, param="prompt")
    assert fake_upstream.requests == []
    await still_serves(client)


async def test_prompt_text_over_the_limit_counts_every_choice(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await limited(make_client, max_prompt_chars=100)
    body = chat_body(messages=messages(1, "x" * 60))

    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    error = assert_error(
        await client.post("/v1/chat/completions", json={**body, "n": 2}),
        400,
        code="context_length_exceeded",
        param="messages",
    )
    assert "120 characters" in error["message"] and "limit is 100" in error["message"]
    assert len(fake_upstream.requests) == 1

    legacy = {"model": "raw-model", "prompt": ["y" * 60, "z" * 60]}
    assert_error(await client.post("/v1/completions", json=legacy), 400, param="prompt")
    await still_serves(client)


@pytest.mark.parametrize(
    ("field", "endpoint"),
    [
        ("max_tokens", "/v1/chat/completions"),
        ("max_completion_tokens", "/v1/chat/completions"),
        ("max_tokens", "/v1/completions"),
    ],
)
async def test_max_tokens_above_the_models_cap_is_400(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream, field: str, endpoint: str
) -> None:
    client = await limited(make_client)
    base = (
        chat_body(model="capped")
        if endpoint.endswith("chat/completions")
        else {"model": "capped", "prompt": "Once"}
    )

    at_cap = await client.post(endpoint, json={**base, field: 50})
    assert at_cap.status_code == 200, at_cap.text
    assert fake_upstream.bodies[-1]["params"]["max_tokens"] == 50
    error = assert_error(await client.post(endpoint, json={**base, field: 51}), 400, param=field)
    assert error["message"] == f"'{field}' is 51, above this model's limit of 50."
    await still_serves(client)


def test_a_default_above_the_cap_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="defaults.max_tokens is above max_tokens_cap"):
        ModelConfig(name="m", api_base="http://h/x", max_tokens_cap=10, defaults={"max_tokens": 11})


@pytest.mark.parametrize(
    "name",
    [
        "evil\r\nx-injected: 1",
        "evil\nx-injected: 1",
        "custom/evil\r\n\r\nHTTP/1.1 200 OK",
        "a" * 10_000,
        "\x00",
        "../../etc/passwd",
        "ünïcode-模型",
    ],
)
async def test_hostile_model_names_are_404_and_never_reach_a_header(
    client: Client, name: str
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(model=name))

    assert_error(response, 404, code="model_not_found")
    assert "x-injected" not in response.headers
    assert all("\n" not in value and "\r" not in value for value in response.headers.values())
    await still_serves(client)


@pytest.mark.parametrize(
    "request_id",
    ["abc\r\nx-injected: 1", "a" * 129, "id with spaces", "ünï", "<script>"],
)
async def test_unsafe_request_ids_are_replaced_not_echoed(
    client: Client, fake_upstream: FakeUpstream, request_id: str
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(),
        headers={"x-request-id": request_id.encode("utf-8")},
    )

    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    assert echoed != request_id and len(echoed) == 32
    assert fake_upstream.requests[-1].headers["x-request-id"] == echoed
    assert "x-injected" not in response.headers


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}], '
        b'"top_p": Infinity}',
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}], "n": 1e400}',
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}], "n": 1.5}',
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}], '
        b'"max_tokens": 99999999999999999999999999}',
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "raw-model", "messages": [{"role": "user", "content": "x"}]}' + b" " * 10
        + b"trailing",
        b'{"model": "raw-model", "model": 5, "messages": []}',
        b'{"model": "raw-model", "messages": {"role": "user"}}',
        b"\xef\xbb\xbf{}",
        b"null",
        b'"just a string"',
    ],
)  # fmt: skip
async def test_bodies_built_to_hurt_a_parser_are_400(client: Client, body: bytes) -> None:
    response = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )

    assert_error(response, 400)
    await still_serves(client)


async def test_a_huge_number_of_tiny_messages_within_the_body_limit_is_refused_cheaply(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await limited(make_client)  # default: 1000 messages
    body = orjson.dumps(chat_body(messages=messages(50_000, "")))

    response = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )

    assert_error(response, 400, param="messages")
    assert fake_upstream.requests == []
    await still_serves(client)
