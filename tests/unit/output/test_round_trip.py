"""What the prompt side writes as a model's calls, each format's reader reads back as the same
calls: the syntax taught in the prompt and the syntax read are the same one. With the proxy's
prefill for a named function, the model's continuation completes the call the prefill began."""

from __future__ import annotations

from typing import Any

import pytest

from app.output.reading import extractor
from app.output.types import TOOL_FORMATS, RawCall
from app.tool_syntax import call_prefill, render_calls

FORMATS = [fmt for fmt in TOOL_FORMATS if fmt != "none"]
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_weather", {"city": "Paris", "unit": "celsius"}),
    ("search", {"query": 'naïve café "quoted"', "limit": 3, "exact": True, "tags": ["a", "b"]}),
    ("now", {}),
    ("nested", {"filter": {"range": [1.5, None], "deep": {"x": [{"y": "z"}]}}}),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("count", [1, 2, 4])
def test_written_calls_are_read_back(fmt: Any, count: int) -> None:
    calls = CALLS[:count]
    text = render_calls(fmt, calls)
    extraction = extractor(fmt)(text)
    assert extraction.problems == []
    assert extraction.calls == [RawCall(name, arguments) for name, arguments in calls]
    assert extraction.content == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_before_the_calls_is_the_content(fmt: Any) -> None:
    text = "Let me check that.\n" + render_calls(fmt, CALLS[:1])
    extraction = extractor(fmt)(text)
    assert extraction.content == "Let me check that."
    assert [call.name for call in extraction.calls] == ["get_weather"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_named_prefill_and_its_continuation_make_the_call(fmt: Any) -> None:
    whole = render_calls(fmt, CALLS[:1])
    prefill = call_prefill(fmt, "get_weather")
    # The model's continuation is the rest of the call as the format writes it (spacing may
    # differ from the prefill's; the reader must not care).
    assert prefill
    extraction = extractor(fmt)(prefill + _rest_after(whole, prefill))
    assert extraction.problems == []
    assert extraction.calls == [RawCall(*CALLS[0])]


def _rest_after(whole: str, prefill: str) -> str:
    """`whole` minus the longest prefix it shares with `prefill`, compared without spaces."""
    squeeze = prefill.replace(" ", "")
    taken = 0
    for index, char in enumerate(whole):
        if taken == len(squeeze):
            return whole[index:]
        if char == " ":
            continue
        if char != squeeze[taken]:
            break
        taken += 1
    raise AssertionError(f"prefill {prefill!r} does not begin {whole!r}")
