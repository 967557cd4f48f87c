"""One model output read against what the request asked of it (`OutputSpec`).

`read_output` runs the steps in order: the reasoning is split off (`reasoning: think_tags`);
when tools are offered, the model's tool format reads the calls and `checks` holds them against
the tools; when there is no call and a JSON answer was asked for, `json_answer` finds and
validates it. The result says what to answer and, in `problems`, why the output does not meet
the request (empty when it does): the caller asks again or gives up with those sentences.

Called only for requests whose spec is not plain; the readers and the JSON libraries are
imported on first use all the same.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from app.output.spec import OutputSpec
from app.output.types import TOOL_FORMATS, Extraction, ToolCall

Extractor = Callable[[str], Extraction]
_MAX_PROBLEMS = 10  # enough to act on; a degenerate output must not make a huge message


@dataclass(frozen=True, slots=True)
class Reading:
    """An output read: what goes into the answer, and what was wrong with it.

    `content` is None when calls were returned and no text came with them. `problems` empty
    means the answer meets the request's contract.
    """

    content: str | None
    reasoning: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_output(text: str, spec: OutputSpec) -> Reading:
    """Reasoning, content and checked calls of `text` (the prefill included), and problems."""
    reasoning: str | None = None
    if spec.reasoning == "think_tags":
        from app.output.reasoning import split_reasoning

        reasoning, text = split_reasoning(text)
    content, calls, problems = _read_calls(text, spec) if spec.offers_tools else (text, [], [])
    if not calls and not problems and spec.json != "text":
        from app.output.json_answer import read_json

        schema = spec.schema if spec.json == "json_schema" else None
        content, problems = read_json(content, schema)
    if len(problems) > _MAX_PROBLEMS:
        problems = [*problems[:_MAX_PROBLEMS], f"(and {len(problems) - _MAX_PROBLEMS} more)"]
    return Reading(
        content=content if content or not calls else None,
        reasoning=reasoning,
        calls=calls,
        problems=problems,
    )


def extractor(tool_format: str) -> Extractor:
    """The `extract` function of a tool format's module (`app.output.<format>`)."""
    if tool_format not in TOOL_FORMATS or tool_format == "none":
        raise ValueError(f"no reader for tool format {tool_format!r}")
    return _imported_extract(tool_format)


@functools.cache
def _imported_extract(tool_format: str) -> Extractor:
    module = importlib.import_module(f"app.output.{tool_format}")
    extract: Extractor = module.extract
    return extract


def _read_calls(text: str, spec: OutputSpec) -> tuple[str, list[ToolCall], list[str]]:
    from app.output.checks import check_calls

    extraction = extractor(spec.tool_format)(text)
    calls, problems = check_calls(extraction.calls, spec)
    problems = extraction.problems + problems
    if not calls and spec.tool_choice in ("required", "function"):
        problems.append(_missing_call(spec, found_any=bool(extraction.calls or problems)))
    return extraction.content, calls, problems


def _missing_call(spec: OutputSpec, *, found_any: bool) -> str:
    opening = "no valid tool call" if found_any else "no tool call found"
    if spec.tool_choice == "function":
        return f"{opening}; expected a call to {spec.tool_name}"
    names = ", ".join(tool.name for tool in spec.tools)
    return f"{opening}; expected a call to one of the offered tools: {names}"
