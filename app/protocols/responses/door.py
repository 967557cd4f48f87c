"""The Responses API's door onto the shared answer path (app.serving.Door).

One door per request. It builds the finished Response object once (`response`), keeps it
with the conversation through `save` before anything of the answer goes out (`keep`, when
the request is stored), answers it as JSON, or frames it as OpenAI's event stream:
`opening` is response.created and response.in_progress, for a stream that must start before
the upstream answered; `body` is the rest (numbered from 2 after that opening) or the whole
stream; `failure` is response.failed after the opening.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from app.errors import ProxyError
from app.protocols.responses.answers import ResponseHead, input_items, started, to_response
from app.protocols.responses.events import (
    OPENING_EVENTS,
    failed_event,
    opening_events,
    output_events,
    response_events,
    sse_body,
)
from app.protocols.responses.schemas import CreateResponse
from app.protocols.responses.translate import turns_to_store
from app.streaming import KEEPALIVE

if TYPE_CHECKING:
    from app.serving import Finished

# Keeps a finished response, the conversation through it and its input items (the response
# store's `put`).
Save = Callable[[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]], Awaitable[None]]


class ResponsesDoor:
    """How one Responses request is answered (see the module's docstring)."""

    __slots__ = ("head", "request", "earlier_turns", "save", "_response")
    keepalive = KEEPALIVE

    def __init__(
        self,
        head: ResponseHead,
        request: CreateResponse,
        earlier_turns: Sequence[dict[str, Any]] | None,
        save: Save | None,
    ) -> None:
        self.head = head
        self.request = request
        self.earlier_turns = earlier_turns
        self.save = save  # None: the request is not stored
        self._response: dict[str, Any] | None = None

    @property
    def opening(self) -> bytes:
        return sse_body(opening_events(started(self.head, self.request)))

    @property
    def keep(self) -> Callable[[Finished], Awaitable[None]] | None:
        return self._keep if self.save is not None else None

    async def _keep(self, finished: Finished) -> None:
        assert self.save is not None
        response = self.response(finished)
        turns = turns_to_store(self.request, self.earlier_turns, response)
        await self.save(response, turns, input_items(self.head, self.request))

    def response(self, finished: Finished) -> dict[str, Any]:
        """The Response object for the finished generation (its one choice), built once."""
        if self._response is None:
            self._response = to_response(
                self.head,
                self.request,
                finished.choices[0],
                finished.usage,
                completed_at=int(time.time()),
            )
        return self._response

    def answer(self, finished: Finished) -> dict[str, Any]:
        return self.response(finished)

    def body(self, result: Finished, opened: bool) -> bytes:
        response = self.response(result)
        events = output_events(response, OPENING_EVENTS) if opened else response_events(response)
        return sse_body(events)

    def failure(self, error: ProxyError | None, request_id: str) -> bytes:
        if error is None:
            code: str | None = "internal_error"
            message = (
                f"The proxy hit an internal error (request id {request_id}); it has been logged."
            )
        else:
            code, message = error.code, error.message
        start = started(self.head, self.request)
        return sse_body([failed_event(start, OPENING_EVENTS, code, message)])
