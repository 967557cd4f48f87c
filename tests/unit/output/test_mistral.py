"""Mistral tool calls read from whole outputs, as vLLM's mistral parser tests do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.output import mistral
from tests.unit.output.format_cases import PUNCTUATION, cases, check

FRAGMENTS = [
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    '[{"name": "f", "arguments": ',
    '{"name": "g", "arguments": {"a": 1}}',
    "add",
    *PUNCTUATION,
]


@pytest.mark.parametrize("case", cases("mistral"))
def test_reads_the_calls_of_an_output(case: dict[str, Any]) -> None:
    check(mistral.extract, case)


@pytest.mark.parametrize(
    "text",
    [
        "[TOOL_CALLS]" + "[" * 50_000,
        "[TOOL_CALLS]f" + '{"a":' * 20_000,
        "[TOOL_CALLS]{" * 5_000,
        "[TOOL_CALLS]f{}" + ", f{}" * 5_000,
    ],
)
def test_hostile_input_is_read_without_error(text: str) -> None:
    result = mistral.extract(text)

    assert mistral.TOOL_CALLS not in result.content
    assert result.calls or result.problems


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4)).map("".join))
def test_never_raises_and_keeps_markup_out_of_content(text: str) -> None:
    result = mistral.extract(text)

    assert mistral.TOOL_CALLS not in result.content
    for call in result.calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
    if not result.calls and not result.problems:
        assert result.content == text.strip()
