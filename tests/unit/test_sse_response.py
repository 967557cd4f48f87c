"""KeepAliveSSE driven as an ASGI app: one write when fast, keep-alives when slow, errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from app.disconnect import CONNECTION, WATCH_AFTER_SECONDS, ClientConnection
from app.errors import UpstreamBadResponse
from app.sse_response import KeepAliveSSE
from app.streaming import DONE, KEEPALIVE
from app.telemetry import RequestRecord, Telemetry

BODY = b'data: {"x": 1}\n\n' + DONE


class Channel:
    """The server side of one ASGI exchange: what the app sent, and a disconnect to trigger."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.keepalive_seen = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message.get("body") == KEEPALIVE:
            self.keepalive_seen.set()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])


async def run(answer: KeepAliveSSE, channel: Channel, record: RequestRecord | None = None) -> None:
    scope: dict[str, Any] = {"type": "http"}
    if record is not None:
        scope["record"] = record
    await answer(scope, channel.receive, channel.send)


def new_record() -> RequestRecord:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
    record = Telemetry().start(scope, "r")
    assert record is not None
    return record


async def test_a_fast_answer_is_one_write_with_a_length() -> None:
    async def produce() -> bytes:
        return BODY

    channel = Channel()
    await run(KeepAliveSSE(produce, interval=10, request_id="r1"), channel)
    assert channel.body == BODY
    assert channel.headers[b"content-length"] == str(len(BODY)).encode()
    assert channel.headers[b"content-type"].startswith(b"text/event-stream")
    assert channel.headers[b"cache-control"] == b"no-cache"
    assert channel.headers[b"x-accel-buffering"] == b"no"
    assert len(channel.sent) == 2


async def test_a_fast_failure_is_raised_before_anything_is_sent() -> None:
    async def produce() -> bytes:
        raise UpstreamBadResponse("broken")

    channel = Channel()
    with pytest.raises(UpstreamBadResponse):
        await run(KeepAliveSSE(produce, interval=10, request_id="r2"), channel)
    assert channel.sent == []


async def test_a_slow_answer_gets_keepalives_first() -> None:
    channel = Channel()

    async def produce() -> bytes:
        await channel.keepalive_seen.wait()  # answer only once a keep-alive went out
        return BODY

    await run(KeepAliveSSE(produce, interval=0.01, request_id="r3"), channel)
    assert channel.body.startswith(KEEPALIVE)
    assert channel.body.endswith(BODY)
    assert b"content-length" not in channel.headers
    assert channel.sent[-1]["more_body"] is False


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UpstreamBadResponse("GPU on fire"), "bad_upstream_response"),
        (RuntimeError("bug"), "internal_error"),
    ],
)
async def test_a_failure_after_the_stream_started_is_in_band(
    error: Exception, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    channel = Channel()

    async def produce() -> bytes:
        await channel.keepalive_seen.wait()
        raise error

    with caplog.at_level(logging.INFO, logger="app.serving"):
        await run(KeepAliveSSE(produce, interval=0.01, request_id="r4"), channel)
    events = [part for part in channel.body.split(b"\n\n") if part.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    envelope = orjson.loads(events[-2][len(b"data: ") :])
    assert envelope["error"]["code"] == code
    assert "r4" in caplog.text


async def test_a_client_that_goes_away_cancels_the_upstream_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = Channel()
    cancelled = asyncio.Event()

    async def produce() -> bytes:
        await channel.keepalive_seen.wait()
        channel.disconnected.set()
        try:
            await asyncio.Event().wait()  # an upstream that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return BODY

    record = new_record()
    record.response_started(200)  # as the middleware notes the keep-alives' headers
    with caplog.at_level(logging.INFO, logger="app.serving"):
        await run(KeepAliveSSE(produce, interval=0.01, request_id="r5"), channel, record)
    assert cancelled.is_set()
    assert "client closed the stream; upstream request cancelled (request r5)" in caplog.text
    assert not channel.body.endswith(DONE)
    assert record.status == 499


async def test_a_client_that_leaves_before_anything_was_sent_cancels_the_upstream_call() -> None:
    # The first keep-alive is 10 s away; the client is watched from WATCH_AFTER_SECONDS on.
    channel = Channel()
    channel.disconnected.set()  # gone from the start
    cancelled_after: list[float] = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def produce() -> bytes:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled_after.append(loop.time() - began)
            raise
        return BODY

    record = new_record()
    await run(KeepAliveSSE(produce, interval=10, request_id="r6"), channel, record)
    assert channel.sent == []
    assert record.status == 499
    (after,) = cancelled_after
    assert WATCH_AFTER_SECONDS <= after < 1.0


async def test_an_answer_that_comes_while_the_client_is_watched_is_one_write() -> None:
    # Past WATCH_AFTER_SECONDS but before the first keep-alive: the watch stops, nothing was
    # sent yet, so the answer still goes out whole with its length.
    channel = Channel()
    watched = asyncio.Event()

    async def receive() -> dict[str, Any]:
        watched.set()
        return await channel.receive()

    async def produce() -> bytes:
        await watched.wait()
        return BODY

    answer = KeepAliveSSE(produce, interval=10, request_id="r7")
    await answer({"type": "http"}, receive, channel.send)
    assert channel.body == BODY
    assert channel.headers[b"content-length"] == str(len(BODY)).encode()
    assert len(channel.sent) == 2


async def test_a_stream_on_a_told_connection_is_cancelled_when_it_is_lost() -> None:
    # The proxy's protocol tells the connection's loss (app.disconnect): receive() is never
    # waited on, and the upstream call is cancelled at once, long before WATCH_AFTER_SECONDS.
    channel, connection = Channel(), ClientConnection()
    receives = 0
    working, cancelled = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal receives
        receives += 1
        return await channel.receive()

    async def produce() -> bytes:
        working.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return BODY

    record = new_record()
    scope = {"type": "http", "record": record, CONNECTION: connection}
    answer = KeepAliveSSE(produce, interval=10, request_id="r8")
    served = asyncio.create_task(answer(scope, receive, channel.send))
    await working.wait()
    assert len(connection) == 1
    connection.connection_lost()
    await served
    assert cancelled.is_set()
    assert record.status == 499
    assert channel.sent == [] and receives == 0


class NamedFraming:
    """A front door whose stream opens with a named event and pings (as Anthropic's does)."""

    opening = b"event: start\ndata: {}\n\n"
    keepalive = b"event: ping\ndata: {}\n\n"

    def body(self, result: str, opened: bool) -> bytes:
        head = b"" if opened else self.opening
        return head + b"event: answer\ndata: " + orjson.dumps(result) + b"\n\n"

    def failure(self, error: Exception | None, request_id: str) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(str(error or request_id)) + b"\n\n"


class NamedChannel(Channel):
    async def send(self, message: dict[str, Any]) -> None:
        await super().send(message)
        if message.get("body") == NamedFraming.keepalive:
            self.keepalive_seen.set()


async def test_a_framing_names_the_fast_streams_events() -> None:
    async def produce() -> str:
        return "hi"

    channel = NamedChannel()
    await run(KeepAliveSSE(produce, interval=10, request_id="r9", framing=NamedFraming()), channel)
    assert channel.body == NamedFraming.opening + b'event: answer\ndata: "hi"\n\n'


async def test_a_slow_stream_opens_with_the_framings_opening_then_its_keepalives() -> None:
    channel = NamedChannel()

    async def produce() -> str:
        await channel.keepalive_seen.wait()
        return "hi"

    answer = KeepAliveSSE(produce, interval=0.01, request_id="r10", framing=NamedFraming())
    await run(answer, channel)
    opening_and_ping = NamedFraming.opening + NamedFraming.keepalive
    assert channel.body.startswith(opening_and_ping)
    assert channel.body.count(NamedFraming.opening) == 1  # not repeated in the body
    assert channel.body.endswith(NamedFraming.keepalive + b'event: answer\ndata: "hi"\n\n')


async def test_a_framings_in_band_failure_after_the_stream_opened() -> None:
    channel = NamedChannel()

    async def produce() -> str:
        await channel.keepalive_seen.wait()
        raise UpstreamBadResponse("GPU on fire")

    answer = KeepAliveSSE(produce, interval=0.01, request_id="r11", framing=NamedFraming())
    await run(answer, channel)
    assert channel.body.startswith(NamedFraming.opening)
    assert channel.body.endswith(b'event: error\ndata: "GPU on fire"\n\n')
