"""Pythonic tool calls (Llama 3.2, Llama 4, ToolACE): a Python list `[f(a=1), g(b="x")]`.

Accepted, as vLLM's `pythonic` and `llama4_pythonic` parsers accept them:
- a Python list of calls with keyword arguments, read with `ast` (never evaluated): `[f()]`,
  `[get_weather(city="Paris", days=3), book(seats=[1, 2], meta={"vip": True})]`;
- argument values that are literals: strings, numbers (also negative), True/False/None and
  JSON's true/false/null, lists, tuples (as lists) and dicts with string keys, nested;
- the list wrapped in Llama 4's `<|python_start|>…<|python_end|>`.

Where this differs from vLLM, and why:
- vLLM reads calls only when the whole output is the list. Here the list may follow text (a
  model often writes a sentence first): it is recognised where a line starts, or after a
  sentence's ":", ".", "!" or "?", when it opens like a call, `[name(key=` or `[name()`, so a
  list in prose (`[1, 2]`, `x = [f(a=1)]`, a list comprehension) stays content. Further call
  lists after the first are read too; other text after the calls is dropped.
- A recognised list that cannot be read (not valid Python, never closed, an argument that is
  not a literal such as a name, a call or an f-string, a positional argument) is a problem
  naming the call, never an exception and never text.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from app.output.call_text import NotACall, arguments_dict, content_before, shown
from app.output.types import Extraction, RawCall

PYTHON_START = "<|python_start|>"
PYTHON_END = "<|python_end|>"
# `[name(key=` or `[name()`: how a call list opens (a list in prose rarely does).
_LIST_OPENING = re.compile(r"\[\s*[^\W\d]\w*\s*\(\s*(?:[^\W\d]\w*\s*=|\))")
# What may stand before the list on its line: nothing (a line start), or a sentence's end.
_SENTENCE_ENDS = "\n:.!?"
_JSON_NAMES = {"true": True, "false": False, "null": None}
_OPENERS = {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}


def extract(text: str) -> Extraction:
    """Split an output into the text before the calls and the calls (see module doc)."""
    start = text.find(PYTHON_START)
    if start >= 0:
        block = text[start + len(PYTHON_START) :].split(PYTHON_END, 1)[0].strip()
        found, wrong = _read_list(block, number=1, wrapped=True)
        return Extraction(content=content_before(text[:start]), calls=found, problems=wrong)
    calls: list[RawCall] = []
    problems: list[str] = []
    content: str | None = None
    position = 0
    while (start := _next_list(text, position)) >= 0:
        end = _list_end(text, start)
        found, wrong = _read_list(text[start:end], len(calls) + len(problems) + 1, wrapped=False)
        if (found or wrong) and content is None:
            content = text[:start]
        calls += found
        problems += wrong
        position = end
    if content is None:
        return Extraction(content=text.strip())
    return Extraction(content=content_before(content), calls=calls, problems=problems)


def _next_list(text: str, position: int) -> int:
    """Where the next call list starts at or after `position`, or -1."""
    while (opening := _LIST_OPENING.search(text, position)) is not None:
        start = before = opening.start()
        while before > 0 and text[before - 1] in " \t":
            before -= 1
        if before == 0 or text[before - 1] in _SENTENCE_ENDS:
            return start
        position = start + 1
    return -1


def _list_end(text: str, start: int) -> int:
    """The index after the "]" closing the list opened at `start`, or the end of the text."""
    depth = 0
    quote = ""
    index = start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        else:
            depth += _OPENERS.get(char, 0)
            if depth == 0:
                return index + 1
        index += 1
    return len(text)


def _read_list(block: str, number: int, *, wrapped: bool) -> tuple[list[RawCall], list[str]]:
    """The calls in one list; a list that is not one of calls gives nothing (it is prose)."""
    try:
        tree = ast.parse(block, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        return [], [f"call {number} is not a valid Python list of calls ({reason}): {shown(block)}"]
    if not isinstance(tree, ast.List) or not any(isinstance(e, ast.Call) for e in tree.elts):
        if wrapped:
            return [], [f"call {number} is not a Python list of calls: {shown(block)}"]
        return [], []
    calls: list[RawCall] = []
    problems: list[str] = []
    for offset, element in enumerate(tree.elts):
        try:
            calls.append(_call_from(element))
        except NotACall as exc:
            problems.append(f"call {number + offset} {exc}")
    return calls, problems


def _call_from(node: ast.expr) -> RawCall:
    """One element of the list as a call; NotACall saying what is wrong when it is not one."""
    if not isinstance(node, ast.Call):
        raise NotACall(f"is not a call: {shown(ast.unparse(node))}")
    if not isinstance(node.func, ast.Name):
        written = shown(ast.unparse(node.func))
        raise NotACall(f"has a name that is not a plain identifier: {written}")
    name = node.func.id
    if node.args:
        raise NotACall(f"({name}) has a positional argument; write each as key=value")
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise NotACall(f"({name}) unpacks arguments with **; write each as key=value")
        try:
            arguments[keyword.arg] = _literal(keyword.value)
        except NotACall as exc:
            raise NotACall(f"({name}) has argument {keyword.arg!r} {exc}") from None
    try:
        return RawCall(name=name, arguments=arguments_dict(arguments))
    except NotACall as exc:
        raise NotACall(f"({name}) {exc}") from None


def _literal(node: ast.expr) -> Any:
    """The value of a literal argument; NotACall for anything that would need evaluating."""
    if isinstance(node, ast.Constant) and _is_json_scalar(node.value):
        return node.value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        return _literal_dict(node)
    raise NotACall(f"that is not a literal value: {shown(ast.unparse(node))}")


def _literal_dict(node: ast.Dict) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            shown_key = "**" if key is None else ast.unparse(key)
            raise NotACall(f"with a dict key that is not a string: {shown(shown_key)}")
        result[key.value] = _literal(value)
    return result


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)  # bool is an int
