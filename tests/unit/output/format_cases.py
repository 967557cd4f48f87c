"""The cases of a tool-format reader as data: tests/data/output/<format>.json.

Each case: `text` (the model's whole output), the `content` and `calls` ({name, arguments})
expected, and `problems`: for each problem expected, a fragment its sentence must contain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.output.types import Extraction, RawCall

# Pieces every reader's fuzz mixes into its own markup: JSON's punctuation, quotes, escapes,
# values JSON cannot carry, non-ASCII, line breaks.
PUNCTUATION = ["{", "}", "[", "]", ",", ":", '"', "'", "\\", "NaN", "null", "é東🚀", "\n"]

DATA = Path(__file__).resolve().parents[2] / "data" / "output"


def cases(tool_format: str) -> list[Any]:
    """The format's cases as pytest params, each named by its id."""
    loaded = json.loads((DATA / f"{tool_format}.json").read_text(encoding="utf-8"))["cases"]
    return [pytest.param(case, id=case["id"]) for case in loaded]


def check(extract: Callable[[str], Extraction], case: dict[str, Any]) -> None:
    """The reader's Extraction of the case's text is exactly what the case expects."""
    result = extract(case["text"])

    assert result.content == case["content"]
    assert result.calls == [RawCall(call["name"], call["arguments"]) for call in case["calls"]]
    assert len(result.problems) == len(case["problems"]), result.problems
    for problem, fragment in zip(result.problems, case["problems"], strict=True):
        assert fragment in problem
    for call in result.calls:
        # what the checks will dump as OpenAI's `arguments`: plain JSON, no NaN
        assert isinstance(call.arguments, dict)
        json.dumps(call.arguments, allow_nan=False)
