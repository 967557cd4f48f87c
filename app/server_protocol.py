"""uvicorn's httptools protocol, with a response's writes sent in one system call.

uvicorn writes an answer's status line and headers as soon as the app sends
`http.response.start`, and its body when the app sends `http.response.body`: two `send()`
system calls for every answer, though the proxy sends both messages in the same step of the
event loop. On loopback each call costs about as much as the proxy's whole translation, and
the client may be woken twice. `CoalescingTransport` keeps what is written during one step of
the event loop and writes it in one call at the end of the step (app.held_writes: or sooner,
when enough other writes wait) — or, when the server has no other request in the works, as
soon as the answer is complete, so that it does not wait for the app's work after it (the
access log, the metrics). Nothing is held any longer: a stream's headers and each of its events
still go out as soon as they are sent.

The keep-alive timer that uvicorn arms after every answer (and cancels when the next request
comes) is a coarse one here (app.coarse_timers): it may close an idle connection up to 10 ms
after `timeout_keep_alive`, at a fraction of a loop timer's cost.

Every request's scope carries its connection's `ClientConnection` (app.disconnect), told when
the connection is lost: a request's work is cancelled then, with no task or timer of its own
watching for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.coarse_timers import coarse_timers
from app.disconnect import CONNECTION, ClientConnection
from app.held_writes import held_writes


class CoalescingTransport:
    """Wraps a transport; writes made in one event-loop step go out together, in order."""

    __slots__ = ("_transport", "_held", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._held = held_writes(loop)
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [bytes(data)]
            self._held.hold(self.flush)
        else:
            pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what is held now (the end of the step does this by itself)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if self._transport.is_closing():
            return  # the connection is gone: nobody will read it
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def is_closing(self) -> bool:  # asked several times per request: not via __getattr__
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        held = sum(map(len, self._pending)) if self._pending else 0
        return held + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, pause_reading, … : the transport's own.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a CoalescingTransport (`uvicorn.run(http=…)`), with a
    coarse keep-alive timer, telling its requests when their client's connection is lost."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Reads are paused and resumed on the transport itself (uvicorn's FlowControl keeps it).
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self._timers = coarse_timers(self.loop)
        self.client_connection = ClientConnection()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[CONNECTION] = self.client_connection  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.client_connection.connection_lost()

    def on_response_complete(self) -> None:
        # The answer is whole. When it is the only request in the works, send it now rather than
        # at the end of the step, so that it does not wait for what the app does after answering
        # (the access log, the metrics). Under load, writing at the end of the step is cheaper:
        # the clients' next requests then come in fewer, fuller turns of the event loop.
        transport = self.transport
        if isinstance(transport, CoalescingTransport) and len(self.server_state.tasks) <= 1:
            transport.flush()
        # The rest is uvicorn's own (as of 0.54), with the keep-alive timer made coarse.
        self.server_state.total_requests += 1
        if transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waits: start it
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.timeout_keep_alive_task = self._timers.call_later(  # type: ignore[assignment]
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
