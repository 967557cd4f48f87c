"""The fault soak's requests (bench/soak.py), and how each one is classified.

Every request ends as one `Outcome`: "ok" (a valid answer with text and a finish_reason; a
stream with a finish_reason and, where read raw, one `data: [DONE]` last), "error" (a proper
OpenAI error: an HTTP error whose body is {"error": {"message", "type", "param", "code"}}, or
that envelope in-band in a stream) or "lost" (anything else). `send` makes one request of a kind
in `KINDS` and classifies it; `envelope_problem` and `check_events` are pure.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import openai

MODEL = "soak"

Verdict = Literal["ok", "error", "lost"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    detail: str  # for errors and lost requests: what happened


OK = Outcome("ok", "")


def lost(detail: str) -> Outcome:
    return Outcome("lost", detail)


def envelope_problem(body: object) -> str | None:
    """What keeps `body` from being an OpenAI error envelope, or None when it is one."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"not an error envelope: {str(body)[:200]}"
    error = body["error"]
    missing = {"message", "type", "param", "code"} - set(error)
    if missing:
        return f"the envelope lacks {sorted(missing)}: {str(error)[:200]}"
    if not isinstance(error["message"], str) or not error["message"].strip():
        return "the envelope's message is empty"
    if not isinstance(error["type"], str) or not error["type"]:
        return "the envelope's type is empty"
    if not all(error[key] is None or isinstance(error[key], str) for key in ("param", "code")):
        return f"param or code is neither a string nor null: {str(error)[:200]}"
    return None


def proper_error(body: Any, where: str) -> Outcome:
    problem = envelope_problem(body)
    if problem is not None:
        return lost(f"{where}: {problem}")
    return Outcome("error", f"{where} {body['error']['code']}")


def check_text(text: object, finish_reason: object, what: str) -> Outcome:
    if not isinstance(text, str) or not text:
        return lost(f"{what}: no text")
    if finish_reason not in ("stop", "length"):
        return lost(f"{what}: finish_reason {finish_reason!r}")
    return OK


Request = Callable[[openai.AsyncOpenAI, str, int], Awaitable[Outcome]]


def _messages(prompt: str) -> list[Any]:
    return [{"role": "user", "content": prompt}]


async def chat(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> Outcome:
    answer = await client.chat.completions.create(
        model=MODEL, messages=_messages(prompt), max_tokens=max_tokens
    )
    if answer.object != "chat.completion" or len(answer.choices) != 1:
        return lost(f"chat: unexpected answer {answer.model_dump_json()[:200]}")
    choice = answer.choices[0]
    return check_text(choice.message.content, choice.finish_reason, "chat")


async def chat_stream(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> Outcome:
    """Through the SDK's own stream, as applications read it. An in-band error event makes
    the SDK raise APIError, classified in `send`."""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=_messages(prompt),
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    finish_reason: str | None = None
    usage_seen = False
    async for chunk in stream:
        usage_seen = usage_seen or chunk.usage is not None
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish_reason = choice.finish_reason or finish_reason
    if not usage_seen:
        return lost("chat-stream: no usage chunk")
    return check_text("".join(parts), finish_reason, "chat-stream")


async def chat_stream_raw(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> Outcome:
    """Line by line, so that a stream ending without `data: [DONE]` is seen."""
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=_messages(prompt), max_tokens=max_tokens, stream=True
    ) as response:
        content_type = response.headers.get("content-type", "")
        events = [line[6:] async for line in response.iter_lines() if line.startswith("data: ")]
    if not content_type.startswith("text/event-stream"):
        return lost(f"chat-stream-raw: content-type {content_type!r}")
    return check_events(events)


def check_events(events: list[str]) -> Outcome:
    """The `data:` payloads of one chat stream: chunks, or one error event, then [DONE]."""
    if not events or events[-1] != "[DONE]" or events.count("[DONE]") != 1:
        return lost(f"chat-stream-raw: does not end with one [DONE] (last: {events[-1:]})")
    parts: list[str] = []
    finish_reason = None
    for payload in events[:-1]:
        try:
            event = json.loads(payload)
        except ValueError:
            return lost(f"chat-stream-raw: event is not JSON: {payload[:200]}")
        if isinstance(event, dict) and "error" in event:
            return proper_error(event, "in-band")
        if not isinstance(event, dict) or event.get("object") != "chat.completion.chunk":
            return lost(f"chat-stream-raw: not a chunk: {payload[:200]}")
        for choice in event.get("choices", []):
            parts.append(choice["delta"].get("content") or "")
            finish_reason = choice.get("finish_reason") or finish_reason
    return check_text("".join(parts), finish_reason, "chat-stream-raw")


async def completion(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> Outcome:
    answer = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens)
    if answer.object != "text_completion" or len(answer.choices) != 1:
        return lost(f"completion: unexpected answer {answer.model_dump_json()[:200]}")
    choice = answer.choices[0]
    return check_text(choice.text, choice.finish_reason, "completion")


# name → (request, share of the traffic)
KINDS: dict[str, tuple[Request, float]] = {
    "chat": (chat, 0.40),
    "chat-stream": (chat_stream, 0.25),
    "chat-stream-raw": (chat_stream_raw, 0.15),
    "completion": (completion, 0.20),
}


async def send(client: openai.AsyncOpenAI, kind: str, prompt: str, max_tokens: int) -> Outcome:
    """One request, classified. The order of the handlers matters: the SDK's connection,
    timeout and validation errors are subclasses of APIError, as is an in-band stream error."""
    try:
        return await KINDS[kind][0](client, prompt, max_tokens)
    except openai.APIStatusError as exc:
        try:
            body = json.loads(exc.response.content)
        except ValueError:
            return lost(f"HTTP {exc.status_code} with a body that is not JSON")
        return proper_error(body, f"HTTP {exc.status_code}")
    except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
        return lost(f"{type(exc).__name__}: {exc}")
    except openai.APIError as exc:  # the SDK's stream met `data: {"error": …}`
        return proper_error({"error": exc.body}, "in-band")
    except Exception as exc:  # anything else the client met is a lost request, and counted
        return lost(f"{type(exc).__name__}: {exc}")
