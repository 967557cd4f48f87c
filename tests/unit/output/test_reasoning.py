"""app/output/reasoning.py fed model outputs (tests/data/output/reasoning.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.output.reasoning import split_reasoning

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "output" / "reasoning.json").read_text("utf-8")
)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_split_reasoning(case: dict[str, Any]) -> None:
    assert split_reasoning(case["text"]) == (case["reasoning"], case["rest"])
