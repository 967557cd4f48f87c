"""Llama 3 JSON tool calls read from whole outputs, as vLLM's llama3_json parser tests do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.output import llama3_json
from tests.unit.output.format_cases import PUNCTUATION, cases, check

FRAGMENTS = [
    "<|python_tag|>",
    "<|eom_id|>",
    '{"name": "f", "parameters": ',
    '{"name": "g", "arguments": {"a": 1}}',
    '{"type": "function", "name": "h", "parameters": {}}',
    '{"name": ',
    '"parameters": ',
    ";",
    *PUNCTUATION,
]


@pytest.mark.parametrize("case", cases("llama3_json"))
def test_reads_the_calls_of_an_output(case: dict[str, Any]) -> None:
    check(llama3_json.extract, case)


@pytest.mark.parametrize(
    "text",
    [
        "{" * 50_000,
        '{"a":' * 20_000,
        '{"a":' * 20_000 + '"name"',
        "[" * 50_000 + "]" * 50_000,
        '{"name": "f", "parameters": ' * 5_000,
    ],
)
def test_hostile_nesting_is_text_or_a_problem_never_an_error(text: str) -> None:
    result = llama3_json.extract(text)

    assert result.calls == []
    assert result.content == text or result.problems


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4)).map("".join))
def test_never_raises_and_keeps_markup_out_of_content(text: str) -> None:
    result = llama3_json.extract(text)

    assert llama3_json.PYTHON_TAG not in result.content
    for call in result.calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
    if not result.calls and not result.problems:
        assert result.content == text.replace("<|eom_id|>", "").replace("<|eot_id|>", "").strip()
