"""Example values for JSON schemas (the mock's tool arguments and JSON answers), checked with
jsonschema: a table of hand-written schemas, then schemas Pydantic generates."""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import pydantic
import pytest

from app.mock_upstream.examples import example_value

CASES = json.loads((Path(__file__).parents[2] / "data/mock_upstream/schemas.json").read_text())
VALIDATORS: dict[int, type[Any]] = {
    4: jsonschema.Draft4Validator,
    7: jsonschema.Draft7Validator,
    2020: jsonschema.Draft202012Validator,
}


def check(schema: dict[str, Any], value: Any, draft: int = 2020) -> None:
    validator = VALIDATORS[draft]
    validator.check_schema(schema)
    errors = list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(value))
    assert not errors, [f"{list(error.absolute_path)}: {error.message}" for error in errors]


@pytest.mark.parametrize("case", CASES["cases"], ids=[case["name"] for case in CASES["cases"]])
def test_examples_validate(case: dict[str, Any]) -> None:
    value = example_value(case["schema"])
    check(case["schema"], value, case.get("draft", 2020))
    if "expected" in case:
        assert value == case["expected"]


def test_wordy_properties_take_the_word() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "search_query": {"type": "string"},
            "full_name": {"type": "string", "maxLength": 3},
            "unit": {"type": "string"},
            "when": {"type": "string", "format": "date"},
        },
        "required": ["city", "search_query", "full_name", "unit", "when"],
    }
    assert example_value(schema, word="Paris") == {
        "city": "Paris",
        "search_query": "Paris",
        "full_name": "Par",
        "unit": "example",
        "when": "2026-01-01",
    }


# Schemas from Pydantic: nested models, enums, Optional, lists, Literal, constraints.


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 5


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: Annotated[str, pydantic.StringConstraints(min_length=4, max_length=10)]


class Person(pydantic.BaseModel):
    name: str
    age: Annotated[int, pydantic.Field(ge=18, le=130)]
    email: str | None = None
    home: Address
    previous: list[Address] = []
    favourite: Color
    priority: Priority
    kind: Literal["person"]
    mood: Literal["happy", "sad"]
    nickname: str | None
    tags: Annotated[list[str], pydantic.Field(min_length=2)]
    scores: dict[str, float]
    born: datetime.date
    seen: datetime.datetime
    key: uuid.UUID
    ratio: Annotated[float, pydantic.Field(gt=0, lt=1)]
    coordinates: tuple[float, float]


class Cat(pydantic.BaseModel):
    pet_type: Literal["cat"]
    lives: Annotated[int, pydantic.Field(gt=0)]


class Dog(pydantic.BaseModel):
    pet_type: Literal["dog"]
    good: bool


class Owner(pydantic.BaseModel):
    pet: Annotated[Cat | Dog, pydantic.Field(discriminator="pet_type")]
    backup: Cat | Dog | None


class Folder(pydantic.BaseModel):
    name: str
    children: list[Folder]
    parent: Folder | None


class CalendarEvent(pydantic.BaseModel):
    """OpenAI's structured-output example."""

    name: str
    date: str
    participants: list[str]


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class MathReasoning(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str


MODELS = [Person, Owner, Folder, CalendarEvent, MathReasoning, Address]


@pytest.mark.parametrize("model", MODELS, ids=[model.__name__ for model in MODELS])
@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_pydantic_schemas(model: type[pydantic.BaseModel], mode: Any) -> None:
    schema = model.model_json_schema(mode=mode)
    value = example_value(schema, word="Paris")
    check(schema, value)
    model.model_validate(value)  # the model itself takes it too


def test_pydantic_person_in_detail() -> None:
    value = example_value(Person.model_json_schema(), word="Paris")
    assert value["name"] == "Paris"  # a name-like property
    assert value["age"] == 18
    assert value["favourite"] == "red"
    assert value["priority"] == 1
    assert (value["kind"], value["mood"]) == ("person", "happy")
    assert value["home"]["postcode"] == "example"
    assert len(value["tags"]) == 2
    assert 0 < value["ratio"] < 1
    assert "email" not in value and "previous" not in value  # not required


def test_recursion_ends() -> None:
    value = example_value(Folder.model_json_schema())
    depth = 0
    while value is not None and value["children"]:
        value = value["children"][0]
        depth += 1
    assert 1 <= depth <= 10


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": "3", "maxItems": None, "items": {"type": "string"}},
        {"type": "string", "minLength": True, "maxLength": -1, "format": 7},
        {"type": "object", "required": "abc", "properties": [], "minProperties": 1.5},
        {"allOf": [{"properties": []}, {"properties": {"a": {}}, "required": ["a"]}]},
        {"type": "integer", "minimum": "1", "multipleOf": 0},
        {"$ref": "#/nowhere/at/all"},
        {"$ref": "https://example.com/schema.json"},
        {"anyOf": []},
        {"enum": []},
    ],
)
def test_malformed_schemas_get_a_value_not_an_exception(schema: dict[str, Any]) -> None:
    example_value(schema)  # the mock must answer, whatever a client sent as a schema


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"},
        {"$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"},
        {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"},
        {
            "$defs": {
                "A": {
                    "type": "object",
                    "properties": {"a": {"$ref": "#/$defs/A"}},
                    "required": ["a"],
                }
            },
            "$ref": "#/$defs/A",
        },
    ],
    ids=["ref to itself", "allOf of itself", "anyOf of itself", "required self"],
)
def test_cyclic_references_end(schema: dict[str, Any]) -> None:
    example_value(schema)  # returns: no RecursionError
