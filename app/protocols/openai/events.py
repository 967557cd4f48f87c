"""Pure SSE framing: finished choices → `chat.completion.chunk` / `text_completion` events.

The custom endpoint does not stream, so the proxy synthesises OpenAI's event sequence from the
finished answer: per choice a role delta, the reasoning (`reasoning_content`), the content,
each tool call (a chunk with its index, id, type and name, then one with its arguments), a
finish chunk; then, when the client set `stream_options.include_usage`, a usage chunk with
`choices: []`; then `data: [DONE]` (app.streaming frames them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from app.protocols.openai.answers import AnswerHead, chat_tool_calls
from app.translate import Choice


def chat_chunks(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int] | None
) -> list[dict[str, Any]]:
    """The chunk sequence for chat; `usage` is given only when the client asked for it."""
    fields = head.fields("chat.completion.chunk")
    if usage is not None:
        fields["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    chunks = []
    for choice in choices:
        index = choice.index
        for delta, finish in _chat_deltas(head, choice):
            chunks.append(
                {
                    **fields,
                    "choices": [
                        {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                }
            )
    if usage is not None:
        chunks.append({**fields, "choices": [], "usage": usage})
    return chunks


def _chat_deltas(head: AnswerHead, choice: Choice) -> Iterable[tuple[dict[str, Any], str | None]]:
    """One choice's deltas: the role, its reasoning, its content, each tool call (its head,
    then its arguments), the finish."""
    if choice.reasoning is None and not choice.calls:  # plain text: the common case
        return (
            ({"role": "assistant", "content": "", "refusal": None}, None),
            ({"content": choice.text}, None),
            ({}, choice.finish_reason),
        )
    only_calls = bool(choice.calls) and not choice.text
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": None if only_calls else "", "refusal": None}, None)
    ]
    if choice.reasoning is not None:
        deltas.append(({"reasoning_content": choice.reasoning}, None))
    if not only_calls:
        deltas.append(({"content": choice.text}, None))
    for position, call in enumerate(chat_tool_calls(head, choice)):
        function = call["function"]
        opening = {**call, "index": position, "function": {**function, "arguments": ""}}
        deltas.append(({"tool_calls": [opening]}, None))
        arguments = {"index": position, "function": {"arguments": function["arguments"]}}
        deltas.append(({"tool_calls": [arguments]}, None))
    deltas.append(({}, choice.finish_reason))
    return deltas


def text_chunks(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int] | None
) -> list[dict[str, Any]]:
    """The chunk sequence for legacy completions: the text, then a finish chunk, per choice.

    As OpenAI does, content chunks carry `finish_reason: null` (its published schema, shared
    with the non-streamed answer, says string) and no `usage` key until the usage chunk.
    """
    fields = head.fields("text_completion")
    chunks = [
        {**fields, "choices": [_text_choice(choice.index, text, finish)]}
        for choice in choices
        for text, finish in ((choice.text, None), ("", choice.finish_reason))
    ]
    if usage is not None:
        chunks.append({**fields, "choices": [], "usage": usage})
    return chunks


def _text_choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
