"""A finished choice read for what the request asked: tool calls, a JSON answer, reasoning.

The upstream's text (after the prompt's echo and any stop sequence are removed) continues the
`prefill` the proxy wrote at the end of the prompt, so the answer the model gave is both. Its
reading (app.output.reading) decides the choice's content, calls and reasoning, and its
`finish_reason` as OpenAI sets it: `tool_calls` when calls are returned for `auto` or
`required`, `stop` for a named function, `length` when the text was cut by max_tokens. An
answer cut by max_tokens is not asked for again (it would be cut again): it is returned as far
as it goes, as OpenAI does (the SDK's `parse` raises LengthFinishReasonError for it).
"""

from __future__ import annotations

from dataclasses import replace

from app.output.reading import read_output
from app.output.spec import OutputSpec
from app.translate import Choice, FinishReason


def read_choice(choice: Choice, spec: OutputSpec, prefill: str) -> Choice:
    """The choice with its content, calls, reasoning and problems read from its text."""
    raw = prefill + choice.text
    reading = read_output(raw, spec)
    finish: FinishReason = choice.finish_reason
    if reading.calls and finish != "length":
        finish = "stop" if spec.tool_choice == "function" else "tool_calls"
    problems = reading.problems if finish != "length" else []
    return replace(
        choice,
        text=reading.content or "",
        finish_reason=finish,
        calls=reading.calls or None,
        reasoning=reading.reasoning,
        problems=problems or None,
        raw=raw,
    )
