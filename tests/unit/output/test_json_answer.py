"""app/output/json_answer.py: JSON answers found, repaired and validated (as data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.output.json_answer import (
    BadSchema,
    check_schema,
    read_json,
    schema_problems,
)

DATA = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "output" / "json_answer.json").read_text(
        "utf-8"
    )
)
SCHEMAS: dict[str, Any] = DATA["schemas"]
CASES: list[dict[str, Any]] = DATA["cases"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_read_json(case: dict[str, Any]) -> None:
    schema = SCHEMAS[case["schema"]] if case["schema"] else None

    json_text, problems = read_json(case["text"], schema)

    assert (json_text, problems) == (case["json_text"], case["problems"])
    if not problems:
        assert isinstance(json.loads(json_text), dict)


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "objekt"}, "$.type"),
        ({"properties": {"a": {"type": 5}}}, "$.properties.a.type"),
        ({"required": "name"}, "$.required"),
    ],
)
def test_an_invalid_schema_is_the_clients_error(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(BadSchema) as caught:
        check_schema(schema)
    assert str(caught.value).startswith(f"{where}: ")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(BadSchema):
        read_json('{"a": 1}', schema)


def test_a_ref_that_does_not_resolve_is_the_clients_error() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(BadSchema, match=r"\$ref that does not resolve"):
        read_json('{"a": 1}', schema)


def test_problems_are_capped_and_shortened() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    value = {f"k{i}": "x" * 1000 for i in range(8)}

    problems = schema_problems(value, schema)

    assert len(problems) == 6
    assert problems[-1] == "(and 3 more errors like these)"
    assert all(len(problem) < 300 for problem in problems)
    assert problems[0].startswith("$.k0: 'xxx")


def test_the_validator_has_its_own_copy_of_the_schema() -> None:
    schema: dict[str, Any] = {"type": "object", "required": ["a"]}
    assert schema_problems({}, schema) == ["$: 'a' is a required property"]

    schema["required"] = ["b"]  # the caller's dict changed: the new schema is checked anew
    assert schema_problems({"a": 1}, schema) == ["$: 'b' is a required property"]
