"""POST /v1/completions, GET /v1/models[/{id}], /health and the OpenAPI document."""

from __future__ import annotations

import httpx

from app.mock_upstream import complete
from tests.api.conftest import FakeUpstream, assert_error
from tests.openai_spec import validate_openai


async def test_list_of_prompts_goes_upstream_in_one_request(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    prompts = ["One", "Two", "Three"]
    response = await client.post(
        "/v1/completions", json={"model": "raw-model", "prompt": prompts, "n": 2}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    validate_openai("CreateCompletionResponse", answer)
    assert answer["id"].startswith("cmpl-")
    assert len(fake_upstream.requests) == 1
    sent = fake_upstream.bodies[0]
    assert sent["params"]["prompt"] == ["One", "One", "Two", "Two", "Three", "Three"]
    _, expected = complete(sent)
    texts = [item["output"][0][len(item["prompt"]) :] for item in expected["data"]]
    assert [choice["text"] for choice in answer["choices"]] == texts
    assert [choice["index"] for choice in answer["choices"]] == list(range(6))


async def test_echo_and_single_prompt(client: httpx.AsyncClient) -> None:
    answer = (
        await client.post(
            "/v1/completions", json={"model": "raw-model", "prompt": "Hello", "echo": True}
        )
    ).json()
    assert answer["choices"][0]["text"].startswith("Hello ")


async def test_token_prompts_and_suffix_are_refused(client: httpx.AsyncClient) -> None:
    for body, param in (
        ({"model": "raw-model", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "raw-model", "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": "raw-model", "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": "raw-model"}, "prompt"),
    ):
        assert_error(await client.post("/v1/completions", json=body), 400, param=param)


async def test_models(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()
    validate_openai("ListModelsResponse", listing)
    assert [item["id"] for item in listing["data"]] == ["raw-model", "llama", "org/slashed"]
    one = (await client.get("/v1/models/org/slashed")).json()
    validate_openai("Model", one)
    assert one["id"] == "org/slashed"
    assert_error(await client.get("/v1/models/missing"), 404, code="model_not_found")


async def test_health_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "ChatCompletionRequest" in schemas and "ChatMessage" in schemas
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    errors = {
        path: document["paths"][path]["post"]["responses"]["default"]["description"]
        for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages")
    }
    assert errors["/v1/chat/completions"] == errors["/v1/responses"] == "An OpenAI error envelope"
    assert errors["/v1/messages"].startswith("An Anthropic error envelope")
    assert "MessagesRequest" in schemas and "CreateResponse" in schemas
