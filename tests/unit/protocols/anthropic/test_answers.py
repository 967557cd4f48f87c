"""Anthropic `message` answers checked by the anthropic SDK's own types, and error bodies
with the statuses and types its client maps to its exceptions."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse

from app import errors
from app.protocols.anthropic.answers import error_body, internal_error_body, to_message
from app.translate import Choice
from tests.unit.protocols.anthropic.cases import CHOICES, IDS, USAGE, WEATHER_ARGS
from tests.unit.protocols.anthropic.conftest import Answer

MESSAGE_ID = "msg_0123abcd"


@pytest.mark.parametrize(("choice", "stop"), [c[1:] for c in CHOICES], ids=IDS)
def test_the_answer_is_a_valid_sdk_message(choice: Choice, stop: str | None) -> None:
    body = to_message(MESSAGE_ID, "claude-x", choice, USAGE)
    message = Message.model_validate(body)
    assert message.to_dict() == body  # every field known to the SDK, none lost
    assert (message.usage.input_tokens, message.usage.output_tokens) == (21, 9)
    assert message.stop_sequence == stop


def test_blocks_come_as_thinking_text_tool_use_with_unique_ids() -> None:
    choice = CHOICES[5][1]
    body = to_message(MESSAGE_ID, "claude-x", choice, USAGE)
    assert [block["type"] for block in body["content"]] == [
        "thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    calls = body["content"][2:]
    assert [call["id"] for call in calls] == ["toolu_0123abcd00", "toolu_0123abcd01"]
    assert calls[0]["input"] == json.loads(WEATHER_ARGS) and calls[1]["input"] == {}
    assert body["content"][0] == {"type": "thinking", "thinking": choice.reasoning, "signature": ""}
    assert body["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("index", "reason", "blocks"),
    [
        (0, "end_turn", [{"type": "text", "text": "Sunny, 18C."}]),
        (1, "max_tokens", [{"type": "text", "text": "Sunny, 18"}]),
        (2, "end_turn", [{"type": "text", "text": ""}]),
        (3, "stop_sequence", [{"type": "text", "text": "Sunny"}]),
        (4, "tool_use", None),
    ],
)
def test_stop_reasons_and_text_blocks(index: int, reason: str, blocks: list[object] | None) -> None:
    _name, choice, stop = CHOICES[index]
    body = to_message(MESSAGE_ID, "claude-x", choice, USAGE)
    assert body["stop_reason"] == reason
    if blocks is not None:
        assert body["content"] == blocks
    else:  # a call and no text: no empty text block
        assert [block["type"] for block in body["content"]] == ["tool_use"]


def test_an_empty_thought_makes_no_thinking_block() -> None:
    body = to_message(MESSAGE_ID, "claude-x", Choice(0, "Hi", "stop", 1, reasoning=""), USAGE)
    assert body["content"] == [{"type": "text", "text": "Hi"}]


# (error, status, Anthropic's type, the SDK's exception)
ERROR_CASES = [
    (
        errors.InvalidRequest("bad", param="messages"),
        400,
        "invalid_request_error",
        anthropic.BadRequestError,
    ),
    (
        errors.UnsupportedParameter("no images", param="messages[0].content[1].type"),
        400,
        "invalid_request_error",
        anthropic.BadRequestError,
    ),
    (
        errors.AuthenticationFailed("no key"),
        401,
        "authentication_error",
        anthropic.AuthenticationError,
    ),
    (
        errors.PermissionDenied("not yours"),
        403,
        "permission_error",
        anthropic.PermissionDeniedError,
    ),
    (errors.ModelNotFound("no model"), 404, "not_found_error", anthropic.NotFoundError),
    (errors.PayloadTooLarge("too big"), 413, "request_too_large", anthropic.ContentTooLargeError),
    (
        errors.RateLimited("slow down", retry_after=2),
        429,
        "rate_limit_error",
        anthropic.RateLimitError,
    ),
    (errors.UpstreamRateLimited("upstream 429"), 429, "rate_limit_error", anthropic.RateLimitError),
    (errors.ProxyError("boom"), 500, "api_error", anthropic.InternalServerError),
    (errors.Overloaded("queue full"), 529, "overloaded_error", anthropic.OverloadedError),
    (errors.UpstreamBadResponse("garbage"), 502, "api_error", anthropic.InternalServerError),
    (errors.InvalidModelOutput("not json"), 502, "api_error", anthropic.InternalServerError),
    (errors.UpstreamUnavailable("down"), 503, "api_error", anthropic.ServiceUnavailableError),
    (errors.LimitsUnavailable("redis down"), 503, "api_error", anthropic.ServiceUnavailableError),
    (errors.UpstreamTimeout("slow"), 504, "timeout_error", anthropic.GatewayTimeoutError),
]


@pytest.mark.parametrize(("exc", "status", "type_", "raised"), ERROR_CASES)
def test_errors_in_anthropics_envelope_raise_the_sdks_exception(
    exc: errors.ProxyError, status: int, type_: str, raised: type[Exception], sdk_answering: Answer
) -> None:
    got_status, body = error_body(exc, request_id="req_1")
    assert (got_status, body["error"]["type"]) == (status, type_)
    if type_ != "request_too_large":  # Anthropic's documented 413 type; the SDK has no model of it
        assert ErrorResponse.model_validate(body).to_dict() == body
    client = sdk_answering(json.dumps(body).encode(), got_status, "application/json")
    with pytest.raises(raised) as caught:
        client.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == status and caught.value.body == body


def test_the_message_names_the_param_once() -> None:
    _, named = error_body(errors.InvalidRequest("must be an object", param="tools[0].input_schema"))
    assert named["error"]["message"] == "tools[0].input_schema: must be an object"
    _, already = error_body(errors.InvalidRequest("'tool_choice' is bad", param="tool_choice"))
    assert already["error"]["message"] == "'tool_choice' is bad"


def test_an_internal_error_gives_the_request_id_and_no_details() -> None:
    status, body = internal_error_body("req_9")
    assert (
        status == 500
        and body["error"]["type"] == "api_error"
        and "req_9" in body["error"]["message"]
    )
    assert body["request_id"] == "req_9"
