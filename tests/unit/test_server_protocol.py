"""CoalescingTransport: what one event-loop step writes reaches the socket in one write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from app.server_protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from tests.recording_transport import RecordingTransport
from tests.waiting import next_step, until

HEADERS = [(b"content-length", b"2"), (b"content-type", b"text/plain")]


async def test_writes_of_one_step_go_out_as_one() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"hi")
    assert inner.writes == []
    assert transport.get_write_buffer_size() == 40
    await next_step()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]


async def test_writes_of_later_steps_are_not_held_back() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    await next_step()
    transport.writelines([b"event 1", bytearray(b"event 2")])
    await next_step()
    transport.write(memoryview(b"event 3"))
    await next_step()
    assert inner.writes == [b"head", b"event 1event 2", b"event 3"]


async def test_close_sends_what_is_held_first() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last answer")
    transport.close()
    assert inner.writes == [b"last answer"]
    assert transport.is_closing()  # the inner transport's own answer
    await next_step()
    assert inner.writes == [b"last answer"]  # the step's flush finds nothing left


async def test_abort_drops_what_is_held() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await next_step()
    assert inner.writes == []
    assert inner.aborted


async def test_nothing_is_written_to_a_closing_transport() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"too late")
    inner.closing = True  # the peer went away during the step
    await next_step()
    assert inner.writes == []


async def test_other_attributes_are_the_transports() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 9)
    assert transport.get_extra_info("sockname", "none") == "none"


async def answer_once(inner: RecordingTransport, server_state: ServerState) -> list[list[bytes]]:
    """One request through the protocol; what the socket had been given when the app, in the
    step of its last send, went on to its work after answering (the access log)."""
    seen_when_answered: list[list[bytes]] = []
    done = asyncio.Event()

    def answered() -> None:
        seen_when_answered.append(list(inner.writes))
        done.set()

    protocol = serving_protocol(inner, server_state=server_state, answered=answered)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
    await done.wait()
    await asyncio.sleep(0)  # the end of the step
    protocol.connection_lost(None)
    return seen_when_answered


ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nhi"


async def test_the_only_request_is_answered_before_the_app_goes_on() -> None:
    """Status line, headers and body in one write, made before the app's work after answering
    runs: with nothing else in the works, the answer does not wait for the end of the step."""
    inner = RecordingTransport()
    assert await answer_once(inner, ServerState()) == [[ANSWER]]
    assert inner.writes == [ANSWER]


async def test_under_load_the_answer_goes_out_at_the_end_of_the_step() -> None:
    inner = RecordingTransport()
    busy = ServerState()
    other = asyncio.create_task(asyncio.sleep(60))  # another request in the works
    busy.tasks.add(other)
    try:
        assert await answer_once(inner, busy) == [[]]
    finally:
        other.cancel()
    assert inner.writes == [ANSWER]  # still one write, at the end of the step


def serving_protocol(
    inner: RecordingTransport,
    *,
    server_state: ServerState | None = None,
    answered: Callable[[], None] | None = None,
    **config: Any,
) -> CoalescingHttpToolsProtocol:
    """A protocol on `inner` whose app answers every request with HEADERS and "hi", then calls
    `answered` (in the step of its last send)."""

    async def app(_scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"hi"})
        if answered is not None:
            answered()

    settings = uvicorn.Config(app, lifespan="off", date_header=False, server_header=False, **config)
    protocol = CoalescingHttpToolsProtocol(
        config=settings,
        server_state=ServerState() if server_state is None else server_state,
        app_state={},
        _loop=asyncio.get_running_loop(),
    )
    protocol.connection_made(inner)
    return protocol


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    inner = RecordingTransport()
    protocol = serving_protocol(inner, timeout_keep_alive=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()  # the timer starts once the answer is out: later than this
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
    await until(lambda: inner.writes)
    assert not inner.closing
    await until(lambda: inner.closing)
    assert loop.time() - began >= 0.05 - 1e-6


async def test_a_new_request_stops_the_keep_alive_timer() -> None:
    inner = RecordingTransport()
    protocol = serving_protocol(inner, timeout_keep_alive=5)
    request = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"
    protocol.data_received(request)
    await until(lambda: protocol.timeout_keep_alive_task is not None)
    protocol.data_received(request)
    assert protocol.timeout_keep_alive_task is None
    await until(lambda: protocol.timeout_keep_alive_task is not None)  # armed anew, answered
    assert b"".join(inner.writes) == ANSWER * 2
    assert not inner.closing


async def test_pipelined_requests_are_all_answered_in_order() -> None:
    inner = RecordingTransport()
    protocol = serving_protocol(inner)
    protocol.data_received(
        b"GET /1 HTTP/1.1\r\nhost: test\r\n\r\nGET /2 HTTP/1.1\r\nhost: test\r\n\r\n"
    )
    await until(lambda: len(b"".join(inner.writes)) == 2 * len(ANSWER))
    assert b"".join(inner.writes) == ANSWER * 2
    protocol.connection_lost(None)
