"""Finished choices as OpenAI's answers: the `chat.completion` and `text_completion` objects (pure).

`AnswerHead` is what the answer and every chunk of one completion share; tool calls get ids
`call_<head hex><choice><position>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.translate import Choice


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class AnswerHead:
    """What the answer, and every chunk, of one completion shares."""

    id: str
    created: int
    model: str
    fingerprint: str

    def fields(self, object_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }


def to_chat_completion(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int]
) -> dict[str, Any]:
    """The `chat.completion` object, with every field OpenAI's schema requires."""
    return {
        **head.fields("chat.completion"),
        "choices": [
            {
                "index": choice.index,
                "message": _chat_message(head, choice),
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for choice in choices
        ],
        "usage": usage,
    }


def _chat_message(head: AnswerHead, choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text,
        "refusal": None,
        "annotations": [],
    }
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    if choice.calls:
        message["tool_calls"] = chat_tool_calls(head, choice)
        if not choice.text:
            message["content"] = None
    return message


def chat_tool_calls(head: AnswerHead, choice: Choice) -> list[dict[str, Any]]:
    """A choice's calls as OpenAI's `tool_calls`; ids unique in the answer and the same in a
    stream as in the JSON answer."""
    return [
        {
            "id": tool_call_id(head, choice.index, position),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for position, call in enumerate(choice.calls or ())
    ]


def tool_call_id(head: AnswerHead, choice: int, position: int) -> str:
    """`call_` and the answer's own id digits, then the choice and the call's position."""
    digits = head.id.rpartition("-")[2]
    return f"call_{digits}{choice:02x}{position:02x}"


def to_text_completion(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int]
) -> dict[str, Any]:
    """The legacy `text_completion` object."""
    return {
        **head.fields("text_completion"),
        "choices": [
            {
                "index": choice.index,
                "text": choice.text,
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for choice in choices
        ],
        "usage": usage,
    }
