"""app/output/hermes.py fed model outputs (tests/data/output/hermes.json), as vLLM's tests do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.output.hermes import extract

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "output" / "hermes.json").read_text("utf-8")
)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_extract_reads_the_calls_and_the_content(case: dict[str, Any]) -> None:
    extraction = extract(case["text"])

    assert extraction.content == case["content"]
    assert [[call.name, call.arguments] for call in extraction.calls] == case["calls"]
    assert len(extraction.problems) == len(case["problems"]), extraction.problems
    for problem, expected in zip(extraction.problems, case["problems"], strict=True):
        assert expected in problem


def test_a_problem_shows_the_form_to_write() -> None:
    (problem,) = extract("<tool_call>get_weather(city='Paris')</tool_call>").problems

    assert problem.startswith("tool call 1 is not valid JSON")
    assert '{"name": "<tool name>", "arguments": {' in problem


def test_reading_stops_after_five_broken_blocks() -> None:
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call>' + "<tool_call>x</tool_call>" * 7

    extraction = extract(text)

    assert [call.name for call in extraction.calls] == ["a"]
    assert [problem[:12] for problem in extraction.problems[:5]] == [
        f"tool call {n} " for n in range(2, 7)
    ]
    assert extraction.problems[5:] == ["(the blocks after this one were not read)"]


def test_a_block_nested_too_deeply_to_repair_is_a_problem() -> None:
    (problem,) = extract("<tool_call>" + "{" * 5000).problems

    assert "nested too deeply to repair (over 64)" in problem
