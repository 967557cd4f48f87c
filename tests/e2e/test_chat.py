"""Chat completions through the official SDK, checked against the mock's deterministic answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from app.tokens import estimate_tokens
from tests.e2e.conftest import LLAMA_MAX_TOKENS
from tests.e2e.expected import chat_answer, continuations
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e

QUESTION = "What is custom llama?"


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def create_chat(client: OpenAI, **request: Any) -> tuple[Any, dict[str, Any]]:
    """The SDK's parsed completion and the raw JSON, validated against OpenAI's schema."""
    raw = client.chat.completions.with_raw_response.create(**request)
    body = raw.http_response.json()
    validate_openai("CreateChatCompletionResponse", body)
    assert raw.headers["x-request-id"]
    return raw.parse(), body


def test_chat_sync(client: OpenAI) -> None:
    completion, body = create_chat(client, model="demo-raw", messages=user(QUESTION), temperature=0)
    expected = chat_answer("demo", QUESTION, temperature=0)
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert completion.model == "demo-raw"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == estimate_tokens(QUESTION)
    assert completion.usage.completion_tokens == estimate_tokens(expected)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_chat_async(aclient: AsyncOpenAI) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(
        model="demo-raw", messages=user(QUESTION), temperature=0
    )
    validate_openai("CreateChatCompletionResponse", raw.http_response.json())
    completion = raw.parse()
    assert completion.choices[0].message.content == chat_answer("demo", QUESTION, temperature=0)


@pytest.mark.parametrize(
    ("model", "upstream_model", "rendered", "params"),
    [
        (
            "llama",
            "meta-llama/Llama-2-13b-hf",
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a river. [/INST]",
            {"max_tokens": LLAMA_MAX_TOKENS},  # the model's configured default
        ),
        (
            "chatml-model",
            "chatml-model",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a river.<|im_end|>\n"
            "<|im_start|>assistant\n",
            {},
        ),
    ],
    ids=["llama2", "chatml"],
)
def test_chat_renders_the_model_template(
    client: OpenAI, model: str, upstream_model: str, rendered: str, params: dict[str, Any]
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a river."},
    ]
    completion, _ = create_chat(client, model=model, messages=messages, temperature=0)
    expected = chat_answer(upstream_model, rendered, temperature=0, **params)
    assert completion.choices[0].message.content == expected
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == estimate_tokens(rendered)


def test_llama_default_max_tokens_gives_length(client: OpenAI) -> None:
    completion, _ = create_chat(
        client, model="llama", messages=user("Tell me a long story."), temperature=0
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == LLAMA_MAX_TOKENS
    assert completion.choices[0].finish_reason == "length"


def test_chat_text_content_parts(client: OpenAI) -> None:
    parts = [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]
    completion, _ = create_chat(client, model="demo-raw", messages=user(parts), temperature=0)
    joined = "Part one.\nPart two."
    assert completion.choices[0].message.content == chat_answer("demo", joined, temperature=0)


def test_chat_n2_gives_two_different_choices(client: OpenAI) -> None:
    completion, _ = create_chat(
        client, model="demo-raw", messages=user(QUESTION), n=2, temperature=0.9
    )
    expected = [c.lstrip() for c in continuations("demo", [QUESTION] * 2, temperature=0.9)]
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert [choice.message.content for choice in completion.choices] == expected
    assert expected[0] != expected[1]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == sum(estimate_tokens(e) for e in expected)


def test_chat_stop_cuts_before_the_stop_sequence(client: OpenAI) -> None:
    question = "Why do rivers bend?"  # its answer has several sentences
    full = chat_answer("demo", question, temperature=0)
    assert full.count(".") > 1
    completion, _ = create_chat(
        client,
        model="demo-raw",
        messages=user(question),
        temperature=0,
        stop=[".", "never-in-the-answer"],
    )
    choice = completion.choices[0]
    assert choice.message.content == full[: full.index(".")]
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == estimate_tokens(choice.message.content)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_small_max_tokens_gives_length(client: OpenAI, field: str) -> None:
    request: dict[str, Any] = {field: 3}
    completion, _ = create_chat(
        client, model="demo-raw", messages=user(QUESTION), temperature=0, **request
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert choice.message.content == chat_answer("demo", QUESTION, temperature=0, max_tokens=3)


def test_top_k_from_extra_body_goes_upstream(client: OpenAI) -> None:
    completion, _ = create_chat(
        client, model="demo-raw", messages=user(QUESTION), extra_body={"top_k": 5}
    )
    with_top_k = chat_answer("demo", QUESTION, top_k=5)
    assert with_top_k != chat_answer("demo", QUESTION)  # the default top_k would differ
    assert completion.choices[0].message.content == with_top_k


async def test_100_concurrent_requests_each_get_their_own_answer(aclient: AsyncOpenAI) -> None:
    prompts = [f"Request {i}: describe river number {i}." for i in range(100)]
    expected = [chat_answer("demo", prompt, temperature=0) for prompt in prompts]
    assert len(set(expected)) > 90  # the prompts really ask different questions

    async def ask(prompt: str) -> str | None:
        completion = await aclient.chat.completions.create(
            model="demo-raw", messages=user(prompt), temperature=0
        )
        return completion.choices[0].message.content

    answers = await asyncio.gather(*(ask(prompt) for prompt in prompts))
    assert answers == expected
