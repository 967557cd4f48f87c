"""Llama 3.x JSON tool calls: `{"name": "f", "parameters": {…}}`, several joined by ";".

Accepted, as vLLM's `llama3_json` parser (Llama3JsonToolParser) accepts them:
- an optional `<|python_tag|>` before the calls; all that follows it is read as calls;
- one or more JSON objects `{"name": "f", "parameters": {…}}`, with "arguments" in place of
  "parameters" also accepted, separated by ";" (whitespace alone separates them too);
- arguments written as an object, as an object's JSON text, or null for none.

Where this differs from vLLM, and why:
- Text before the calls. vLLM takes the first brace-balanced span anywhere in the output, so
  JSON quoted in prose is misread as a call. Here, without `<|python_tag|>`, a call may follow
  text (a model often writes a sentence first), but only an object whose keys are exactly
  "name" and "parameters" or "arguments" (plus "type": "function", which Llama 3.2 adds)
  counts; other JSON, and calls nested inside other JSON, stay content.
- Nearly-JSON calls are repaired (`json_text.loads_lenient`) when that is unambiguous; one that
  still cannot be read is a problem (vLLM returns the whole output as text).
- Text after the last call is dropped, as vLLM drops all text around calls.
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
    json_or_break,
    json_repr,
    shown,
)
from app.output.types import Extraction, RawCall

PYTHON_TAG = "<|python_tag|>"
_END_TOKENS = ("<|eom_id|>", "<|eot_id|>")
_ARGUMENT_KEYS = ("parameters", "arguments")
_CALL_KEYS = ({"name", "parameters"}, {"name", "arguments"})
_NAME = r"""["']name["']\s*:"""
_TYPE = r"""(?:["']type["']\s*:\s*["']function["']\s*,\s*)?"""
_NAME_VALUE = r"""["'][^"'\\]*["']"""
_ARGUMENTS_KEY = r"""["'](?:parameters|arguments)["']\s*:"""
# The opening of a call object, or a call cut off within its name: how a broken call is told
# from broken JSON in prose.
_CALL_OPENING = re.compile(
    r"\{\s*"
    + _TYPE
    + _NAME
    + r"\s*(?:"
    + (_NAME_VALUE + r"\s*(?:,\s*" + _ARGUMENTS_KEY + r"""|,?\s*["']?\w*\s*\Z)""")
    + r"""|["']?[^"'\\{}]*\Z)"""
)
# Where a broken call ends: at the ";" before the next call, else at the end of the output.
_NEXT_CALL = re.compile(r";\s*(?=\{\s*" + _TYPE + _NAME + ")")
_SPACE = re.compile(r"\s*")
_OBJECT_START = re.compile(r"""\{\s*["']""")


def extract(text: str) -> Extraction:
    """Split a Llama 3 output into the text before the calls and the calls (see module doc)."""
    for token in _END_TOKENS:
        text = text.replace(token, "")
    tag = text.find(PYTHON_TAG)
    found = _first_call(text if tag < 0 else text[:tag])
    if found is not None:
        start, content = found, text[:found]
    elif tag >= 0:
        start, content = _after_space(text, tag + len(PYTHON_TAG)), text[:tag]
        if not text.startswith("{", start):
            problem = f"call 1 after {PYTHON_TAG} is not a JSON object: {shown(text[start:])}"
            return Extraction(content=content_before(content), problems=[problem])
    else:
        return Extraction(content=text.strip())
    calls, problems = _read_calls(text, start)
    return Extraction(content=content_before(content), calls=calls, problems=problems)


def _first_call(text: str) -> int | None:
    """Where the first call object starts in untagged text, or None.

    Only an object whose first key is quoted, before the last "name" key of the text, can start
    a call. Where one does not, the scan goes on after it, or after the part of it that was
    valid JSON: a call inside other JSON is not a call.
    """
    last_name = max(text.rfind('"name"'), text.rfind("'name'"))
    position = 0
    while (opening := _OBJECT_START.search(text, position, last_name + 1)) is not None:
        position = opening.start()
        decoded, value, end = json_or_break(text, position)
        if decoded and _is_call(value):
            return position
        if not decoded and _CALL_OPENING.match(text, position):
            return position  # a call that is not quite JSON
        position = end
    return None


def _read_calls(text: str, start: int) -> tuple[list[RawCall], list[str]]:
    """Every call from `start` (an opening brace) on, and a sentence per one that is unreadable."""
    calls: list[RawCall] = []
    problems: list[str] = []
    position: int | None = start
    number = 0
    while position is not None:
        number += 1
        decoded = json_at(text, position)
        if decoded is not None:
            value, end = decoded
        else:
            following = _NEXT_CALL.search(text, position)
            end = following.start() if following else len(text)
        try:
            if decoded is None:
                value = json_lenient(text[position:end])
            calls.append(_call_from(value))
        except NotACall as exc:
            problems.append(f"call {number} {exc}")
        position = _next_start(text, end)
    return calls, problems


def _next_start(text: str, end: int) -> int | None:
    """Where the call after one ending at `end` starts, or None when no call follows."""
    position = _after_space(text, end)
    for separator in (";", PYTHON_TAG):
        if text.startswith(separator, position):
            position = _after_space(text, position + len(separator))
            return position if text.startswith("{", position) else None
    if not text.startswith("{", position):
        return None
    decoded = json_at(text, position)  # without ";", only a well-formed call continues
    return position if decoded is not None and _is_call(decoded[0]) else None


def _is_call(value: Any) -> bool:
    """An object that can only be a call: "name" and "parameters" or "arguments" keys."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return False
    if value.get("type", "function") != "function":
        return False
    return set(value) - {"type"} in _CALL_KEYS


def _call_from(value: Any) -> RawCall:
    """The call in a decoded object; NotACall saying what is wrong when there is none."""
    if not isinstance(value, dict):
        raise NotACall(f"is not a JSON object: {shown(json_repr(value))}")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise NotACall(f'has no "name": {shown(json_repr(value))}')
    keys = [key for key in _ARGUMENT_KEYS if key in value]
    if len(keys) != 1:
        which = 'no "parameters" or' if not keys else 'both "parameters" and'
        raise NotACall(f'({name}) has {which} "arguments"')
    try:
        return RawCall(name=name.strip(), arguments=arguments_dict(value[keys[0]], keys[0]))
    except NotACall as exc:
        raise NotACall(f"({name}) {exc}") from None


def _after_space(text: str, position: int) -> int:
    match = _SPACE.match(text, position)
    return match.end() if match else position
