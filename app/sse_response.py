"""The ASGI response for a synthesised SSE stream, with keep-alives only when they are needed.

The custom endpoint answers all at once, so the stream exists only once the upstream has
answered. Most answers come before the first keep-alive is due; for them this response costs
one coarse timer (app.coarse_timers; a loop timer here cost 5-8 % of the streamed rps in A/B
pairs): the upstream call runs in the request's own task, and the events go out as one body with
a Content-Length. Only when the timer fires, once the keep-alive interval has passed, does a
helper task start, which starts the stream and sends `: keep-alive` comments every interval.
A client going away is watched as for any request (app.disconnect): it cancels the upstream
call, whether or not anything was sent yet, and the request is logged and counted as 499.
A failure before the stream started is raised, so the client gets a real HTTP error; after, it
goes out in-band, framed by the front door's `Framing`.

Each front door frames its stream its own way (`Framing`): OpenAI's chat and completions send
`: keep-alive` comments and an in-band `data: {"error": ...}` then `data: [DONE]` (`DATA_FRAMING`,
where the producer gives the finished bytes); Anthropic's Messages opens with `message_start`
and pings; the Responses API opens with `response.created`. `opening` goes out when the stream
starts before the answer is known, and `body(result, opened)` then leaves out what it said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from starlette.types import Receive, Scope, Send

from app.coarse_timers import coarse_timers
from app.disconnect import WATCH_AFTER_SECONDS, DisconnectWatch, client_connection
from app.errors import ProxyError, internal_error_envelope
from app.streaming import KEEPALIVE, SSE_HEADERS, SSE_MEDIA_TYPE, error_stream

log = logging.getLogger("app.serving")

_HEADERS = [
    (b"content-type", f"{SSE_MEDIA_TYPE}; charset=utf-8".encode()),
    *((name.encode(), value.encode()) for name, value in SSE_HEADERS.items()),
]


Result = TypeVar("Result")
Result_contra = TypeVar("Result_contra", contravariant=True)


class Framing(Protocol[Result_contra]):
    """How one client API frames a synthesised stream (see the module's docstring)."""

    @property
    def opening(self) -> bytes:
        """Sent first when the stream starts before the answer is known (may be empty)."""

    @property
    def keepalive(self) -> bytes:
        """Sent every interval while the answer is awaited."""

    def body(self, result: Result_contra, opened: bool) -> bytes:
        """The stream's events for a result: all of them, or (`opened`) those after `opening`."""

    def failure(self, error: ProxyError | None, request_id: str) -> bytes:
        """The in-band error once the stream has started; None: an internal error, logged."""


class DataFraming:
    """OpenAI's chat and completions streams: the producer gives the finished `data:` events."""

    __slots__ = ()
    opening = b""
    keepalive = KEEPALIVE

    def body(self, result: bytes, opened: bool) -> bytes:  # noqa: ARG002  # bytes either way
        return result

    def failure(self, error: ProxyError | None, request_id: str) -> bytes:
        envelope = error.envelope() if error is not None else internal_error_envelope(request_id)
        return error_stream(envelope)


DATA_FRAMING = DataFraming()


class KeepAliveSSE(Generic[Result]):
    """Await `produce()` for the stream's result; keep the connection alive while it works, and
    stop working when the client leaves. `framing` makes the bytes (DATA_FRAMING: the result
    is the bytes)."""

    def __init__(
        self,
        produce: Callable[[], Awaitable[Result]],
        *,
        interval: float,
        request_id: str,
        framing: Framing[Result] = DATA_FRAMING,  # type: ignore[assignment]
    ) -> None:
        self.produce = produce
        self.interval = interval
        self.request_id = request_id
        self.framing = framing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        interval = self.interval
        framing = self.framing
        keepalive = _KeepAlive(send, interval, framing.opening, framing.keepalive)
        timer = coarse_timers(task.get_loop()).call_later(interval, keepalive.start)
        after = WATCH_AFTER_SECONDS if interval > WATCH_AFTER_SECONDS else interval
        failure: Exception | None = None
        result: Result | None = None
        with DisconnectWatch(receive, client_connection(scope), after=after) as watch:
            try:
                result = await self.produce()
            except asyncio.CancelledError:
                keepalive.cancel()
                if not watch.client_gone:
                    raise
                task.uncancel()
                log.info(
                    "client closed the stream; upstream request cancelled (request %s)",
                    self.request_id,
                )
                record = scope.get("record")
                if record is not None:
                    record.client_left()
                return
            except Exception as exc:
                failure = exc
            finally:
                timer.cancel()
        if keepalive.task is not None:  # after the watch: a client leaving now cancels nothing
            await keepalive.stop()
        try:
            body = self._closing(keepalive.started, result, failure)
        finally:
            failure = None  # its traceback holds this frame: no cycle through the local
        if keepalive.started:
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _closing(self, opened: bool, result: Result | None, failure: Exception | None) -> bytes:
        """What the stream ends with: the result's events, or once it has `opened`, the error
        in-band. A failure before anything was sent is raised: a real HTTP error (or the app's
        500 handler)."""
        try:
            if failure is not None:
                raise failure
            return self.framing.body(result, opened)  # type: ignore[arg-type]  # set: no failure
        except Exception as exc:
            if not opened:
                raise
            return self._in_band(exc)

    def _in_band(self, exc: Exception) -> bytes:
        """The error event for a failure after the stream started."""
        if isinstance(exc, ProxyError):
            log.warning(
                "upstream error after the stream started: %s (request %s)",
                exc.message,
                self.request_id,
            )
            return self.framing.failure(exc, self.request_id)
        log.error("error after the stream started (request %s)", self.request_id, exc_info=exc)
        return self.framing.failure(None, self.request_id)


class _KeepAlive:
    """Once started, starts the stream (its headers, then `opening`) and sends `keepalive`
    every `interval` s until stopped."""

    __slots__ = ("_send", "_interval", "_opening", "_keepalive", "_stopping", "task", "started")

    def __init__(self, send: Send, interval: float, opening: bytes, keepalive: bytes) -> None:
        self._send = send
        self._interval = interval
        self._opening = opening
        self._keepalive = keepalive
        self._stopping: asyncio.Event | None = None  # made when started: most streams never are
        self.task: asyncio.Task[None] | None = None
        self.started = False  # the stream's headers went out

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(self._stopping))

    async def stop(self) -> None:
        """Stop after the message being sent, if any; `started` is final from then on."""
        if self._stopping is not None and self.task is not None:
            self._stopping.set()
            await self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():  # the producer may have finished since the timer fired
            if not self.started:
                self.started = True
                await self._send(
                    {"type": "http.response.start", "status": 200, "headers": _HEADERS}
                )
                if self._opening:
                    body = {"type": "http.response.body", "body": self._opening, "more_body": True}
                    await self._send(body)
            body = {"type": "http.response.body", "body": self._keepalive, "more_body": True}
            await self._send(body)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
