"""SSE synthesis: chunk sequences for n=1/n=2 with and without usage, framing, parsed back."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from app.protocols.openai.answers import AnswerHead
from app.protocols.openai.events import chat_chunks, text_chunks
from app.streaming import (
    DONE,
    KEEPALIVE,
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    error_stream,
    sse_body,
    sse_event,
)
from app.translate import Choice, usage
from tests.openai_spec import validate_openai

ONE = [Choice(0, "Hello there", "stop", 2)]
TWO = [Choice(0, "Paris.", "stop", 2), Choice(1, "Paris is the capital", "length", 4)]
HEAD = {"created": 1_700_000_000, "model": "demo", "fingerprint": "fp_custom"}


def parse_sse(body: bytes) -> list[Any]:
    """A tiny SSE reader: events split on blank lines; comments skipped; `[DONE]` kept as is."""
    assert body.endswith(b"\n\n")
    events: list[Any] = []
    for block in body.decode("utf-8").split("\n\n")[:-1]:
        data = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        others = [line for line in block.split("\n") if not line.startswith(("data: ", ":"))]
        assert others == [], f"unexpected SSE lines: {others}"
        if not data:
            continue
        payload = "\n".join(data)
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def chat_stream(choices: list[Choice], include_usage: bool) -> list[dict[str, Any]]:
    return chat_chunks(
        AnswerHead(id="chatcmpl-1", **HEAD), choices, usage(5, choices) if include_usage else None
    )


def text_stream(choices: list[Choice], include_usage: bool) -> list[dict[str, Any]]:
    return text_chunks(
        AnswerHead(id="cmpl-1", **HEAD), choices, usage(5, choices) if include_usage else None
    )


def validate_legacy_chunk(chunk: dict[str, Any]) -> None:
    """OpenAI's spec has no schema for legacy stream chunks; CreateCompletionResponse is closest.

    OpenAI itself streams `finish_reason: null` before the last chunk of a choice, which the
    non-stream schema does not allow, so only that field is normalised before the strict check.
    """
    normalised = copy.deepcopy(chunk)
    for choice in normalised["choices"]:
        if choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    validate_openai("CreateCompletionResponse", normalised)


# --- chat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("choices", [ONE, TWO], ids=["n1", "n2"])
def test_chat_sequence_per_choice(choices: list[Choice], include_usage: bool) -> None:
    chunks = chat_stream(choices, include_usage)

    per_choice = [chunk for chunk in chunks if chunk["choices"]]
    assert len(per_choice) == 3 * len(choices)
    for position, choice in enumerate(choices):
        role, content, finish = per_choice[3 * position : 3 * position + 3]
        assert [c["choices"][0]["index"] for c in (role, content, finish)] == [choice.index] * 3
        assert role["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert content["choices"][0]["delta"] == {"content": choice.text}
        assert finish["choices"][0]["delta"] == {}
        assert [c["choices"][0]["finish_reason"] for c in (role, content, finish)] == [
            None,
            None,
            choice.finish_reason,
        ]
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1_700_000_000
        assert chunk["model"] == "demo"
        assert chunk["system_fingerprint"] == "fp_custom"
        assert len(chunk["choices"]) <= 1
        validate_openai("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize("choices", [ONE, TWO], ids=["n1", "n2"])
def test_chat_usage_chunk_is_last_with_no_choices(choices: list[Choice]) -> None:
    chunks = chat_stream(choices, include_usage=True)

    *body, last = chunks
    assert last["choices"] == []
    assert last["usage"] == usage(5, choices)
    assert all(chunk["usage"] is None for chunk in body)
    assert all(chunk["choices"] for chunk in body)


@pytest.mark.parametrize("choices", [ONE, TWO], ids=["n1", "n2"])
def test_chat_without_usage_has_no_usage_key(choices: list[Choice]) -> None:
    chunks = chat_stream(choices, include_usage=False)

    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)


def test_chat_content_reassembles_per_index() -> None:
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chat_stream(TWO, include_usage=True):
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
            if choice["finish_reason"] is not None:
                finishes[choice["index"]] = choice["finish_reason"]

    assert texts == {0: "Paris.", 1: "Paris is the capital"}
    assert finishes == {0: "stop", 1: "length"}


# --- legacy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("choices", [ONE, TWO], ids=["n1", "n2"])
def test_text_sequence_per_choice(choices: list[Choice], include_usage: bool) -> None:
    chunks = text_stream(choices, include_usage)

    per_choice = [chunk for chunk in chunks if chunk["choices"]]
    assert [(c["choices"][0]["index"], c["choices"][0]["text"]) for c in per_choice] == [
        pair for choice in choices for pair in ((choice.index, choice.text), (choice.index, ""))
    ]
    assert [c["choices"][0]["finish_reason"] for c in per_choice] == [
        reason for choice in choices for reason in (None, choice.finish_reason)
    ]
    for chunk in chunks:
        assert chunk["id"] == "cmpl-1"
        assert chunk["object"] == "text_completion"
        assert chunk["model"] == "demo"
        validate_legacy_chunk(chunk)
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == usage(5, choices)
        assert all("usage" not in chunk for chunk in chunks[:-1])
        assert len(chunks) == len(per_choice) + 1
    else:
        assert all("usage" not in chunk for chunk in chunks)
        assert len(chunks) == len(per_choice)


@pytest.mark.parametrize("include_usage", [False, True])
def test_legacy_finish_and_usage_chunks_validate_without_normalising(include_usage: bool) -> None:
    chunks = text_stream(TWO, include_usage)

    for chunk in chunks:
        if all(choice["finish_reason"] is not None for choice in chunk["choices"]):
            validate_openai("CreateCompletionResponse", chunk)


# --- framing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
def test_sse_body_round_trips_and_ends_with_done(include_usage: bool) -> None:
    chunks = chat_stream(TWO, include_usage)

    body = sse_body(chunks)

    assert body.endswith(b"data: [DONE]\n\n")
    assert body.count(b"[DONE]") == 1
    assert body.startswith(b"data: {")
    assert parse_sse(body) == [*chunks, "[DONE]"]


def test_sse_body_of_legacy_chunks_round_trips() -> None:
    chunks = text_stream(TWO, include_usage=True)

    assert parse_sse(sse_body(chunks)) == [*chunks, "[DONE]"]


def test_sse_event_framing_is_one_line_even_for_multiline_text() -> None:
    event = sse_event({"text": "a\nb\n\nc", "é": "ü"})

    assert event == 'data: {"text":"a\\nb\\n\\nc","é":"ü"}\n\n'.encode()
    assert event.count(b"\n") == 2


def test_empty_stream_is_just_done() -> None:
    assert sse_body([]) == DONE == b"data: [DONE]\n\n"


def test_error_stream_is_error_event_then_done() -> None:
    envelope = {"error": {"message": "boom", "type": "upstream_error", "param": None, "code": "x"}}

    body = error_stream(envelope)

    assert parse_sse(body) == [envelope, "[DONE]"]
    validate_openai("ErrorResponse", parse_sse(body)[0])


def test_keepalive_is_a_comment_the_parser_skips() -> None:
    assert KEEPALIVE == b": keep-alive\n\n"
    assert parse_sse(KEEPALIVE + sse_event({"a": 1}) + KEEPALIVE + DONE) == [{"a": 1}, "[DONE]"]


def test_sse_headers() -> None:
    assert SSE_MEDIA_TYPE == "text/event-stream"
    assert SSE_HEADERS == {"cache-control": "no-cache", "x-accel-buffering": "no"}
