"""An example value for a JSON schema, as the mock upstream writes tool arguments and JSON answers.

`example_value(schema, word=...)` is pure and deterministic. It covers what Pydantic and typical
tool schemas use: `$ref` into `$defs`/`definitions` (with sibling keywords), `allOf` (merged),
`anyOf`/`oneOf` (the first alternative that is not null), `const`, `enum` (the first value),
type lists, objects (their `required` properties, more when `minProperties` asks), arrays (one
item, or `minItems`; one per `prefixItems`), strings (`word` for properties that name a place, a
name or a query, else "example"; `format` hints such as date-time, email, uri, uuid;
`minLength`/`maxLength`), integers and numbers (1 and 1.5 moved into `minimum`/`maximum`/
`exclusive*`, then onto `multipleOf`), booleans (true) and null. Not covered: `pattern`,
`not`, `if`/`then`, `dependentRequired`: a schema relying on them may get a value it refuses.
Recursive schemas stop at a depth: past it, optional branches (null, empty arrays) are taken.
"""

from __future__ import annotations

import math
from typing import Any

_SOFT_DEPTH = 6  # past it: null alternatives and empty arrays, so that recursion ends
_HARD_DEPTH = 24  # past it: null whatever the schema says (a schema no finite value satisfies)
_WORDY_KEYS = (
    "city", "location", "place", "country", "town", "region", "address", "destination",
    "origin", "name", "query", "search", "topic", "term", "keyword", "subject", "person",
    "company",
)  # fmt: skip
_FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_value(schema: Any, *, word: str | None = None) -> Any:
    """A value valid for `schema` (within the limits in the module docstring).

    `word` is used for string properties whose name looks like a place, a name or a query.
    """
    return _Example(schema if isinstance(schema, dict) else {}, word).value(schema, "", 0, 0)


class _Example:
    def __init__(self, root: dict[str, Any], word: str | None) -> None:
        self.root = root
        self.word = word

    def value(self, schema: Any, key: str, depth: int, variant: int) -> Any:  # noqa: C901
        if not isinstance(schema, dict) or depth > _HARD_DEPTH:
            return None if schema is False or depth > _HARD_DEPTH else "example"
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][variant % len(schema["enum"])]
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                return self.value(self.choose(schema[keyword], depth), key, depth + 1, variant)
        kind = _type(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, key, depth)
        if kind in ("integer", "number"):
            return _number(schema, variant, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.string(schema, key, variant)

    def resolve(self, schema: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        """`schema` with its `$ref` and `allOf` merged in (siblings win over the referenced);
        a cycle of references ends in an empty schema."""
        ref = schema.get("$ref")
        parts = schema.get("allOf")
        if not isinstance(ref, str) and not isinstance(parts, list):
            return schema
        if depth > _HARD_DEPTH:
            return {}
        merged: dict[str, Any] = {}
        found = [self.lookup(ref)] if isinstance(ref, str) else []
        for part in found + (parts if isinstance(parts, list) else []):
            if isinstance(part, dict):
                _merge(merged, self.resolve(part, depth + 1))
        rest = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        _merge(merged, rest, override=True)
        return merged

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def choose(self, alternatives: list[Any], depth: int) -> Any:
        def is_null(alternative: Any) -> bool:
            return isinstance(alternative, dict) and self.resolve(alternative).get("type") == "null"

        if depth >= _SOFT_DEPTH and any(map(is_null, alternatives)):
            return {"type": "null"}
        return next((a for a in alternatives if not is_null(a)), alternatives[0])

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        wanted = _count(schema, "minProperties", 0)
        names = list(dict.fromkeys(required))
        for name in properties:
            if len(names) >= wanted:
                break
            if name not in names:
                names.append(name)
        return {name: self.value(properties.get(name, {}), name, depth + 1, 0) for name in names}

    def array(self, schema: dict[str, Any], key: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [self.value(item, key, depth + 1, i) for i, item in enumerate(prefix)]
        low = _count(schema, "minItems", 0)
        count = low if depth >= _SOFT_DEPTH else max(low, 1)
        count = min(count, _count(schema, "maxItems", count))
        items = schema.get("items", {})
        return [self.value(items, key, depth + 1, i) for i in range(count)]

    def string(self, schema: dict[str, Any], key: str, variant: int) -> str:
        text = _FORMATS.get(str(schema.get("format")))
        if text is None:
            wordy = self.word and any(part in key.lower() for part in _WORDY_KEYS)
            text = (self.word if wordy else None) or "example"
            if variant:
                text += str(variant + 1)  # distinct items, for uniqueItems
        low = _count(schema, "minLength", 0)
        if len(text) < low:
            text += "x" * (low - len(text))
        return text[: _count(schema, "maxLength", len(text))]


def _merge(into: dict[str, Any], part: dict[str, Any], *, override: bool = False) -> None:
    for key, value in part.items():
        before = into.get(key)
        if key == "properties" and isinstance(value, dict) and isinstance(before, dict):
            into["properties"] = {**before, **value}
        elif key == "required" and isinstance(value, list) and isinstance(before, list):
            into["required"] = list(dict.fromkeys([*before, *value]))
        elif override or key not in into:
            into[key] = value


def _count(schema: dict[str, Any], keyword: str, default: int) -> int:
    """A count keyword (minItems, maxLength, ...); the default when it is not a count."""
    value = schema.get(keyword)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000:
        return value
    return default


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _number(schema: dict[str, Any], variant: int, *, integer: bool) -> int | float:
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum")
    value: float = (1 if integer else 1.5) + variant
    if integer:
        if low is not None:
            low = math.floor(low) + 1 if low_open or low != math.floor(low) else low
        if high is not None:
            high = math.ceil(high) - 1 if high_open or high != math.ceil(high) else high
        low_open = high_open = False
    if low is not None and (value < low or (low_open and value <= low)):
        value = low + (1 if low_open else 0)
    if high is not None and (value > high or (high_open and value >= high)):
        value = high - (1 if high_open else 0)
        if low is not None and (value < low or (low_open and value <= low)):
            value = (low + high) / 2  # a narrow open interval
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        value = _multiple(value, step, high)
    return int(value) if integer else float(value)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str) -> tuple[float | None, bool]:
    """The bound and whether it is open; draft 4's boolean `exclusive*` is understood too."""
    open_bound = schema.get(exclusive)
    closed = schema.get(inclusive)
    if isinstance(open_bound, bool):
        return (closed, open_bound) if isinstance(closed, int | float) else (None, False)
    if isinstance(open_bound, int | float):
        if isinstance(closed, int | float) and not isinstance(closed, bool) and closed > open_bound:
            return closed, False
        return open_bound, True
    if isinstance(closed, int | float) and not isinstance(closed, bool):
        return closed, False
    return None, False


def _multiple(value: float, step: float, high: float | None) -> float:
    """The first multiple of `step` from `value` up (down when that passes `high`) that
    jsonschema's float division accepts as a multiple."""
    count = math.ceil(value / step)
    if high is not None and count * step > high:
        count = math.floor(high / step)
    for candidate in (count, count + 1, count - 1, count + 2):
        multiple = candidate * step
        if (multiple / step).is_integer():
            return multiple
    return count * step
