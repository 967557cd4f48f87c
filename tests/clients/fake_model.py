"""A canned chat model for recording what agent frameworks send (pure: request in, answer out).

It answers as a tool-using model would, just enough for each framework to finish its run:
- the last message is a tool result under tool_choice "required" → a call to the last tool
  (pydantic-ai's output tool);
- the last message is a tool result → the answer: a JSON object when a JSON format is asked
  for, else "The tool returned: <result>";
- tools offered (tool_choice not "none") → one call: to the named function, else to the
  first tool, with arguments made from its parameter schema; when the last user message
  names several tools (as words), parallel calls to each, in the order named;
- a JSON format → an object made from the schema ({"answer": "..."} for json_object);
- else a line of text.
"""

from __future__ import annotations

import json
import re
from typing import Any

TEXT_ANSWER = "Hello from the canned model."


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message (OpenAI's form) for a chat completion request."""
    messages = request["messages"]
    last = messages[-1]
    tools = request.get("tools") or []
    choice = request.get("tool_choice", "auto")
    if last.get("role") == "tool" and choice == "required":
        # pydantic-ai's output tool comes after the function tools
        return _call([tools[-1]["function"]], len(messages))
    if last.get("role") == "tool":
        return _json_or_text(request, f"The tool returned: {_text(last.get('content'))}")
    if tools and choice != "none":
        named = _named(tools, _text(last.get("content")))
        if (
            len(named) > 1
            and choice in ("auto", "required")
            and request.get("parallel_tool_calls") is not False
        ):
            return _call(named, len(messages))
        return _call([_chosen(tools, choice)], len(messages))
    return _json_or_text(request, TEXT_ANSWER)


def _named(tools: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The offered functions the text names as words, in the order it names them."""
    found = [
        (match.start(), tool["function"])
        for tool in tools
        if (match := re.search(rf"\b{re.escape(tool['function']['name'])}\b", text))
    ]
    return [function for _, function in sorted(found, key=lambda item: item[0])]


def _call(functions: list[dict[str, Any]], number: int) -> dict[str, Any]:
    calls = []
    for index, function in enumerate(functions):
        parameters = function.get("parameters") or {}
        arguments = json.dumps(example(parameters, parameters))
        calls.append(
            {
                "id": f"call_{number}_{index}",
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return {"role": "assistant", "content": None, "tool_calls": calls}


def _chosen(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
    functions: list[dict[str, Any]] = [tool["function"] for tool in tools]
    if isinstance(choice, dict):
        return next(f for f in functions if f["name"] == choice["function"]["name"])
    return functions[0]


def _json_or_text(request: dict[str, Any], text: str) -> dict[str, Any]:
    response_format = request.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}
        text = json.dumps(example(schema, schema))
    elif response_format["type"] == "json_object":
        text = json.dumps({"answer": text})
    return {"role": "assistant", "content": text}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


def example(schema: dict[str, Any], root: dict[str, Any]) -> Any:  # noqa: C901 (one branch a type)
    """A value valid for `schema` ($ref resolved against `root`'s $defs)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(root.get("$defs", root.get("definitions", {}))[name], root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example(schema[key][0], root)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        return {name: example(sub, root) for name, sub in properties.items()}
    if kind == "array":
        return [example(schema.get("items", {}), root)]
    return {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True, "null": None}[kind]
