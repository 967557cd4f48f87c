"""What the proxy should answer, computed from the mock upstream's pure `complete()`, and SSE.

The mock is deterministic, so for a request the proxy forwards as (upstream model, prompts,
params) the expected text is the mock's output for that batch with the echoed prompt removed.
At temperature > 0 the mock seeds each output with its index in the batch, so matching a whole
batch also proves the proxy sent every prompt in ONE upstream request, in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from app.mock_upstream import complete

# The sampling defaults written into the e2e config for the models that do not set their own.
DEFAULTS: dict[str, Any] = {"max_tokens": 256, "temperature": 0.7, "top_p": 1.0, "top_k": 40}


def continuations(model: str, prompts: list[str], **params: Any) -> list[str]:
    """The mock's continuation of each prompt when they arrive in one request, echo removed."""
    status, body = complete(
        {"model": model, "params": {"prompt": prompts, **{**DEFAULTS, **params}}}
    )
    assert status == 200, body
    texts = [item["output"][0] for item in body["data"]]
    assert all(t.startswith(p) for t, p in zip(texts, prompts, strict=True))
    return [text[len(prompt) :] for text, prompt in zip(texts, prompts, strict=True)]


def chat_answer(model: str, prompt: str, **params: Any) -> str:
    """The chat message content for one rendered prompt (chat drops the leading space)."""
    return continuations(model, [prompt], **params)[0].lstrip()


@dataclass(frozen=True)
class SSE:
    """A parsed event stream: comments, decoded data payloads, and whether it ended in [DONE]."""

    lines: list[str]
    comments: list[str]
    events: list[dict[str, Any]]
    done: bool


def parse_sse(lines: Iterable[str]) -> SSE:
    """Split raw SSE lines into comments and `data:` payloads; nothing may follow [DONE]."""
    kept = list(lines)
    comments: list[str] = []
    events: list[dict[str, Any]] = []
    done = False
    for line in kept:
        if not line:
            continue
        assert not done, f"data after [DONE]: {line!r}"
        if line.startswith(":"):
            comments.append(line)
        elif line == "data: [DONE]":
            done = True
        else:
            assert line.startswith("data: "), f"not an SSE data line: {line!r}"
            events.append(orjson.loads(line.removeprefix("data: ")))
    return SSE(lines=kept, comments=comments, events=events, done=done)
