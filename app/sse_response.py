"""The ASGI response for a synthesised SSE stream, with keep-alives only when they are needed.

The custom endpoint answers all at once, so the stream exists only once the upstream has
answered. Most answers come before the first keep-alive is due; for them this response costs
one coarse timer (app.coarse_timers; a loop timer here cost 5-8 % of the streamed rps in A/B
pairs): the upstream call runs in the request's own task, and the events go out as one body
with a Content-Length. Only when the timer fires does a helper task start the stream, send
`: keep-alive` comments every interval and watch for the client going away (which cancels the
upstream call). A failure before the stream started is raised, so the client gets a real HTTP
error; after, it goes out in-band as `data: {"error": ...}` and `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from app.coarse_timers import coarse_timers
from app.errors import ProxyError, internal_error_envelope
from app.streaming import KEEPALIVE, SSE_HEADERS, SSE_MEDIA_TYPE, error_stream

log = logging.getLogger("app.serving")

_HEADERS = [
    (b"content-type", f"{SSE_MEDIA_TYPE}; charset=utf-8".encode()),
    *((name.encode(), value.encode()) for name, value in SSE_HEADERS.items()),
]


class KeepAliveSSE:
    """Await `produce()` for the stream's bytes; keep the connection alive while it works."""

    def __init__(
        self, produce: Callable[[], Awaitable[bytes]], *, interval: float, request_id: str
    ) -> None:
        self.produce = produce
        self.interval = interval
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        keepalive = _KeepAlive(send, receive, self.interval, task)
        timer = coarse_timers(loop).call_later(self.interval, keepalive.start)
        try:
            body = await self.produce()
        except ProxyError as exc:
            if not keepalive.started:
                raise  # nothing sent yet: a real HTTP error
            log.warning(
                "upstream error after the stream started: %s (request %s)",
                exc.message,
                self.request_id,
            )
            body = error_stream(exc.envelope())
        except Exception:
            if not keepalive.started:
                raise  # the app's 500 handler answers it
            log.exception("error after the stream started (request %s)", self.request_id)
            body = error_stream(internal_error_envelope(self.request_id))
        except asyncio.CancelledError:
            if not keepalive.client_gone:
                raise
            task.uncancel()
            log.info(
                "client closed the stream; upstream request cancelled (request %s)",
                self.request_id,
            )
            record = scope.get("record")
            if record is not None:
                record.client_gone = True
            return
        finally:
            timer.cancel()
        if keepalive.started:
            await keepalive.stop()
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


class _KeepAlive:
    """Starts the stream and sends keep-alives until stopped; cancels the producer on disconnect."""

    def __init__(
        self, send: Send, receive: Receive, interval: float, producer: asyncio.Task[object]
    ) -> None:
        self._send = send
        self._receive = receive
        self._interval = interval
        self._producer = producer
        self._stopping: asyncio.Event | None = None  # made when started: most streams never are
        self._task: asyncio.Task[None] | None = None
        self.started = False
        self.client_gone = False

    def start(self) -> None:
        self.started = True
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(self._stopping))

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self, stop: asyncio.Event) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        disconnect = asyncio.ensure_future(self._wait_for_disconnect())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                await self._send(
                    {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}
                )
                done, _ = await asyncio.wait(
                    (disconnect, stopping), timeout=self._interval, return_when="FIRST_COMPLETED"
                )
                if stopping in done:
                    return
                if disconnect in done:
                    self.client_gone = True
                    self._producer.cancel()
                    return
        finally:
            for waiter in (disconnect, stopping):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    async def _wait_for_disconnect(self) -> Message:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return message
