"""app/output/json_text.py: strict JSON, repaired only when unambiguous and cheap."""

from __future__ import annotations

from typing import Any

import pytest

from app.output.json_text import CutShort, loads_lenient


def loads_repairing(text: str) -> Any:
    return loads_lenient(text)[0]


@pytest.mark.parametrize(
    ("text", "repaired", "value"),
    [
        ('{"a": 1}', False, {"a": 1}),
        ('{"a": 1', True, {"a": 1}),
        ('{"a": 1,}', True, {"a": 1}),
        ("{a: 1}", True, {"a": 1}),
        ("[1, 2", True, [1, 2]),
        ('"x"', False, "x"),
    ],
)
def test_json_and_nearly_json(text: str, repaired: bool, value: Any) -> None:
    assert loads_lenient(text) == (value, repaired)


@pytest.mark.parametrize("text", ["hello", "", "NaN", '{"a": NaN}', "[Infinity]", '{"a": 1e999}'])
def test_what_is_not_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads_lenient(text)


@pytest.mark.parametrize("text", ['{"city": "Par', '{"a": ', '{"a": 1,', '["x", '])
def test_text_cut_short_in_a_value_is_not_repaired(text: str) -> None:
    with pytest.raises(CutShort):
        loads_lenient(text)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("{" * 5000, "not JSON, and nested too deeply to repair (over 64)"),
        ('{"a": [' + "[" * 64 + "1", "not JSON, and nested too deeply to repair (over 64)"),
        ('{"a": "' + "x" * 100_000, "not JSON, and too long to repair (100007 characters)"),
    ],
)
def test_no_repair_for_what_json_repair_would_take_seconds_over(text: str, refusal: str) -> None:
    with pytest.raises(ValueError) as caught:
        loads_repairing(text)
    assert str(caught.value) == refusal


def test_a_repair_within_the_limits() -> None:
    assert loads_repairing('{"a": [' + "[" * 60 + "1") == {"a": _nested(61)}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_valid_json_is_read_at_any_depth_within_pythons_limit() -> None:
    assert loads_repairing("[" * 200 + "]" * 200) == _nested_empty(200)


def _nested_empty(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value
