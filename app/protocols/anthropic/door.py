"""The Messages API's door onto the shared serving path (app.serving.Door): a finished
generation as Anthropic's `message`, or as its stream of named events.

A stream that must start before the upstream has answered opens with `message_start` (input
tokens 0: `message_delta` brings the whole usage) and then sends `ping` every interval, as
Anthropic does while its model works; a failure after that is an in-band `event: error`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import ProxyError
from app.protocols.anthropic.answers import internal_error_body, new_message_id, to_message
from app.protocols.anthropic.events import (
    PING,
    answer_events,
    error_frame,
    message_events,
    sse_body,
    sse_frame,
    start_event,
)

if TYPE_CHECKING:
    from app.serving import Finished


class AnthropicDoor:
    """One Messages request's answer: message `message_id`, named after the `model` asked for."""

    __slots__ = ("message_id", "model", "opening")
    keepalive = PING
    keep = None

    def __init__(self, id_digits: str, model: str) -> None:
        self.message_id = new_message_id(id_digits)
        self.model = model
        self.opening = sse_frame(*start_event(self.message_id, model))

    def answer(self, finished: Finished) -> dict[str, Any]:
        return to_message(self.message_id, self.model, finished.choices[0], finished.usage)

    def body(self, finished: Finished, opened: bool) -> bytes:
        choice = finished.choices[0]
        if opened:
            return sse_body(answer_events(self.message_id, choice, finished.usage))
        return sse_body(message_events(self.message_id, self.model, choice, finished.usage))

    def failure(self, error: ProxyError | None, request_id: str) -> bytes:
        if error is None:
            return sse_frame("error", internal_error_body(request_id)[1])
        return error_frame(error, request_id)
