"""app/output/checks.py: calls held against the offered tools (tests/data/output/checks.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.output.checks import check_calls
from app.output.json_answer import BadSchema
from app.output.spec import OutputSpec
from app.output.types import RawCall, ToolSpec

DATA = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "output" / "checks.json").read_text("utf-8")
)
TOOLS = tuple(ToolSpec(**tool) for tool in DATA["tools"])
CASES: list[dict[str, Any]] = DATA["cases"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_check_calls(case: dict[str, Any]) -> None:
    spec = OutputSpec(tools=TOOLS, **case["spec"])
    calls = [RawCall(name=name, arguments=arguments) for name, arguments in case["calls"]]

    checked, problems = check_calls(calls, spec)

    assert [[call.name, call.arguments] for call in checked] == case["checked"]
    assert problems == case["problems"]


def test_a_tool_whose_parameters_are_not_a_schema_is_the_clients_error() -> None:
    spec = OutputSpec(tools=(ToolSpec(name="f", parameters={"type": "dict"}),))

    with pytest.raises(BadSchema, match=r"^\$\.type: "):
        check_calls([RawCall(name="f", arguments={})], spec)
