"""JSON answers (`response_format` json_object / json_schema): found, repaired, validated.

Models wrap the object they were asked for in ``` fences or prose ("Here is the JSON: …"), or
cut it short. `read_json` takes the first top-level object out of that, repairs it when the
repair is unambiguous and checks it against the request's schema (JSON Schema 2020-12, with
`$defs`/`$ref` as Pydantic writes them). `schema_problems` does the checking for the tool
arguments too.

A schema the client sent that is not a valid schema is the client's error: `BadSchema`
(a ValueError), which the front door answers with a 400. `check_schema` lets it find out
before the model is asked.

`jsonschema` is imported on first use, so importing this module costs the plain path nothing.
Compiled validators are kept per schema text (bounded): checking a schema against the
metaschema costs milliseconds, and clients send the same schema on every call.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from app.output.json_text import STRICT, dumps_compact, loads_lenient

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

_ANSWER_FORM = "answer with one JSON object and nothing else"
_MAX_PROBLEMS = 5  # errors listed per value: enough to act on, short enough to read
_MAX_MESSAGE = 240
_CACHED_SCHEMA_CHARS = 65_536  # larger schemas are compiled each time, not kept
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_STRUCTURE = re.compile(r'\\.|[{}"]', re.DOTALL)
_REPAIRS_TRIED = 3  # objects in one answer tried for a repair, first first


class BadSchema(ValueError):
    """A JSON schema the client sent that is not itself a valid JSON schema."""


def check_schema(schema: dict[str, Any]) -> None:
    """Raise BadSchema when `schema` is not a valid JSON Schema (2020-12)."""
    _validator(schema)


def read_json(text: str, schema: dict[str, Any] | None) -> tuple[str, list[str]]:
    """(json_text, problems) for an answer that must be one JSON object, valid for `schema`.

    json_text is the object as the model wrote it when it parsed as written, else the repaired
    value re-dumped compactly; the stripped text when no object was found. Problems are
    sentences naming the JSON path ("$.age: 'x' is not of type 'integer'"); none means the
    answer meets the request.
    """
    found = _first_object(_unfenced(text))
    if isinstance(found, str):
        return text.strip(), [found]
    value, json_text = found
    return json_text, schema_problems(value, schema) if schema is not None else []


def schema_problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """One sentence per way `value` fails `schema` (the first few), each naming its path."""
    validator = _validator(schema)
    from referencing.exceptions import Unresolvable

    try:
        errors = sorted(validator.iter_errors(value), key=_path_order)
    except Unresolvable as exc:
        raise BadSchema(f"the schema has a $ref that does not resolve: {exc}") from exc
    except RecursionError:
        return ["$: the value is nested too deeply to be checked"]
    problems = [_problem(error) for error in errors[:_MAX_PROBLEMS]]
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"(and {len(errors) - _MAX_PROBLEMS} more errors like these)")
    return problems


def _path_order(error: ValidationError) -> list[tuple[int, int | str]]:
    """Outer paths first, then by key and index: the same order on every run."""
    return [(0, part) if isinstance(part, int) else (1, part) for part in error.absolute_path]


def _problem(error: ValidationError) -> str:
    message = error.message
    if error.validator in ("anyOf", "oneOf"):
        message += f"; expected {json.dumps(error.schema, ensure_ascii=False)}"
    return f"{error.json_path}: {_shortened(message)}"


def _shortened(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _unfenced(text: str) -> str:
    """The inside of the first ``` fence that holds an object (or the text if none does)."""
    for fence in _FENCE.finditer(text):
        if "{" in fence.group(1):
            return fence.group(1)
    return text


def _first_object(text: str) -> tuple[dict[str, Any], str] | str:
    """The first top-level object that parses as written, else the first that repairs; else
    the problem."""
    stripped = text.strip()
    try:
        value = STRICT.decode(stripped)
    except (ValueError, RecursionError):
        pass
    else:
        if isinstance(value, dict):
            return value, stripped
    spans = _top_level_spans(text)
    for start, end in spans:
        span = text[start:end]  # not raw_decode(text, start): its errors count lines up to start
        try:
            value, length = STRICT.raw_decode(span)
        except (ValueError, RecursionError):
            continue
        return value, span[:length]  # a decoded "{…" is always a dict
    reasons: list[str] = []
    for start, end in spans[:_REPAIRS_TRIED]:
        try:
            value = loads_lenient(text[start:end])[0]
        except (ValueError, RecursionError) as exc:
            reasons.append(str(exc))
            continue
        return value, dumps_compact(value)
    if reasons:
        return f"the JSON object in the answer cannot be read ({reasons[0]}); {_ANSWER_FORM}"
    return f"the answer holds no JSON object; {_ANSWER_FORM}"


def _top_level_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each `{…}` not inside another, braces in strings skipped; an object
    left open runs to the end of the text."""
    spans: list[tuple[int, int]] = []
    depth = 0
    in_string = False
    start = 0
    for mark in _STRUCTURE.finditer(text):
        token = mark.group()
        if token == '"':
            in_string = depth > 0 and not in_string
        elif in_string or len(token) == 2:
            continue  # a brace inside a string, or an escaped character
        elif token == "{":
            start = start if depth else mark.start()
            depth += 1
        elif depth:
            depth -= 1
            if not depth:
                spans.append((start, mark.end()))
    if depth:
        spans.append((start, len(text)))
    return spans


def _validator(schema: dict[str, Any]) -> Validator:
    key = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(key) > _CACHED_SCHEMA_CHARS:
        return _compiled(key)
    return _compiled_cached(key)


@functools.lru_cache(maxsize=256)
def _compiled_cached(key: str) -> Validator:
    return _compiled(key)


def _compiled(key: str) -> Validator:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(key)  # the validator's own copy: nothing the caller holds
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise BadSchema(f"{exc.json_path}: {_shortened(exc.message)}") from exc
    return Draft202012Validator(schema)
