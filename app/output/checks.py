"""The calls a model wrote, held against the tools the request offered.

A call counts when it names an offered tool and its arguments are an object valid for that
tool's parameter schema. Every call that does not is a problem (a sentence the model is shown
when it is asked again): the model meant something the proxy cannot pass on as it is. Calls
the request's contract leaves out are dropped without a problem: under a named `tool_choice`
the calls to other tools (a problem only when no call to the named one is left), and with
`parallel_tool_calls` false every valid call after the first.
"""

from __future__ import annotations

from typing import Any

from app.output.json_answer import schema_problems
from app.output.json_text import dumps_compact
from app.output.spec import OutputSpec
from app.output.types import RawCall, ToolCall, ToolSpec


def check_calls(calls: list[RawCall], spec: OutputSpec) -> tuple[list[ToolCall], list[str]]:
    """(the calls that count, in order, arguments as compact JSON; the problems found)."""
    offered = {tool.name: tool for tool in spec.tools}
    checked: list[ToolCall] = []
    problems: list[str] = []
    elsewhere: list[str] = []  # offered tools called instead of the named one
    for call in calls:
        tool = offered.get(call.name)
        if tool is None:
            problems.append(_not_offered(call.name, offered))
        elif spec.tool_choice == "function" and call.name != spec.tool_name:
            elsewhere.append(call.name)
        else:
            found = _argument_problems(call.arguments, tool)
            problems.extend(found)
            if not found:
                checked.append(ToolCall(name=call.name, arguments=dumps_compact(call.arguments)))
    if elsewhere and not checked:
        named = ", ".join(repr(name) for name in elsewhere)
        problems.append(f"the model called {named}, but this answer must call '{spec.tool_name}'")
    return (checked if spec.parallel_tool_calls else checked[:1]), problems


def _not_offered(name: str, offered: dict[str, ToolSpec]) -> str:
    names = ", ".join(offered) or "(none)"
    return f"the model called {name!r}, which is not among the offered tools: {names}"


def _argument_problems(arguments: Any, tool: ToolSpec) -> list[str]:
    if not isinstance(arguments, dict):
        return [
            f"the arguments of the call to {tool.name!r} are {_kind(arguments)}, "
            "not a JSON object of argument names and values"
        ]
    return [
        f"the arguments of the call to {tool.name!r} do not match its parameters: {problem}"
        for problem in schema_problems(arguments, tool.parameters)
    ]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "not JSON"
