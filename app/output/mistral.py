"""Mistral tool calls: `[TOOL_CALLS]` and a JSON list, or `[TOOL_CALLS]name{…}` per call.

Accepted, as vLLM's `mistral` parser (MistralToolParser) accepts them:
- before tokenizer v11 (Mistral 7B v0.3 and its kin): `[TOOL_CALLS]` followed by a JSON list
  `[{"name": "f", "arguments": {…}}, …]` (a single object is taken as a list of one; an "id"
  key is ignored, "parameters" is taken for "arguments");
- v11 and later: `[TOOL_CALLS]name{…}` for each call, repeated (`[TOOL_CALLS]a{…}[TOOL_CALLS]b{…}`)
  or several after one marker separated by spaces or commas; also `name[ARGS]{…}` and
  `name[CALL_ID]id[ARGS]{…}` of the newer tokenizers;
- arguments written as an object, as an object's JSON text, or null for none.

`content` is the text before the first `[TOOL_CALLS]`; text after the last call is dropped (vLLM
drops it too). Where this differs from vLLM: both forms are read whatever the tokenizer version,
nearly-JSON calls are repaired (`json_text.loads_lenient`) when that is unambiguous, and a call
that still cannot be read is a problem, not text.
"""

from __future__ import annotations

import re
from typing import Any

from app.output.call_text import (
    NotACall,
    arguments_dict,
    content_before,
    json_at,
    json_lenient,
    json_repr,
    shown,
)
from app.output.types import Extraction, RawCall

TOOL_CALLS = "[TOOL_CALLS]"
# `name{`, `name[ARGS]{`, `name[CALL_ID]a1b2c3d4e[ARGS]{` (the "{" is not consumed)
_NAMED_CALL = re.compile(
    r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[CALL_ID\]\s*[A-Za-z0-9_\-]*\s*)?(?:\[ARGS\])?\s*(?=\{)"
)
_BETWEEN_CALLS = re.compile(r"[\s,]*")


def extract(text: str) -> Extraction:
    """Split a Mistral output into the text before the calls and the calls (see module doc)."""
    first = text.find(TOOL_CALLS)
    if first < 0:
        return Extraction(content=text.strip())
    calls: list[RawCall] = []
    problems: list[str] = []
    for segment in text[first + len(TOOL_CALLS) :].split(TOOL_CALLS):
        number = len(calls) + len(problems) + 1
        for result in _read_segment(segment.strip()):
            if isinstance(result, RawCall):
                calls.append(result)
            else:
                problems.append(f"call {number} {result}")
            number += 1
    return Extraction(content=content_before(text[:first]), calls=calls, problems=problems)


def _read_segment(segment: str) -> list[RawCall | str]:
    """The calls after one `[TOOL_CALLS]`, or for each unreadable one what is wrong with it."""
    if segment.startswith(("[", "{")):
        return _read_json_form(segment)
    if _NAMED_CALL.match(segment):
        return _read_named_form(segment)
    if not segment:
        return [f"is empty: nothing follows {TOOL_CALLS}"]
    return [f"is neither a JSON list of calls nor name{{arguments}}: {shown(segment)}"]


def _read_json_form(segment: str) -> list[RawCall | str]:
    """`[{"name": …, "arguments": …}, …]` (or one such object); text after it is ignored."""
    decoded = json_at(segment, 0)
    try:
        value = decoded[0] if decoded is not None else json_lenient(segment)
    except NotACall as exc:
        return [str(exc)]
    results: list[RawCall | str] = []
    for item in value if isinstance(value, list) else [value]:
        try:
            results.append(_call_from_object(item))
        except NotACall as exc:
            results.append(str(exc))
    return results or ["is an empty list"]


def _read_named_form(segment: str) -> list[RawCall | str]:
    """`name{…}` calls one after another; whatever follows the last one is ignored."""
    results: list[RawCall | str] = []
    position = 0
    while (named := _NAMED_CALL.match(segment, position)) is not None:
        name, start = named.group(1), named.end()
        decoded = json_at(segment, start)
        try:
            value = decoded[0] if decoded is not None else json_lenient(segment[start:])
            results.append(RawCall(name=name, arguments=arguments_dict(value)))
        except NotACall as exc:
            results.append(f"({name}) {exc}")
        if decoded is None:
            break  # the broken JSON took the rest of the segment
        between = _BETWEEN_CALLS.match(segment, decoded[1])
        position = between.end() if between else decoded[1]
    return results


def _call_from_object(item: Any) -> RawCall:
    """The call in one item of the JSON list; NotACall saying what is wrong when there is none."""
    if not isinstance(item, dict):
        raise NotACall(f"is not a JSON object: {shown(json_repr(item))}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise NotACall(f'has no "name": {shown(json_repr(item))}')
    key = "arguments" if "arguments" in item else "parameters"
    if key not in item:
        raise NotACall(f'({name}) has no "arguments"')
    try:
        return RawCall(name=name.strip(), arguments=arguments_dict(item[key], key))
    except NotACall as exc:
        raise NotACall(f"({name}) {exc}") from None
