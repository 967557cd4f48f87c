"""Legacy completions: a list of prompts goes upstream in one request, choices come back in order.

Temperature is above 0 here on purpose: the mock then seeds each output with its index in the
upstream batch, so matching the expected texts proves the batch layout, not just the prompts.
"""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from app.tokens import estimate_tokens
from tests.e2e.expected import continuations
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e

PROMPTS = ["The capital of France is P", "Once upon a time", "def add(a, b):"]


def create_completion(client: OpenAI, **request: Any) -> tuple[Any, dict[str, Any]]:
    raw = client.completions.with_raw_response.create(**request)
    body = raw.http_response.json()
    validate_openai("CreateCompletionResponse", body)
    return raw.parse(), body


def test_list_of_prompts_gives_choices_in_order(client: OpenAI) -> None:
    completion, body = create_completion(
        client, model="demo-raw", prompt=PROMPTS, temperature=0.7, max_tokens=20
    )
    expected = continuations("demo", PROMPTS, temperature=0.7, max_tokens=20)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert [choice.text for choice in completion.choices] == expected
    for choice, prompt in zip(completion.choices, PROMPTS, strict=True):
        assert not choice.text.startswith(prompt)  # the echo was stripped
    assert body["object"] == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == sum(estimate_tokens(p) for p in PROMPTS)
    assert completion.usage.completion_tokens == sum(estimate_tokens(e) for e in expected)


def test_n2_with_two_prompts_orders_choices_by_prompt(client: OpenAI) -> None:
    prompts = PROMPTS[:2]
    completion, _ = create_completion(
        client, model="demo-raw", prompt=prompts, n=2, temperature=0.9
    )
    batch = [prompts[0], prompts[0], prompts[1], prompts[1]]
    expected = continuations("demo", batch, temperature=0.9)
    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    assert [choice.text for choice in completion.choices] == expected
    assert expected[0] != expected[1] and expected[2] != expected[3]


def test_single_string_prompt_and_length(client: OpenAI) -> None:
    completion, _ = create_completion(
        client, model="demo-raw", prompt=PROMPTS[0], temperature=0, max_tokens=4
    )
    (choice,) = completion.choices
    assert choice.text == continuations("demo", PROMPTS[:1], temperature=0, max_tokens=4)[0]
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_echo_prepends_the_prompt(client: OpenAI) -> None:
    completion, _ = create_completion(
        client, model="demo-raw", prompt=PROMPTS[1], temperature=0, echo=True
    )
    expected = continuations("demo", PROMPTS[1:2], temperature=0)[0]
    assert completion.choices[0].text == PROMPTS[1] + expected
