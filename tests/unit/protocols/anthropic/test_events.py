"""Anthropic's stream: named SSE events the anthropic SDK's MessageStream accumulates into
exactly the non-streamed message; pings ignored; a failure after the start raised."""

from __future__ import annotations

import json

import anthropic
import pytest

from app.errors import UpstreamTimeout
from app.protocols.anthropic.answers import to_message
from app.protocols.anthropic.events import (
    PING,
    answer_events,
    error_frame,
    json_pieces,
    message_events,
    sse_body,
    sse_frame,
    start_event,
)
from app.translate import Choice
from tests.unit.protocols.anthropic.cases import CHOICES, IDS, USAGE, WEATHER_ARGS
from tests.unit.protocols.anthropic.conftest import Answer

MESSAGE_ID = "msg_00ff"
ASK = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("piece", [1, 8, 512])
@pytest.mark.parametrize(("choice", "stop"), [c[1:] for c in CHOICES], ids=IDS)
def test_the_sdk_rebuilds_exactly_the_json_answer(
    choice: Choice, stop: str | None, piece: int, sdk_answering: Answer
) -> None:
    events = message_events(MESSAGE_ID, "claude-x", choice, USAGE, piece=piece)
    body = PING + sse_body(events[:1]) + PING + sse_body(events[1:])
    client = sdk_answering(body, 200, "text/event-stream")
    with client.messages.stream(**ASK) as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.to_dict() == to_message(MESSAGE_ID, "claude-x", choice, USAGE)
    assert final.stop_sequence == stop
    assert seen[0] == "message_start" and seen[-1] == "message_stop"


@pytest.mark.parametrize(("choice", "stop"), [c[1:] for c in CHOICES], ids=IDS)
def test_an_early_start_with_no_counts_still_rebuilds_the_answer(
    choice: Choice, stop: str | None, sdk_answering: Answer
) -> None:
    """message_start sent before the upstream answered (then pings while it works)."""
    early = start_event(MESSAGE_ID, "claude-x")
    body = sse_body([early]) + PING + PING + sse_body(answer_events(MESSAGE_ID, choice, USAGE))
    with sdk_answering(body, 200, "text/event-stream").messages.stream(**ASK) as stream:
        final = stream.get_final_message()
    assert final.to_dict() == to_message(MESSAGE_ID, "claude-x", choice, USAGE)
    assert final.stop_sequence == stop


def test_the_event_sequence_and_indexes() -> None:
    choice = CHOICES[5][1]
    events = message_events(MESSAGE_ID, "claude-x", choice, USAGE, piece=10_000)
    assert [(name, payload.get("index")) for name, payload in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),  # thinking_delta
        ("content_block_delta", 0),  # signature_delta
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_delta", 3),
        ("content_block_stop", 3),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert all(payload["type"] == name for name, payload in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] == 21
    assert events[9][1]["delta"] == {"type": "input_json_delta", "partial_json": WEATHER_ARGS}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None, "stop_details": None},
        "usage": {
            "input_tokens": 21,
            "output_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_input_json_pieces_join_to_the_calls_exact_arguments() -> None:
    choice = CHOICES[4][1]
    events = message_events(MESSAGE_ID, "claude-x", choice, USAGE, piece=8)
    parts = [p["delta"]["partial_json"] for n, p in events if n == "content_block_delta"]
    assert len(parts) > 2 and "".join(parts) == WEATHER_ARGS


@pytest.mark.parametrize(
    "text",
    [WEATHER_ARGS, "{}", '{"a":",,,\\",","b":[1,2]}', '{"s":"\\\\","t":"x, y"}', "[1,2,3]"],
)
def test_json_pieces_cut_only_after_commas_outside_strings(text: str) -> None:
    for size in (1, 3, 100):
        pieces = json_pieces(text, size)
        assert "".join(pieces) == text
        cut = 0
        for piece in pieces[:-1]:
            cut += len(piece)
            # A space after a comma between values changes nothing; inside a string it would.
            assert piece.endswith(",")
            assert json.loads(text[:cut] + " " + text[cut:]) == json.loads(text)
    assert json_pieces('{"a":",,,\\",","b":[1,2]}', 1) == ['{"a":",,,\\",",', '"b":[1,', "2]}"]


def test_frames_carry_an_event_line() -> None:
    assert sse_frame("message_stop", {"type": "message_stop"}) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert PING == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_a_failure_after_the_start_is_raised_by_the_sdk(sdk_answering: Answer) -> None:
    events = message_events(MESSAGE_ID, "claude-x", CHOICES[0][1], USAGE)
    frame = error_frame(UpstreamTimeout("the model took too long"), request_id="req_7")
    assert frame.startswith(b"event: error\ndata: ")
    client = sdk_answering(sse_body(events[:1]) + PING + frame, 200, "text/event-stream")
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.stream(**ASK) as stream:
        stream.get_final_message()
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "the model took too long"},
        "request_id": "req_7",
    }
    assert json.loads(frame.split(b"data: ", 1)[1]) == caught.value.body
