"""A chat request, whichever API it came through, planned as a generation for one model.

Each front door (OpenAI chat today; Responses and Anthropic Messages next) parses its own
request into an `Ask`: the conversation as turns in Hugging Face's form, what the answer must
be (`OutputSpec`, without the model's own `tool_format` and `reasoning`), and the sampling the
client asked for. `plan_generation` makes it a `Generation` for one model: its template, its
tool syntax, its defaults; the same Ask is planned again for each fallback model.

Plain asks (no tools, no JSON, no tool turns, a model that does not reason) keep the fastest
path: string messages through the template, the output as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from app.errors import InvalidRequest, UnsupportedParameter
from app.output.json_answer import BadSchema, check_schema
from app.output.spec import PLAIN, JsonMode, OutputSpec
from app.output.types import ToolSpec
from app.prompts import PromptRenderError, Turn
from app.routing import ModelRoute
from app.serving import Generation
from app.tool_prompts import reask_turns, render_generation_prompt
from app.translate import check_max_tokens, resolve_sampling


@dataclass(slots=True)
class Ask:
    """What the client asked for, in no API's terms."""

    turns: list[dict[str, Any]]
    spec: OutputSpec = PLAIN
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"  # the client's name for it, for a 400
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int = 1
    stops: tuple[str, ...] = ()
    messages_param: str = "messages"  # where the turns came from, for a 400
    # Whether any turn calls a tool or answers one, when the door saw it while making the
    # turns (None: look).
    tool_turns: bool | None = None

    @property
    def plain(self) -> bool:
        """No tools, no JSON answer and no tool turns (the model may still reason)."""
        if self.spec is PLAIN and self.tool_turns is False:  # what a plain chat request makes
            return True
        if self.spec.tools or self.spec.json != "text":
            return False
        if self.tool_turns is not None:
            return not self.tool_turns
        return not any("tool_calls" in turn or turn["role"] == "tool" for turn in self.turns)


def check_client_schema(schema: dict[str, Any], param: str) -> None:
    """A JSON schema the client sent (tool parameters, an answer's format) must itself be a
    valid JSON Schema; a 400 naming the param if not. Checked once per distinct schema."""
    try:
        check_schema(schema)
    except BadSchema as exc:
        raise InvalidRequest(f"Invalid JSON schema in '{param}': {exc}", param=param) from None


_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def offered_tool(
    name: str,
    description: str | None,
    parameters: dict[str, Any] | None,
    *,
    strict: bool = False,
    seen: set[str],
    where: str,
    schema_field: str = "parameters",
) -> ToolSpec:
    """A function tool a client offers, checked as every front door checks it: a name not
    offered twice (`seen` collects them) and a valid parameter schema. `where` is the tool's
    param path (`tools[2]`); `schema_field` its schema's field in the client's API."""
    if name in seen:
        raise InvalidRequest(
            f"Duplicate tool name '{name}': each tool needs its own name.", param=f"{where}.name"
        )
    seen.add(name)
    schema = parameters or _NO_PARAMETERS
    check_client_schema(schema, f"{where}.{schema_field}")
    return ToolSpec(name=name, description=description or "", parameters=schema, strict=strict)


def check_tools_offered(choice: str, tools: Sequence[ToolSpec], offered: str) -> None:
    """A `tool_choice` that asks for a call (`required`, `any`) needs tools to call: a 400 if
    none were offered. `offered` names them in the client's terms ("'tools'")."""
    if not tools:
        raise InvalidRequest(
            f"'tool_choice' is '{choice}' but no {offered} were given.", param="tool_choice"
        )


def named_tool(name: str, tools: Sequence[ToolSpec], param: str) -> str:
    """The name a `tool_choice` names, when it is among the offered tools; a 400 if not."""
    if not any(tool.name == name for tool in tools):
        offered = ", ".join(tool.name for tool in tools) or "none"
        raise InvalidRequest(
            f"'tool_choice' names function '{name}', which is not among the tools "
            f"(offered: {offered}).",
            param=param,
        )
    return name


def answer_format(
    kind: str, schema: dict[str, Any] | None, name: str | None, strict: bool | None, param: str
) -> tuple[JsonMode, dict[str, Any] | None, str | None, bool]:
    """A client's answer format (text, json_object, json_schema) as OutputSpec's json, schema,
    schema_name and strict; a json_schema without a schema means any object. `param` names the
    schema's field for a 400 when it is not a valid schema."""
    if kind == "json_object":
        return "json_object", None, None, False
    if kind != "json_schema":
        return "text", None, None, False
    checked = schema or {"type": "object"}
    check_client_schema(checked, param)
    return "json_schema", checked, name, bool(strict)


def plan_generation(ask: Ask, route: ModelRoute) -> Generation:
    """The ask as a generation for this model; InvalidRequest (400) for what it cannot take."""
    config = route.config
    check_max_tokens(ask.max_tokens, config.max_tokens_cap, ask.max_tokens_param)
    if ask.plain and config.reasoning == "none":
        try:
            prompt = route.template.render(ask.turns)
        except PromptRenderError as exc:
            raise _unrenderable(ask, exc) from exc
        return _generation(ask, route, prompt)
    if ask.spec.tools and config.tools_syntax == "none":
        raise UnsupportedParameter(
            f"'tools' are not supported by model '{config.name}' (its tool_format is none)",
            param="tools",
        )
    spec = replace(ask.spec, tool_format=config.tools_syntax, reasoning=config.reasoning)
    try:
        prompt, prefill = render_generation_prompt(route.template, ask.turns, spec)
    except PromptRenderError as exc:
        raise _unrenderable(ask, exc) from exc
    job = _generation(ask, route, prompt)
    if not spec.plain:
        job.output = spec
        job.prefill = prefill
        job.reask = partial(_reask_prompt, route, ask.turns, spec)
    return job


def _unrenderable(ask: Ask, exc: PromptRenderError) -> InvalidRequest:
    return InvalidRequest(f"The messages cannot be rendered: {exc}", param=ask.messages_param)


def _generation(ask: Ask, route: ModelRoute, prompt: str) -> Generation:
    return Generation(
        route=route,
        prompts=[prompt] * ask.n,
        sampling=resolve_sampling(ask, route.config.defaults, ask.max_tokens),
        stops=ask.stops,
        counted_prompts=[prompt],
        chat=True,
        retarget=partial(plan_generation, ask),
    )


def _reask_prompt(
    route: ModelRoute, turns: Sequence[Turn], spec: OutputSpec, answer: str, problems: list[str]
) -> str:
    again = reask_turns(turns, answer, problems, spec)
    return render_generation_prompt(route.template, again, spec)[0]
