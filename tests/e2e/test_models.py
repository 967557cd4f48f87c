"""GET /v1/models and /v1/models/{id}; passthrough models on a proxy with PROXY_API_BASE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import NotFoundError, OpenAI

from tests.e2e.conftest import sdk_client
from tests.e2e.expected import chat_answer
from tests.e2e.servers import Server
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e

CONFIGURED = [
    "demo-raw",
    "llama",
    "chatml-model",
    "acme/chat-1",
    "bad-json",
    "upstream-500",
    "not-ok",
    "html-page",
    "cut-short",
    "too-slow",
    "dead",
    "slow",
    "slow-500",
    "hang",
]
PASSTHROUGH = "custom/meta-llama/Llama-2-13b-hf"


@pytest.fixture(scope="module")
def passthrough(passthrough_proxy: Server) -> Iterator[OpenAI]:
    with sdk_client(passthrough_proxy, api_key="unused") as openai_client:
        yield openai_client


def test_list_models_in_config_order(client: OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    validate_openai("ListModelsResponse", raw.http_response.json())
    models = list(raw.parse())
    assert [model.id for model in models] == CONFIGURED
    assert {model.object for model in models} == {"model"}


@pytest.mark.parametrize("model_id", ["llama", "acme/chat-1"])
def test_retrieve_model(client: OpenAI, model_id: str) -> None:
    raw = client.models.with_raw_response.retrieve(model_id)
    validate_openai("Model", raw.http_response.json())
    assert raw.parse().id == model_id


def test_model_with_slash_in_its_name_answers_chat(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="acme/chat-1", messages=[{"role": "user", "content": "hi"}], temperature=0
    )
    assert completion.model == "acme/chat-1"
    assert completion.choices[0].message.content == chat_answer("acme-chat", "hi", temperature=0)


def test_retrieve_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    validate_openai("ErrorResponse", caught.value.response.json())
    assert caught.value.code == "model_not_found"


def test_passthrough_chat_and_retrieve(passthrough: OpenAI) -> None:
    raw = passthrough.chat.completions.with_raw_response.create(
        model=PASSTHROUGH,
        messages=[{"role": "user", "content": "what is custom llama?"}],
        temperature=0,
    )
    validate_openai("CreateChatCompletionResponse", raw.http_response.json())
    completion = raw.parse()
    assert completion.model == PASSTHROUGH
    # `custom/` is LiteLLM's prefix: the upstream gets the model name without it.
    expected = chat_answer("meta-llama/Llama-2-13b-hf", "what is custom llama?", temperature=0)
    assert completion.choices[0].message.content == expected

    retrieved = passthrough.models.with_raw_response.retrieve(PASSTHROUGH)
    validate_openai("Model", retrieved.http_response.json())
    assert retrieved.parse().id == PASSTHROUGH


def test_passthrough_plain_name_and_empty_list(passthrough: OpenAI) -> None:
    completion = passthrough.chat.completions.create(
        model="plain-model", messages=[{"role": "user", "content": "hi"}], temperature=0
    )
    assert completion.choices[0].message.content == chat_answer("plain-model", "hi", temperature=0)
    listed = passthrough.models.with_raw_response.list()
    validate_openai("ListModelsResponse", listed.http_response.json())
    assert list(listed.parse()) == []  # passthrough names are served, not listed
