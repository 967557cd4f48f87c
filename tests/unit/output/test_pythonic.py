"""Pythonic tool calls read from whole outputs, as vLLM's pythonic parser tests do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.output import pythonic
from tests.unit.output.format_cases import cases, check

FRAGMENTS = [
    "<|python_start|>",
    "<|python_end|>",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "f(",
    "get_weather(city=",
    "a=",
    "=",
    ",",
    ":",
    "'",
    '"',
    "\\",
    "1e999",
    "true",
    "None",
    "**k",
    "x.y",
    "f'{x}'",
    "é東🚀",
    "\n",
    "\x00",
]


@pytest.mark.parametrize("case", cases("pythonic"))
def test_reads_the_calls_of_an_output(case: dict[str, Any]) -> None:
    check(pythonic.extract, case)


@pytest.mark.parametrize(
    "text",
    [
        "[f(a=" * 20_000,
        "[f(a=" + "[" * 50_000,
        "x[f(a=" * 20_000,
        "[f(a='\x00')]",
        "[f(a=1)" * 1000,
    ],
)
def test_hostile_nesting_is_text_or_a_problem_never_an_error(text: str) -> None:
    result = pythonic.extract(text)

    assert result.calls == []
    assert result.content == text or result.problems


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4)).map("".join))
def test_never_raises_and_keeps_markup_out_of_content(text: str) -> None:
    result = pythonic.extract(text)

    assert pythonic.PYTHON_START not in result.content
    for call in result.calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
    if not result.calls and not result.problems:
        assert result.content == text.strip()
