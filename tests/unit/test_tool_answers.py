"""Tool calls and reasoning in OpenAI's answers and streams: the JSON answer checked against
OpenAI's published schema, the stream fed to the openai SDK's own accumulator, which must
rebuild exactly the JSON answer's message."""

from __future__ import annotations

from typing import Any

import pytest
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from app.output.types import ToolCall
from app.protocols.openai.answers import AnswerHead, to_chat_completion
from app.protocols.openai.events import chat_chunks
from app.translate import Choice, usage
from tests.openai_spec import validate_openai

HEAD = AnswerHead(id="chatcmpl-0a1b2c", created=1_700_000_000, model="demo", fingerprint="fp_x")
WEATHER = ToolCall("get_weather", '{"city":"Paris"}')
TIME = ToolCall("get_time", '{"zone":"Europe/Paris","format":"24h"}')

CASES: dict[str, list[Choice]] = {
    "one call, no text": [Choice(0, "", "tool_calls", 9, calls=[WEATHER])],
    "parallel calls after text": [
        Choice(0, "Let me look.", "tool_calls", 20, calls=[WEATHER, TIME])
    ],
    "reasoning then text": [Choice(0, "Paris.", "stop", 5, reasoning="The capital is Paris.")],
    "reasoning then a named call": [
        Choice(0, "", "stop", 12, calls=[WEATHER], reasoning="I need the weather.")
    ],
    "two choices": [
        Choice(0, "", "tool_calls", 9, calls=[WEATHER]),
        Choice(1, "No tool needed.", "stop", 4),
    ],
}


def answer(choices: list[Choice]) -> dict[str, Any]:
    return to_chat_completion(HEAD, choices, usage(30, choices))


def streamed(choices: list[Choice]) -> Any:
    """The stream's chunks as the openai SDK accumulates them."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chat_chunks(HEAD, choices, usage(30, choices)):
        validate_openai("CreateChatCompletionStreamResponse", chunk)
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


@pytest.mark.parametrize("choices", CASES.values(), ids=CASES.keys())
def test_answer_matches_openais_schema(choices: list[Choice]) -> None:
    validate_openai("CreateChatCompletionResponse", answer(choices))


def test_calls_are_openai_tool_calls_and_content_is_null_without_text() -> None:
    message = answer(CASES["one call, no text"])["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_0a1b2c0000",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]


def test_call_ids_are_unique_across_calls_and_choices() -> None:
    choices = [
        Choice(0, "", "tool_calls", 9, calls=[WEATHER, TIME]),
        Choice(1, "", "tool_calls", 9, calls=[WEATHER, TIME]),
    ]
    ids = [c["id"] for ch in answer(choices)["choices"] for c in ch["message"]["tool_calls"]]
    assert len(set(ids)) == 4
    assert all(i.startswith("call_") for i in ids)


def test_text_before_calls_stays_content() -> None:
    message = answer(CASES["parallel calls after text"])["choices"][0]["message"]
    assert message["content"] == "Let me look."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]


def test_reasoning_is_reasoning_content_and_plain_answers_have_none() -> None:
    message = answer(CASES["reasoning then text"])["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("The capital is Paris.", "Paris.")
    plain = answer([Choice(0, "Hi", "stop", 1)])["choices"][0]["message"]
    assert "reasoning_content" not in plain and "tool_calls" not in plain


@pytest.mark.parametrize("choices", CASES.values(), ids=CASES.keys())
def test_the_sdk_rebuilds_the_json_answer_from_the_stream(choices: list[Choice]) -> None:
    final = streamed(choices)
    expected = answer(choices)
    for built, wanted in zip(final.choices, expected["choices"], strict=True):
        message = wanted["message"]
        assert built.finish_reason == wanted["finish_reason"]
        assert built.message.content == message["content"]
        calls = [c.model_dump(exclude={"index"}) for c in built.message.tool_calls or []]
        for call in calls:
            call["function"].pop("parsed_arguments", None)  # the SDK's own, for strict tools
        assert calls == message.get("tool_calls", [])
        assert getattr(built.message, "reasoning_content", None) == message.get("reasoning_content")


def test_each_calls_pieces_join_to_its_exact_arguments() -> None:
    pieces: dict[int, str] = {}
    heads: dict[int, dict[str, Any]] = {}
    for chunk in chat_chunks(HEAD, CASES["parallel calls after text"], None):
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            if "id" in call:
                heads[call["index"]] = call
            else:
                assert set(call) == {"index", "function"}
            pieces[call["index"]] = pieces.get(call["index"], "") + call["function"]["arguments"]
    assert pieces == {0: WEATHER.arguments, 1: TIME.arguments}
    assert [h["function"]["name"] for h in heads.values()] == ["get_weather", "get_time"]
    assert all(h["type"] == "function" and h["id"].startswith("call_") for h in heads.values())
