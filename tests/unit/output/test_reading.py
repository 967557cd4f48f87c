"""app/output/reading.py: outputs read against a spec, hermes (tests/data/output/reading.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.output.reading import extractor, read_output
from app.output.spec import OutputSpec
from app.output.types import ToolSpec

DATA = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "output" / "reading.json").read_text("utf-8")
)
TOOLS = tuple(ToolSpec(**tool) for tool in DATA["tools"])
SCHEMAS: dict[str, Any] = DATA["schemas"]
CASES: list[dict[str, Any]] = DATA["cases"]


def spec_of(fields: dict[str, Any]) -> OutputSpec:
    fields = dict(fields)
    tools = TOOLS if fields.pop("tools", False) else ()
    if "schema" in fields:
        fields["schema"] = SCHEMAS[fields["schema"]]
    return OutputSpec(tools=tools, **fields)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_read_output(case: dict[str, Any]) -> None:
    reading = read_output(case["text"], spec_of(case["spec"]))

    assert reading.content == case["content"]
    assert reading.reasoning == case["reasoning"]
    assert [[call.name, call.arguments] for call in reading.calls] == case["calls"]
    assert reading.problems == case["problems"]


def test_a_format_without_a_reader_is_refused() -> None:
    with pytest.raises(ValueError, match="no reader for tool format 'none'"):
        extractor("none")
    with pytest.raises(ValueError, match="no reader for tool format 'os'"):
        extractor("os")


def test_importing_the_readers_loads_no_json_library() -> None:
    code = (
        "import sys\n"
        "import app.output.reading, app.output.checks, app.output.json_answer\n"
        "import app.output.hermes, app.output.reasoning\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('jsonschema', 'json_repair', 'referencing')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


# --- never raises: any text, any spec (hermes) -------------------------------------------------

_PIECES = [
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "```json\n",
    "```",
    "{",
    "}",
    "[",
    "]",
    '"',
    "\\",
    ",",
    ":",
    '"name"',
    '"arguments"',
    '"get_weather"',
    '"get_time"',
    '"city"',
    "'city'",
    "null",
    "true",
    "1e999",
    "NaN",
    "Infinity",
    "\n",
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}',
    '{"city": "Oslo", "temp": 1}',
    '{"city": "Oslo", "temp": NaN}',
]
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=12)), max_size=30).map(
    "".join
)
specs = st.builds(
    OutputSpec,
    tools=st.sampled_from([(), TOOLS, TOOLS[:1]]),
    tool_choice=st.sampled_from(["auto", "none", "required", "function"]),
    tool_name=st.just("get_weather"),
    parallel_tool_calls=st.booleans(),
    json=st.sampled_from(["text", "json_object", "json_schema"]),
    schema=st.sampled_from([None, SCHEMAS["answer"], {"type": "object"}]),
    reasoning=st.sampled_from(["none", "think_tags"]),
)


@settings(max_examples=400, deadline=None)
@given(text=texts, spec=specs)
def test_read_output_never_raises_and_keeps_its_promises(text: str, spec: OutputSpec) -> None:
    reading = read_output(text, spec)

    if spec.offers_tools:
        assert reading.content is None or "<tool_call>" not in reading.content
    if reading.content is None:
        assert reading.calls
    if reading.problems:
        return
    if spec.offers_tools and spec.tool_choice in ("required", "function"):
        assert reading.calls
    if spec.offers_tools and spec.tool_choice == "function":
        assert {call.name for call in reading.calls} == {"get_weather"}
    if not spec.parallel_tool_calls:
        assert len(reading.calls) <= 1
    for call in reading.calls:
        assert isinstance(_strict_json(call.arguments), dict)
    if spec.json != "text" and not reading.calls:
        assert isinstance(_strict_json(reading.content or ""), dict)


def _strict_json(text: str) -> Any:
    """JSON as any reader takes it: no NaN, no Infinity, no number beyond a float."""
    value = json.loads(text, parse_constant=_refuse)
    json.dumps(value, allow_nan=False)  # raises on 1e999, read as infinity
    return value


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} in JSON")


def test_problems_are_capped() -> None:
    text = '<tool_call>{"name": "nope", "arguments": {}}</tool_call>' * 30

    problems = read_output(text, spec_of({"tools": True})).problems

    assert len(problems) == 11
    assert problems[-1] == "(and 20 more)"
