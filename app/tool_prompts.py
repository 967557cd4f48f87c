"""The generation prompt of a chat with tools or a JSON answer: turns and OutputSpec in (pure).

    render_generation_prompt(template, turns, spec) -> (prompt, prefill)
    reask_turns(turns, answer_text, problems, spec) -> turns  (to ask again after a bad answer)

Turns are chat messages in Hugging Face's form (what `apply_chat_template` takes):
{"role", "content", "name"?, "tool_calls"?: [{"id", "type", "function": {"name",
"arguments": dict}}], "tool_call_id"?}. A request that asks nothing special (`spec.plain`, no
tool calls in its history) is rendered exactly as before: flat messages through the template.

Otherwise, two paths:
- a Jinja template that uses `tools` gets them (HF's {"type": "function", "function": ...}
  list) and the structured turns, and writes the tool prompt itself, as apply_chat_template;
- any other template gets flat messages the proxy writes: a system instruction (merged into
  the first system message, or a new one first) with the tools and the call syntax of the
  model's `tool_format` (app.tool_syntax), earlier calls written in that syntax, and tool
  results as turns the template can carry: chatml's `tool` role, llama3's `ipython`, raw's
  plain text; llama2, mistral and unknown Jinja templates take only user and assistant turns,
  so there the results become one user turn (consecutive results, and a user message right
  after them, merged), keeping the strict alternation.
Both paths add the JSON instruction (`Answer with a single JSON object`...) when a JSON answer
is asked for, and the tool choice.

The prefill opens the assistant's answer so that the model can only go on in the right form:
"{" for a JSON answer, the opening of a call for `required` or a named function. The prompt
ends with it; the caller prepends it to the output before reading it. No prefill with
`reasoning: think_tags`: the model must be free to think first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.output.spec import OutputSpec
from app.output.types import ToolFormat
from app.prompts import Message, PromptRenderError, PromptTemplate, Turn
from app.tool_syntax import (
    call_prefill,
    render_calls,
    tool_object,
    tools_instruction,
    turn_calls,
    wrap_result,
)

_SYSTEM_ROLES = frozenset({"system", "developer"})
_KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Built-ins whose turns are only user and assistant, strictly alternating.
_STRICT_TEMPLATES = frozenset({"llama2", "mistral"})
# Built-ins that give a tool result its own role marker (chatml: tool, llama3: ipython).
_TOOL_ROLE_TEMPLATES = frozenset({"chatml", "llama3"})
# Built-ins that refuse roles they do not know (raw takes any; a Jinja template decides itself).
_ROLE_CHECKED_TEMPLATES = _STRICT_TEMPLATES | _TOOL_ROLE_TEMPLATES


def render_generation_prompt(
    template: PromptTemplate, turns: Sequence[Turn], spec: OutputSpec
) -> tuple[str, str]:
    """The prompt for these turns and what the answer must be, and the prefill it ends with.

    Raises PromptRenderError (shown to the client) when the turns cannot be rendered.
    """
    if spec.plain and not any(t.get("tool_calls") for t in turns):
        return template.render([_flat(t) for t in turns]), ""
    prefill = _prefill(spec)
    if template.uses_tools:
        tools = [tool_object(t) for t in spec.tools] if spec.offers_tools else None
        instruction = _answer_instruction(spec)
        prompt = template.render_turns(_with_instruction(turns, instruction), tools)
    else:
        prompt = template.render(_to_messages(template.name, turns, spec))
    return prompt + prefill, prefill


def reask_turns(
    turns: Sequence[Turn], answer_text: str, problems: Sequence[str], spec: OutputSpec | None = None
) -> list[dict[str, Any]]:
    """The turns plus the bad answer and a user turn saying what was wrong and what to write."""
    listed = "\n".join(f"- {problem}" for problem in problems) or "- it was not in the asked form"
    text = f"Your last answer cannot be used:\n{listed}\n{_form_wanted(spec)}"
    return [
        *(dict(t) for t in turns),
        {"role": "assistant", "content": answer_text},
        {"role": "user", "content": text},
    ]


def _form_wanted(spec: OutputSpec | None) -> str:
    if spec is not None and spec.offers_tools and spec.tool_choice == "function":
        return (
            f"Answer again with a call to the function {spec.tool_name}, written exactly "
            "in the format the instructions describe."
        )
    if spec is not None and spec.offers_tools and spec.tool_choice == "required":
        return (
            "Answer again with a call to one or more of the functions, written exactly "
            "in the format the instructions describe."
        )
    if spec is not None and spec.json != "text":
        schema = " that matches the JSON schema given above" if spec.schema is not None else ""
        return f"Answer again with a single JSON object{schema}, and nothing else."
    return "Answer again, in the form the instructions describe."


def _prefill(spec: OutputSpec) -> str:
    if spec.reasoning == "think_tags":
        return ""
    if spec.offers_tools:
        if spec.tool_choice == "function":
            return call_prefill(spec.tool_format, spec.tool_name)
        if spec.tool_choice == "required":
            return call_prefill(spec.tool_format, None)
        return ""
    return "{" if spec.json != "text" else ""


def _tools_instruction(spec: OutputSpec) -> str:
    if not spec.offers_tools:
        return ""
    return tools_instruction(spec.tool_format, spec.tools)


def _answer_instruction(spec: OutputSpec) -> str:
    """The tool choice and the JSON answer, in words (the tools themselves come before)."""
    parts: list[str] = []
    if spec.offers_tools:
        if spec.tool_choice == "function":
            parts.append(f"You must call the function {spec.tool_name} in your answer.")
        elif spec.tool_choice == "required":
            parts.append("You must call at least one of the functions in your answer.")
        else:
            parts.append("If none of the functions fits, answer directly without calling one.")
        if not spec.parallel_tool_calls:
            parts.append("Call at most one function at a time.")
        parts.append("When you are given a function's result, use it to answer the user.")
    if spec.json != "text":
        if spec.offers_tools:
            parts.append("When you answer without calling a function, answer in JSON.")
        wanted = "Answer with a single JSON object."
        if spec.json == "json_schema" and spec.schema is not None:
            schema = json.dumps(spec.schema, ensure_ascii=False)
            wanted = f"Answer with a single JSON object that matches this JSON schema: {schema}"
        parts.append(wanted + "\nWrite only the JSON object: no other text, no code fences.")
    return "\n".join(parts)


def _with_instruction(turns: Sequence[Turn], instruction: str) -> list[dict[str, Any]]:
    """The turns with the instruction merged into the first system turn, or a new one first."""
    out = [dict(t) for t in turns]
    if not instruction:
        return out
    if out and out[0]["role"] in _SYSTEM_ROLES:
        system = out[0].get("content") or ""
        out[0]["content"] = f"{system}\n\n{instruction}" if system else instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def _to_messages(template_name: str, turns: Sequence[Turn], spec: OutputSpec) -> list[Message]:
    """Flat messages carrying the tools, calls and results for a template that has no tools."""
    _check_roles(template_name, turns)
    fmt: ToolFormat = spec.tool_format if spec.tool_format != "none" else "hermes"
    tool_role = template_name in _TOOL_ROLE_TEMPLATES or template_name == "raw"
    messages: list[dict[str, str]] = []
    merging = False  # the last message is a user turn made of tool results
    for turn in turns:
        role, content = turn["role"], _text(turn)
        if role == "tool":
            result = wrap_result(fmt, content, in_tool_role=template_name in _TOOL_ROLE_TEMPLATES)
            if tool_role:
                messages.append({"role": "tool", "content": result})
            elif merging:
                messages[-1]["content"] += "\n" + result
            else:
                messages.append({"role": "user", "content": result})
                merging = True
            continue
        if role == "user" and merging:
            messages[-1]["content"] += "\n\n" + content
        elif role == "assistant" and turn.get("tool_calls"):
            calls = render_calls(fmt, turn_calls(turn))
            messages.append({"role": role, "content": f"{content}\n{calls}" if content else calls})
        else:
            messages.append(_flat(turn))
        merging = False
    instruction = "\n\n".join(s for s in (_tools_instruction(spec), _answer_instruction(spec)) if s)
    return list(_with_instruction(messages, instruction))


def _check_roles(template_name: str, turns: Sequence[Turn]) -> None:
    """PromptRenderError, naming the client's message index, for turns the template cannot carry."""
    if template_name not in _ROLE_CHECKED_TEMPLATES:
        return
    for index, turn in enumerate(turns):
        if turn["role"] not in _KNOWN_ROLES:
            raise PromptRenderError(
                f"the {template_name} chat template cannot render messages[{index}] "
                f"with role {turn['role']!r}"
            )
    if template_name in _STRICT_TEMPLATES:
        _check_alternation(template_name, turns)


def _check_alternation(template_name: str, turns: Sequence[Turn]) -> None:
    """Strict templates: system?, then user and assistant taking turns, ending with user.

    Tool results count as a user turn: they must answer an assistant turn (directly or after
    other results), and a user message right after them joins that turn.
    """
    start = 1 if turns and turns[0]["role"] in _SYSTEM_ROLES else 0
    previous = ""  # the role of the last turn seen; "" before the first
    for index in range(start, len(turns)):
        role = turns[index]["role"]
        if role == "tool" and previous not in ("assistant", "tool"):
            where = f"after a {previous!r} message" if previous else "at the start"
            raise PromptRenderError(
                f"the {template_name} chat template carries tool results only right after "
                f"an assistant message with tool_calls; messages[{index}] has role 'tool' {where}"
            )
        if role == "tool" or (role == "user" and previous == "tool"):
            previous = role
            continue
        expected = "user" if previous in ("", "assistant") else "assistant"
        if role != expected:
            raise PromptRenderError(
                f"the {template_name} chat template needs an optional system message followed "
                f"by user and assistant messages taking turns; messages[{index}] has role "
                f"{role!r} where {expected!r} was expected"
            )
        previous = role
    if previous in ("", "assistant"):
        raise PromptRenderError(
            f"the {template_name} chat template needs a user message or tool results last"
        )


def _flat(turn: Turn) -> dict[str, str]:
    flat = {"role": turn["role"], "content": _text(turn)}
    if isinstance(turn.get("name"), str):
        flat["name"] = turn["name"]
    return flat


def _text(turn: Turn) -> str:
    content = turn.get("content")
    return content if isinstance(content, str) else ""
