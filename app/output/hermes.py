"""Hermes tool calls: `<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks.

The syntax of Hermes 2 Pro, Qwen 2.5/3 and most ChatML models, read as vLLM's `hermes` parser
reads it, a little more leniently:
- a block ends at `</tool_call>`, at the next `<tool_call>` or at the end of the text (the last
  block is often left open: the output was cut, or the stop sequence was `</tool_call>`);
- a block may hold several objects or a JSON list of them (each one call), and a ```json fence;
- `"parameters"` is read like `"arguments"`, a missing one as `{}`, and arguments written as a
  JSON string holding an object are decoded;
- JSON that is nearly JSON is repaired (`json_text.loads_lenient`), unless it was cut in
  the middle of a value; NaN and Infinity are refused.
Content is the text before the first block; text between and after blocks is dropped (vLLM
does the same), so no markup reaches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from app.output.json_text import STRICT, loads_lenient
from app.output.types import Extraction, RawCall

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_MAX_PROBLEMS = 5
_SHAPE = '{"name": "<tool name>", "arguments": {<argument name>: <value>, ...}}'


def extract(text: str) -> Extraction:
    """The calls of every `<tool_call>` block in `text` and the text before the first one."""
    first = text.find(OPEN)
    if first < 0:
        return Extraction(content=text.strip())
    calls: list[RawCall] = []
    problems: list[str] = []
    bodies = list(_blocks(text, first))
    for number, body in enumerate(bodies, start=1):
        if number < len(bodies) and not body.strip():
            continue  # `<tool_call>` written twice (the proxy had begun the answer with one)
        found, problem = _read_block(body, number)
        calls.extend(found)
        if problem:
            problems.append(problem)
            if len(problems) == _MAX_PROBLEMS:  # the output fails anyway: spare the repairs
                problems.append("(the blocks after this one were not read)")
                break
    return Extraction(content=text[:first].strip(), calls=calls, problems=problems)


def _blocks(text: str, start: int) -> Iterator[str]:
    """The bodies of the blocks from the one opening at `start` on."""
    close = text.find(CLOSE, start)
    while start >= 0:
        body_start = start + len(OPEN)
        if 0 <= close < body_start:  # searched again only when passed: linear in the text
            close = text.find(CLOSE, body_start)
        reopen = text.find(OPEN, body_start)
        if close < 0 or 0 <= reopen < close:
            end = len(text) if reopen < 0 else reopen
            yield text[body_start:end]
            start = reopen
        else:
            yield text[body_start:close]
            start = text.find(OPEN, close + len(CLOSE))


def _read_block(body: str, number: int) -> tuple[list[RawCall], str | None]:
    """The calls in one block, or a sentence saying why it holds none."""
    body = _unfenced(body.strip())
    if not body:
        return [], f"tool call {number} is empty; write it as <tool_call>{_SHAPE}</tool_call>"
    try:
        value = _decode(body)
    except (ValueError, RecursionError) as exc:
        return [], f"tool call {number} is not valid JSON ({exc}); write it as {_SHAPE}"
    items = value if isinstance(value, list) else [value]
    calls = [call for call in map(_to_call, items) if call is not None]
    if len(calls) < len(items) or not calls:
        return calls, f"tool call {number} is not an object of the form {_SHAPE}"
    return calls, None


def _decode(body: str) -> Any:
    """One JSON value, several objects in a row (a list of them), or a repaired value."""
    with contextlib.suppress(ValueError):
        return STRICT.decode(body)
    in_a_row = _objects_in_a_row(body)
    if in_a_row:
        return in_a_row
    return loads_lenient(body)[0]


def _objects_in_a_row(body: str) -> list[Any] | None:
    values: list[Any] = []
    position = 0
    while position < len(body):
        try:
            value, position = STRICT.raw_decode(body, position)
        except (ValueError, RecursionError):
            return None
        values.append(value)
        while position < len(body) and body[position] in " \t\r\n,;":
            position += 1
    return values


def _to_call(item: Any) -> RawCall | None:
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str) and arguments.lstrip().startswith("{"):
        # when it does not decode, the string stays: the checks say it is not an object
        with contextlib.suppress(ValueError, RecursionError):
            arguments = loads_lenient(arguments)[0]
    return RawCall(name=name, arguments=arguments)


def _unfenced(body: str) -> str:
    """The inside of a ``` fence around the whole body (some models fence their JSON)."""
    if not body.startswith("```"):
        return body
    newline = body.find("\n")
    inside = body[newline + 1 :] if newline >= 0 else body[3:]
    return inside.rstrip().removesuffix("```").strip()
