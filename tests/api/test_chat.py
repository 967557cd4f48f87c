"""POST /v1/chat/completions through the real app, upstream faked at the transport."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from app.config import ProxyConfig
from app.mock_upstream import complete
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model
from tests.openai_spec import validate_openai


def mock_continuation(body: dict[str, Any], index: int = 0) -> str:
    """What the reference upstream continues prompt `index` with (echo removed)."""
    _, payload = complete(body)
    item = payload["data"][index]
    text: str = item["output"][0]
    return text[len(item["prompt"]) :]


async def test_chat_translates_request_and_answer(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "The capital of France is P"},
            ],
            temperature=0.2,
            max_tokens=10,
            seed=7,
            user="someone",
            presence_penalty=0.5,
        ),
    )
    assert response.status_code == 200, response.text
    sent = fake_upstream.bodies[0]
    # LiteLLM's custom provider: contents joined with one space, model after "custom/".
    assert sent == {
        "model": "meta-llama/Llama-2-13b-hf",
        "params": {
            "prompt": ["Be terse. The capital of France is P"],
            "max_tokens": 10,
            "temperature": 0.2,
            "top_p": 1.0,
            "top_k": 40,
        },
    }
    answer = response.json()
    validate_openai("CreateChatCompletionResponse", answer)
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "raw-model"
    assert answer["choices"][0]["message"]["content"] == mock_continuation(sent).lstrip()
    assert answer["usage"]["total_tokens"] == (
        answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
    )


async def test_template_headers_and_request_id_go_upstream(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(model="llama", messages=[{"role": "user", "content": "Hi"}]),
        headers={"x-request-id": "req-123", "Authorization": "Bearer client-secret"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-123"
    upstream = fake_upstream.requests[0]
    assert upstream.url == "http://upstream.test/llama"
    assert upstream.headers["authorization"] == "Bearer up-1"  # the model's, not the client's
    assert upstream.headers["x-request-id"] == "req-123"
    assert fake_upstream.bodies[0]["params"]["prompt"] == ["<s>[INST] Hi [/INST]"]
    assert fake_upstream.bodies[0]["model"] == "llama"


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"x-request-id": "a b<script>"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "a b<script>"
    assert len(response.headers["x-request-id"]) == 32


async def test_model_defaults_and_extra_body(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    await client.post("/v1/chat/completions", json=chat_body(model="org/slashed", top_k=5))
    await client.post(
        "/v1/chat/completions",
        json=chat_body(model="org/slashed", max_completion_tokens=3, max_tokens=9, top_p=0.5),
    )
    first, second = (body["params"] for body in fake_upstream.bodies)
    assert first == {**first, "max_tokens": 12, "temperature": 0.0, "top_k": 5}
    assert second["max_tokens"] == 3
    assert second["top_p"] == 0.5


async def test_n_sends_n_prompts_in_one_request(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(n=3, temperature=1.0))
    assert response.status_code == 200
    assert len(fake_upstream.requests) == 1
    assert fake_upstream.bodies[0]["params"]["prompt"] == ["The capital of France is P"] * 3
    choices = response.json()["choices"]
    assert [choice["index"] for choice in choices] == [0, 1, 2]
    assert len({choice["message"]["content"] for choice in choices}) == 3


async def test_stop_cuts_the_answer(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/chat/completions", json=chat_body(max_tokens=200))).json()
    content = plain["choices"][0]["message"]["content"]
    stop = content.split()[2]
    cut = (
        await client.post("/v1/chat/completions", json=chat_body(max_tokens=200, stop=[stop]))
    ).json()
    assert cut["choices"][0]["message"]["content"] == content[: content.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


async def test_length_when_max_tokens_used_up(client: httpx.AsyncClient) -> None:
    answer = (await client.post("/v1/chat/completions", json=chat_body(max_tokens=3))).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3


async def test_text_parts_are_joined(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    response = await client.post(
        "/v1/chat/completions", json=chat_body(messages=[{"role": "user", "content": parts}])
    )
    assert response.status_code == 200
    assert fake_upstream.bodies[0]["params"]["prompt"] == ["one\ntwo"]


async def test_image_part_is_refused(client: httpx.AsyncClient) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    response = await client.post(
        "/v1/chat/completions", json=chat_body(messages=[{"role": "user", "content": parts}])
    )
    assert_error(response, 400, param="messages[0].content[0].type")


async def test_unsupported_features_are_refused_with_param(client: httpx.AsyncClient) -> None:
    cases = {
        "functions": [{"name": "f", "parameters": {}}],
        "function_call": "auto",
        "logprobs": True,
        "audio": {"voice": "alloy", "format": "mp3"},
    }
    for param, value in cases.items():
        response = await client.post("/v1/chat/completions", json=chat_body(**{param: value}))
        validate_openai(
            "ErrorResponse", assert_error(response, 400, param=param) and response.json()
        )


async def test_template_violation_is_a_400(client: httpx.AsyncClient) -> None:
    messages = [{"role": "assistant", "content": "I speak first"}]
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="llama", messages=messages)
    )
    assert_error(response, 400, param="messages")


async def test_passthrough_model(make_client: Any, fake_upstream: FakeUpstream) -> None:
    from app.settings import Settings

    client = await make_client(
        ProxyConfig(), settings=Settings(api_base="http://default.test/inference", api_keys=[])
    )
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="custom/meta-llama/Llama-2-13b-hf")
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "custom/meta-llama/Llama-2-13b-hf"
    assert fake_upstream.requests[0].url == "http://default.test/inference"
    assert fake_upstream.bodies[0]["model"] == "meta-llama/Llama-2-13b-hf"
    retrieved = await client.get("/v1/models/custom/some/model")
    assert retrieved.json()["id"] == "custom/some/model"


async def test_upstream_sees_one_json_body(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    await client.post("/v1/chat/completions", json=chat_body())
    request = fake_upstream.requests[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.content)["params"]["prompt"] == ["The capital of France is P"]


async def test_many_models_do_not_mix(make_client: Any) -> None:
    config = ProxyConfig(models=[model(f"m{i}") for i in range(5)])
    client = await make_client(config)
    for i in range(5):
        answer = (await client.post("/v1/chat/completions", json=chat_body(model=f"m{i}"))).json()
        assert answer["model"] == f"m{i}"
