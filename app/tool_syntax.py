"""How each tool format looks in a prompt: instruction, calls, results, prefills (pure).

The four `tool_format`s, written the way their models were trained to read and write them:

    hermes       Hermes-2-Pro and Qwen2.5: tools within <tools></tools>, each call a
                 <tool_call>{"name", "arguments"}</tool_call> block, results in <tool_response>.
    llama3_json  Llama 3.1's JSON tool calling: {"name": ..., "parameters": {...}}, several
                 separated by "; ", results in the `ipython` turn.
    mistral      Mistral's [AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS], calls as
                 [TOOL_CALLS][{"name", "arguments"}, ...], results in [TOOL_RESULTS].
    pythonic     Llama 3.2's Python list of calls: [get_weather(city="Paris"), get_time()].

The texts hold the markers the mock upstream keys on (app.mock_upstream's tool mode): each
format's instruction names its own marker and no other format's (hermes `<tool_call>`, mistral
`[TOOL_CALLS]`, pythonic `[func_name1(`, llama3_json `"parameters": dictionary of argument name
and its value`), and every tool is one line of `json.dumps({"type": "function", "function":
{"name", "description", "parameters"}})`. Keep them exact: tests/unit/test_tool_prompts.py
checks them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from app.output.types import ToolFormat, ToolSpec
from app.prompts import PromptRenderError, Turn

# Llama 3.1's and 3.2's own wording of the call syntax (Meta's prompt format docs).
_LLAMA3_JSON_SYNTAX = (
    'Respond in the format {"name": function name, "parameters": dictionary of argument name '
    "and its value}. Do not use variables."
)
_PYTHONIC_SYNTAX = (
    "Respond in the format [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)]. Do not use variables."
)


def tool_object(tool: ToolSpec) -> dict[str, Any]:
    """The tool as Hugging Face's `tools` entry (and OpenAI's): {"type": "function", ...}."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def tool_line(tool: ToolSpec) -> str:
    """The tool as one line of JSON (non-ASCII kept, as HF's tojson writes it)."""
    return _dumps(tool_object(tool))


def tools_instruction(fmt: ToolFormat, tools: Sequence[ToolSpec]) -> str:
    """The tools and the exact call syntax of `fmt`, with an example call to the first tool."""
    lines = [tool_line(t) for t in tools]
    example = render_calls(fmt, [(tools[0].name, example_arguments(tools[0].parameters))])
    if fmt == "hermes":
        return (
            "# Tools\n\nYou may call one or more functions to help with the user's request. "
            "The functions are given as JSON, one per line, within <tools></tools> XML tags:\n"
            "<tools>\n" + "\n".join(lines) + "\n</tools>\n\n"
            "For each call, write a JSON object with the function's name and arguments within "
            "<tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            f"</tool_call>\n\nFor example:\n{example}"
        )
    if fmt == "mistral":
        return (
            "# Tools\n\nYou may call one or more functions to help with the user's request. "
            "The functions, as a JSON list with one function per line:\n"
            "[AVAILABLE_TOOLS] [" + ",\n".join(lines) + "][/AVAILABLE_TOOLS]\n\n"
            "To call functions, write [TOOL_CALLS] followed by a JSON list of the calls, each "
            "an object with the function's name and its arguments:\n"
            '[TOOL_CALLS][{"name": <function-name>, "arguments": <args-json-object>}]\n\n'
            f"For example:\n{example}"
        )
    if fmt == "llama3_json":
        how = (
            "To call a function, respond with a JSON for a function call with its proper "
            f'arguments. {_LLAMA3_JSON_SYNTAX} To call several, separate them with "; ".'
        )
    else:
        how = f"To call functions, respond with a Python list of the calls. {_PYTHONIC_SYNTAX}"
    return (
        "# Tools\n\nYou have access to the following functions, given as JSON, one per line:\n"
        + "\n".join(lines)
        + f"\n\n{how}\n\nFor example:\n{example}"
    )


def render_calls(fmt: ToolFormat, calls: Sequence[tuple[str, Any]]) -> str:
    """(name, arguments) pairs written in the format's call syntax, as the model writes them."""
    if fmt == "llama3_json":
        return "; ".join(
            f'{{"name": {_dumps(name)}, "parameters": {_dumps(args)}}}' for name, args in calls
        )
    if fmt == "mistral":
        items = (f'{{"name": {_dumps(name)}, "arguments": {_dumps(args)}}}' for name, args in calls)
        return "[TOOL_CALLS][" + ", ".join(items) + "]"
    if fmt == "pythonic":
        return "[" + ", ".join(_python_call(name, args) for name, args in calls) + "]"
    return "\n".join(
        f'<tool_call>\n{{"name": {_dumps(name)}, "arguments": {_dumps(args)}}}\n</tool_call>'
        for name, args in calls
    )


def turn_calls(turn: Turn) -> list[tuple[str, Any]]:
    """The (name, arguments) of an assistant turn's `tool_calls` (arguments a dict, as HF's)."""
    calls: list[tuple[str, Any]] = []
    for call in turn.get("tool_calls") or ():
        function = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise PromptRenderError("an assistant tool call has no function name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI's JSON text, if a caller passes it unconverted
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        calls.append((function["name"], arguments))
    return calls


def wrap_result(fmt: ToolFormat, content: str, *, in_tool_role: bool) -> str:
    """A tool result as the format shows it to the model.

    `in_tool_role`: the template gives the result its own role marker (chatml's `tool`,
    llama3's `ipython`); Llama's formats then take the content as it is, as Meta's do.
    Everywhere else the result is wrapped, so the model (and the mock) can tell it apart.
    """
    if fmt == "mistral":
        return f"[TOOL_RESULTS]{content}[/TOOL_RESULTS]"
    if fmt in ("llama3_json", "pythonic") and in_tool_role:
        return content
    return f"<tool_response>\n{content}\n</tool_response>"


def call_prefill(fmt: ToolFormat, name: str | None) -> str:
    """The opening of the assistant's answer that forces a call (to `name`, or to any tool)."""
    if name is None:
        return {"llama3_json": '{"name": "', "mistral": "[TOOL_CALLS]", "pythonic": "["}.get(
            fmt, "<tool_call>\n"
        )
    quoted = _dumps(name)
    if fmt == "llama3_json":
        return f'{{"name": {quoted}, "parameters": '
    if fmt == "mistral":
        return f'[TOOL_CALLS][{{"name": {quoted}, "arguments": '
    if fmt == "pythonic":
        return f"[{name}("
    return f'<tool_call>\n{{"name": {quoted}, "arguments": '


def example_arguments(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Placeholder arguments for the example call: the required parameters (or the first one)."""
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return {}
    required = [n for n in parameters.get("required") or () if n in properties]
    names = required[:3] or list(properties)[:1]
    return {name: _placeholder(properties[name]) for name in names}


def _placeholder(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return "value"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {}
    by_type: dict[str, Any] = {"integer": 1, "number": 1.5, "boolean": True, "array": []}
    return by_type.get(kind, "value") if isinstance(kind, str) else "value"


def _python_call(name: str, arguments: Any) -> str:
    if not isinstance(arguments, Mapping):
        raise PromptRenderError(
            f"the arguments of the call to {name!r} are not an object, so they cannot be "
            "written as Python keyword arguments"
        )
    return f"{name}(" + ", ".join(f"{k}={_python_literal(v)}" for k, v in arguments.items()) + ")"


def _python_literal(value: Any) -> str:
    """A JSON value as a Python literal (JSON's string escapes are valid Python ones)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_dumps(str(k))}: {_python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return _dumps(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
