"""app.http_client against real servers on 127.0.0.1: the wire, bodies, keep-alive, limits, TLS.

Each test scripts an `Upstream`: a server whose handler reads each request and writes exactly
the bytes the test wants, so the wire is under the test's control. The server counts the
connections it accepts; that is how connection reuse is observed from outside the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from app import http_client
from app.cli import raise_open_file_limit
from app.http_client import HTTPPool, prepare_post
from app.http_errors import ConnectFailed, ConnectionBroken, HTTPClientError, ResponseTooLarge
from app.http_origin import Origin
from app.http_slots import Slots
from tests.recording_transport import RecordingTransport
from tests.scripted_upstream import (
    Handler,
    Peer,
    ServeFactory,
    Upstream,
    answer,
    held,
    refused_port,
    reply,
)

pytestmark = pytest.mark.timeout(10)


async def post(pool: HTTPPool, server: Upstream, body: bytes = b"{}") -> http_client.Response:
    return await pool.post(server.target(), b"", body)


async def post_expiring_once_seen(pool: HTTPPool, server: Upstream) -> http_client.Response:
    """Post in `asyncio.timeout`, whose deadline passes as soon as the server has the request."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:

        def expire(seen: asyncio.Task[None]) -> None:
            if not seen.cancelled():
                deadline.reschedule(loop.time())

        seen = asyncio.create_task(server.wait_requests(len(server.requests) + 1))
        seen.add_done_callback(expire)
        try:
            return await post(pool, server)
        finally:
            seen.cancel()


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    async with aclosing(HTTPPool()) as pool:
        yield pool


# prepare_post


@pytest.mark.parametrize(
    ("url", "origin", "request_line", "host"),
    [
        ("http://example.com/v1/generate", Origin("http", "example.com", 80),
         "POST /v1/generate HTTP/1.1", "example.com"),
        ("https://example.com/v1/generate", Origin("https", "example.com", 443),
         "POST /v1/generate HTTP/1.1", "example.com"),
        ("http://example.com:8080/generate", Origin("http", "example.com", 8080),
         "POST /generate HTTP/1.1", "example.com:8080"),
        ("https://example.com:8443", Origin("https", "example.com", 8443),
         "POST / HTTP/1.1", "example.com:8443"),
        ("http://example.com", Origin("http", "example.com", 80),
         "POST / HTTP/1.1", "example.com"),
        ("http://example.com/generate?stream=false&n=2", Origin("http", "example.com", 80),
         "POST /generate?stream=false&n=2 HTTP/1.1", "example.com"),
        ("http://example.com?n=2", Origin("http", "example.com", 80),
         "POST /?n=2 HTTP/1.1", "example.com"),
        ("http://example.com/generate#part", Origin("http", "example.com", 80),
         "POST /generate HTTP/1.1", "example.com"),
        ("http://example.com:80/generate", Origin("http", "example.com", 80),
         "POST /generate HTTP/1.1", "example.com"),
        ("https://example.com:443/generate", Origin("https", "example.com", 443),
         "POST /generate HTTP/1.1", "example.com"),
        ("https://example.com:80/generate", Origin("https", "example.com", 80),
         "POST /generate HTTP/1.1", "example.com:80"),
        ("http://example.com:443/generate", Origin("http", "example.com", 443),
         "POST /generate HTTP/1.1", "example.com:443"),
        ("http://[::1]:8000/generate", Origin("http", "::1", 8000),
         "POST /generate HTTP/1.1", "[::1]:8000"),
        ("https://[2001:db8::1]/generate", Origin("https", "2001:db8::1", 443),
         "POST /generate HTTP/1.1", "[2001:db8::1]"),
        ("HTTP://Example.COM/Generate", Origin("http", "example.com", 80),
         "POST /Generate HTTP/1.1", "example.com"),
        ("http://user:secret@example.com/generate", Origin("http", "example.com", 80),
         "POST /generate HTTP/1.1", "example.com"),
    ],
)  # fmt: skip
def test_prepare_post_url_forms(url: str, origin: Origin, request_line: str, host: str) -> None:
    target = prepare_post(url, {})
    assert target.origin == origin
    assert target.head == f"{request_line}\r\nhost: {host}\r\n".encode()


def test_prepare_post_appends_the_fixed_headers_in_order() -> None:
    target = prepare_post(
        "http://example.com:81/generate",
        {"authorization": "Bearer k-1", "content-type": "application/json", "x-tenant": "a b"},
    )
    assert target.head == (
        b"POST /generate HTTP/1.1\r\n"
        b"host: example.com:81\r\n"
        b"authorization: Bearer k-1\r\n"
        b"content-type: application/json\r\n"
        b"x-tenant: a b\r\n"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/generate",
        "ws://example.com/generate",
        "unix:///tmp/upstream.sock",
        "example.com/generate",
        "http:///generate",
        "",
        "http://example.com:port/generate",
    ],
)
def test_prepare_post_rejects_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        prepare_post(url, {})


# The request on the wire


async def test_post_writes_head_extra_head_content_length_and_body(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(reply(answer()))
    target = prepare_post(
        server.url("/v1/generate?n=1"),
        {"authorization": "Bearer k", "content-type": "application/json"},
    )
    body = b'{"prompt": "Hello"}'
    await pool.post(target, b"x-request-id: r-1\r\nx-other: 2\r\n", body)
    assert server.requests == [
        b"POST /v1/generate?n=1 HTTP/1.1\r\n"
        + b"host: 127.0.0.1:%d\r\n" % server.port
        + b"authorization: Bearer k\r\n"
        + b"content-type: application/json\r\n"
        + b"x-request-id: r-1\r\n"
        + b"x-other: 2\r\n"
        + b"content-length: 19\r\n"
        + b"\r\n"
        + body
    ]


async def test_post_with_empty_body_and_no_extra_head(serve: ServeFactory, pool: HTTPPool) -> None:
    server = await serve(reply(answer()))
    await pool.post(server.target("/"), b"", b"")
    assert server.requests == [
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-length: 0\r\n\r\n" % server.port
    ]


# Answers and their bodies


async def test_content_length_body_status_and_headers(serve: ServeFactory, pool: HTTPPool) -> None:
    body = b'{"message": "ok"}'
    server = await serve(
        reply(
            answer(body, headers=[b"Content-Type: application/json", b"X-Trace: 1", b"x-trace: 2"])
        )
    )
    response = await post(pool, server)
    assert response.status == 200
    assert response.body == body
    assert response.header(b"content-type") == b"application/json"
    assert response.header(b"x-trace") == b"1"  # the first of several
    assert response.header(b"content-length") == b"17"
    assert response.header(b"x-missing") is None
    assert (b"X-Trace", b"1") in response.headers  # names as sent


@pytest.mark.parametrize(
    ("status", "body"),
    [(b"400 Bad Request", b'{"error": "bad"}'), (b"429 Too Many", b"slow"), (b"503 Busy", b"")],
)
async def test_error_statuses_are_answers_not_exceptions(
    serve: ServeFactory, pool: HTTPPool, status: bytes, body: bytes
) -> None:
    server = await serve(reply(answer(body, status=status)))
    response = await post(pool, server)
    assert (response.status, response.body) == (int(status[:3]), body)


async def test_chunked_body_in_several_writes_then_connection_reused(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for chunk in (b"5\r\nhello\r\n", b"1;ext=1\r\n \r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"):
                await peer.write(chunk)

    server = await serve(handler)
    first = await post(pool, server)
    second = await post(pool, server)
    assert first.body == second.body == b"hello world"
    assert server.accepted == 1  # the end of the body was found without a close


async def test_close_delimited_body_ends_with_the_connection(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst ")
            await peer.write(b"second")  # then the handler returns: the server closes

    server = await serve(handler)
    assert (await post(pool, server)).body == b"first second"
    assert (await post(pool, server)).body == b"first second"
    assert server.accepted == 2


PAYLOAD = b'{"data": [{"output": ["Once upon a time, there was a proxy."]}]}' * 20


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (b"gzip", gzip.compress(PAYLOAD)),
        (b"GZIP", gzip.compress(PAYLOAD)),
        (b"deflate", zlib.compress(PAYLOAD)),
        (b"identity", PAYLOAD),
    ],
)
async def test_content_encodings_are_decoded(
    serve: ServeFactory, pool: HTTPPool, encoding: bytes, encoded: bytes
) -> None:
    server = await serve(reply(answer(encoded, headers=[b"content-encoding: " + encoding])))
    assert (await post(pool, server)).body == PAYLOAD


async def test_gzip_in_a_chunked_body_is_decoded(serve: ServeFactory, pool: HTTPPool) -> None:
    encoded = gzip.compress(PAYLOAD)
    half = len(encoded) // 2
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (encoded[:half], encoded[half:])
    )
    chunks += b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
    server = await serve(reply(head + chunks))
    assert (await post(pool, server)).body == PAYLOAD


@pytest.mark.parametrize(
    ("encoding", "body"),
    [(b"br", b"\x1b\x03\x00\xf8\xa5\x02ok"), (b"gzip", b"not gzip at all"), (b"deflate", b"xx")],
)
async def test_undecodable_body_is_a_broken_answer_and_the_connection_is_dropped(
    serve: ServeFactory, pool: HTTPPool, encoding: bytes, body: bytes
) -> None:
    server = await serve(reply(answer(body, headers=[b"content-encoding: " + encoding]), answer()))
    with pytest.raises(ConnectionBroken) as caught:
        await post(pool, server)
    assert caught.value.answered
    assert "decode" in str(caught.value)
    assert (await post(pool, server)).body == b"ok"
    assert server.accepted == 2


@pytest.mark.parametrize("separately", [False, True], ids=["one-write", "two-writes"])
async def test_100_continue_before_the_real_answer(
    serve: ServeFactory, pool: HTTPPool, separately: bool
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n"
    final = answer(b"done", headers=[b"x-final: 1"])

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if separately:
                await peer.write(interim)
                await peer.write(final)
            else:
                await peer.write(interim + final)

    server = await serve(handler)
    response = await post(pool, server)
    assert (response.status, response.body) == (200, b"done")
    assert response.header(b"x-final") == b"1"
    assert response.header(b"x-interim") is None
    assert (await post(pool, server)).body == b"done"
    assert server.accepted == 1


async def test_204_without_length_has_an_empty_body_and_keeps_the_connection(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(reply(b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"))
    first = await post(pool, server)
    second = await post(pool, server)
    assert (first.status, first.body, second.status) == (204, b"", 204)
    assert server.accepted == 1


# Keep-alive


async def test_sequential_posts_reuse_one_connection(serve: ServeFactory, pool: HTTPPool) -> None:
    server = await serve(reply(answer(b"one"), answer(b"two"), answer(b"three")))
    bodies = [(await post(pool, server, b"%d" % n)).body for n in range(3)]
    assert bodies == [b"one", b"two", b"three"]
    assert server.accepted == 1
    assert [len(peer.requests) for peer in server.peers] == [3]


@pytest.mark.parametrize(
    "closing",
    [
        answer(headers=[b"connection: close"]),
        answer(headers=[b"Connection: Close"]),
        answer(version=b"HTTP/1.0"),
        answer(version=b"HTTP/1.0", headers=[b"connection: close"]),
    ],
    ids=["connection-close", "Connection-Close", "http-1.0", "http-1.0-close"],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(
    serve: ServeFactory, pool: HTTPPool, closing: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(closing)
            await peer.until_closed()  # the server waits: the client must be the one to close

    server = await serve(handler)
    assert (await post(pool, server)).status == 200
    await server.peers[0].eof.wait()
    assert (await post(pool, server)).status == 200
    assert server.accepted == 2


async def test_http_1_0_with_keep_alive_is_reused(serve: ServeFactory, pool: HTTPPool) -> None:
    server = await serve(reply(answer(version=b"HTTP/1.0", headers=[b"connection: keep-alive"])))
    await post(pool, server)
    await post(pool, server)
    assert server.accepted == 1


async def test_idle_connection_closed_by_the_server_is_replaced(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(answer(b"%d" % len(peer.server.requests)))
        # then the server closes, as an upstream does when its keep-alive timeout passes

    server = await serve(handler)
    assert (await post(pool, server)).body == b"1"
    await server.peers[0].done.wait()
    assert (await post(pool, server)).body == b"2"
    assert server.accepted == 2
    assert [len(peer.requests) for peer in server.peers] == [1, 1]


async def test_reused_connection_closed_without_answer_is_retried_once_on_a_new_one(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) == 2:
                return  # hang up on the second request without a byte of answer
            await peer.write(answer(b"answer to %d" % len(peer.server.requests)))

    server = await serve(handler)
    assert (await post(pool, server)).body == b"answer to 1"
    assert (await post(pool, server)).body == b"answer to 3"
    assert server.accepted == 2
    assert [len(peer.requests) for peer in server.peers] == [2, 1]


async def test_new_connection_closed_without_answer_is_broken_and_not_retried(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()  # then close without answering

    server = await serve(handler)
    with pytest.raises(ConnectionBroken) as caught:
        await post(pool, server)
    assert not caught.value.answered
    assert server.accepted == 1
    assert len(server.requests) == 1


def _reset_mid_body(on_request: int) -> Handler:
    """Answer normally, but reset the connection in the middle of the on_request-th body."""

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) == on_request:
                await peer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                peer.reset()
                return
            await peer.write(answer())

    return handler


async def test_reset_mid_body_is_broken_answered_and_not_retried(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(_reset_mid_body(on_request=1))
    with pytest.raises(ConnectionBroken) as caught:
        await post(pool, server)
    assert caught.value.answered
    assert (server.accepted, len(server.requests)) == (1, 1)


async def test_reset_mid_body_on_a_reused_connection_is_not_retried(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(_reset_mid_body(on_request=2))
    await post(pool, server)
    with pytest.raises(ConnectionBroken) as caught:
        await post(pool, server)
    assert caught.value.answered
    assert (server.accepted, len(server.requests)) == (1, 2)  # the upstream saw it once


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ],
    ids=["short-content-length", "unfinished-chunks", "half-a-head", "only-interim"],
)
async def test_clean_close_before_the_answer_ends_is_broken_and_answered(
    serve: ServeFactory, pool: HTTPPool, partial: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(partial)

    server = await serve(handler)
    with pytest.raises(ConnectionBroken) as caught:
        await post(pool, server)
    assert caught.value.answered
    assert len(server.requests) == 1


# Limits


@pytest.mark.parametrize(
    "too_large",
    [
        answer(b"x" * 17),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"9\r\nxxxxxxxxx\r\n" * 2,
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 17,
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
async def test_body_over_the_limit_fails_and_its_connection_is_closed(
    serve: ServeFactory, too_large: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is None:
            return
        if peer.first:
            await peer.write(too_large)
            await peer.until_closed()  # the client must hang up: the rest is unread
        else:
            await peer.write(answer(b"x" * 16))

    server = await serve(handler)
    async with aclosing(HTTPPool(max_response_bytes=16)) as pool:
        with pytest.raises(HTTPClientError):
            await post(pool, server)
        await server.peers[0].eof.wait()
        assert (await post(pool, server)).body == b"x" * 16  # exactly the limit is fine
    assert server.accepted == 2


async def test_body_over_the_limit_raises_response_too_large(serve: ServeFactory) -> None:
    server = await serve(reply(answer(b"x" * 17)))
    async with aclosing(HTTPPool(max_response_bytes=16)) as pool:
        with pytest.raises(ResponseTooLarge, match="larger than 16 bytes"):
            await post(pool, server)


async def test_a_decoded_body_over_the_limit_raises_response_too_large(
    serve: ServeFactory,
) -> None:
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))  # about 4 KB on the wire
    server = await serve(reply(answer(bomb, headers=[b"content-encoding: gzip"])))
    async with aclosing(HTTPPool(max_response_bytes=64 * 1024)) as pool:
        with pytest.raises(ResponseTooLarge):
            await post(pool, server)


class FakeClock:
    """Stands in for the `time` module inside app.http_client (asyncio keeps the real one)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("idle_seconds", "reused"), [(0.0, True), (3.9, True), (4.1, False), (3600.0, False)]
)
async def test_idle_connection_is_reused_only_within_keepalive_seconds(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch, idle_seconds: float, reused: bool
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(http_client, "time", clock)
    server = await serve(reply(answer()))
    async with aclosing(HTTPPool(keepalive_seconds=4.0)) as pool:
        await post(pool, server)
        clock.now += idle_seconds
        await post(pool, server)
        if not reused:
            await server.peers[0].eof.wait()  # the expired connection was closed, not leaked
    assert server.accepted == (1 if reused else 2)


async def test_keepalive_seconds_zero_never_reuses(serve: ServeFactory) -> None:
    server = await serve(reply(answer()))
    async with aclosing(HTTPPool(keepalive_seconds=0.0)) as pool:
        for _ in range(3):
            await post(pool, server)
    assert server.accepted == 3


async def test_max_connections_caps_the_connections_open_at_once(serve: ServeFactory) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer(b"done")))
    async with aclosing(HTTPPool(max_connections=2)) as pool:
        posts = [asyncio.create_task(post(pool, server, b"%d" % n)) for n in range(5)]
        await server.wait_requests(2)
        assert not any(task.done() for task in posts)
        release.set()
        responses = await asyncio.gather(*posts)
    assert [response.body for response in responses] == [b"done"] * 5
    assert len(server.requests) == 5
    assert server.max_open == 2
    assert server.accepted == 2  # the three that waited took the freed connections


async def test_max_connections_is_counted_per_origin(serve: ServeFactory) -> None:
    release = asyncio.Event()
    slow = await serve(held(release, answer(b"held")))
    fast = await serve(reply(answer(b"fast")))
    async with aclosing(HTTPPool(max_connections=1)) as pool:
        waiting = asyncio.create_task(post(pool, slow))
        await slow.wait_requests(1)
        assert (await post(pool, fast)).body == b"fast"
        release.set()
        assert (await waiting).body == b"held"


class RecordedWaits:
    """A SlotWaits that writes down what the pool told it."""

    def __init__(self) -> None:
        self.started: list[tuple[Origin, int, bool]] = []
        self.ended: list[tuple[Origin, float]] = []

    def wait_started(self, origin: Origin, limit: int, *, first: bool) -> None:
        self.started.append((origin, limit, first))

    def wait_ended(self, origin: Origin, seconds: float) -> None:
        self.ended.append((origin, seconds))


async def test_without_max_connections_every_request_has_its_connection(
    serve: ServeFactory,
) -> None:
    """No cap by default: more than the old default of 1,000 exchanges at once, none waits."""
    count = 1001
    _, files = raise_open_file_limit()  # both ends of each connection are in this process
    if files < 2 * count + 256:
        pytest.skip(f"needs {2 * count + 256} open files, the hard limit is {files}")
    release = asyncio.Event()
    server = await serve(held(release, answer(b"done")))
    waits = RecordedWaits()
    async with aclosing(HTTPPool(slot_waits=waits)) as pool:
        posts = [asyncio.create_task(post(pool, server)) for _ in range(count)]
        await server.wait_requests(count)
        release.set()
        responses = await asyncio.gather(*posts)
    assert len(responses) == count
    assert server.max_open == count
    assert waits.started == waits.ended == []


async def test_waits_for_a_slot_are_told_with_the_first_of_each_incident(
    serve: ServeFactory,
) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer(b"done")))
    origin = server.target().origin
    waits = RecordedWaits()
    async with aclosing(HTTPPool(max_connections=2, slot_waits=waits)) as pool:
        for incident in range(2):
            release.clear()
            posts = [asyncio.create_task(post(pool, server)) for _ in range(5)]
            await server.wait_requests(2 + 5 * incident)
            assert waits.started[3 * incident :] == [
                (origin, 2, True),
                (origin, 2, False),
                (origin, 2, False),
            ]
            release.set()
            await asyncio.gather(*posts)  # every slot free again: the incident is over
    assert len(waits.started) == 6
    assert [ended[0] for ended in waits.ended] == [origin] * 6
    assert all(seconds >= 0 for _, seconds in waits.ended)


async def test_a_wait_that_times_out_is_told_as_ended(serve: ServeFactory) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer(b"held")))
    waits = RecordedWaits()
    async with aclosing(HTTPPool(max_connections=1, slot_waits=waits)) as pool:
        holder = asyncio.create_task(post(pool, server))
        await server.wait_requests(1)
        with pytest.raises(TimeoutError):
            await pool.post(server.target(), b"", b"{}", timeout=0.05)
        assert len(waits.started) == len(waits.ended) == 1
        assert waits.ended[0][1] >= 0.04
        release.set()
        await holder


async def test_timeouts_do_not_exhaust_the_pool(serve: ServeFactory) -> None:
    """Every slot taken by a request that timed out is free again (httpcore issue 550)."""

    async def first_ten_hang(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) <= 10:
                await peer.until_closed()
                return
            await peer.write(answer(b"ok"))

    server = await serve(first_ten_hang)
    async with aclosing(HTTPPool(max_connections=2)) as pool:
        for _ in range(10):
            with pytest.raises(TimeoutError):
                await post_expiring_once_seen(pool, server)
        responses = await asyncio.gather(*(post(pool, server) for _ in range(4)))
    assert [response.body for response in responses] == [b"ok"] * 4


async def test_post_timeout_bounds_the_exchange_and_frees_its_slot(serve: ServeFactory) -> None:
    async def first_hangs(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) == 1:
                await peer.until_closed()
                return
            await peer.write(answer(b"ok"))

    server = await serve(first_hangs)
    async with aclosing(HTTPPool(max_connections=1)) as pool:
        with pytest.raises(TimeoutError):
            await pool.post(server.target(), b"", b"{}", timeout=0.05)
        await server.peers[0].eof.wait()  # the timed-out connection was closed, not pooled
        answered = await pool.post(server.target(), b"", b"{}", timeout=5)
    assert answered.body == b"ok"
    assert server.accepted == 2


async def test_post_timeout_covers_the_wait_for_a_slot(serve: ServeFactory) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer(b"held")))
    async with aclosing(HTTPPool(max_connections=1)) as pool:
        holder = asyncio.create_task(post(pool, server))
        await server.wait_requests(1)
        with pytest.raises(TimeoutError):
            await pool.post(server.target(), b"", b"{}", timeout=0.05)
        assert len(server.requests) == 1  # the second never got a connection
        release.set()
        assert (await holder).body == b"held"
        assert (await post(pool, server)).body == b"held"  # the waiter left no slot taken


async def test_slots_hand_over_first_come_first_served() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, Origin("http", "127.0.0.1", 80))
    await slots.acquire(loop, None)
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.acquire(loop, None)
        order.append(name)
        slots.release()

    waiting = [asyncio.create_task(take(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    assert order == [] and slots.taken == 1
    slots.release()
    await asyncio.gather(*waiting)
    assert order == ["a", "b", "c"]
    assert slots.taken == 0


async def test_slots_a_waiter_that_gives_up_takes_no_slot() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, Origin("http", "127.0.0.1", 80))
    await slots.acquire(loop, None)
    timed_out = asyncio.create_task(slots.acquire(loop, loop.time() + 0.01))
    cancelled = asyncio.create_task(slots.acquire(loop, None))
    handed_then_cancelled = asyncio.create_task(slots.acquire(loop, None))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await timed_out
    cancelled.cancel()
    slots.release()  # hands the slot to `handed_then_cancelled` (the others are gone) …
    handed_then_cancelled.cancel()  # … which is cancelled before it runs: it passes it on
    for task in (cancelled, handed_then_cancelled):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert slots.taken == 0
    await slots.acquire(loop, loop.time() + 1)  # free at once
    assert slots.taken == 1


async def test_a_connection_not_made_in_time_is_connect_failed() -> None:
    """A listener whose accept queue is full drops the SYN: the connect hangs until its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue (never accepted)
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            target = prepare_post(f"http://127.0.0.1:{port}/generate", {})
            async with aclosing(HTTPPool(connect_timeout=0.2)) as pool:
                started = time.monotonic()
                with pytest.raises(ConnectFailed, match="no connection within 0.2 s"):
                    await pool.post(target, b"", b"{}")
                assert time.monotonic() - started < 5
        finally:
            for filler in fillers:
                filler.close()


# Failures


async def test_refused_connection_is_connect_failed(pool: HTTPPool) -> None:
    target = prepare_post(f"http://127.0.0.1:{refused_port()}/generate", {})
    with pytest.raises(ConnectFailed) as caught:
        await pool.post(target, b"", b"{}")
    assert str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.parametrize(
    "garbage",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not-http", "bad-status", "bad-length", "bad-chunk"],
)
async def test_invalid_http_is_broken_and_closes_the_connection(
    serve: ServeFactory, pool: HTTPPool, garbage: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(garbage)
            await peer.until_closed()

    server = await serve(handler)
    with pytest.raises(ConnectionBroken, match="invalid HTTP") as caught:
        await post(pool, server)
    assert caught.value.answered
    await server.peers[0].eof.wait()


async def test_invalid_http_on_a_reused_connection_is_not_retried(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(reply(answer(), b"garbage\r\n\r\n"))
    await post(pool, server)
    with pytest.raises(ConnectionBroken):
        await post(pool, server)
    assert (server.accepted, len(server.requests)) == (1, 2)


def _silent_first_connection() -> Handler:
    """The first connection reads its request and never answers; the others answer."""

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if peer.first:
                await peer.until_closed()
                return
            await peer.write(answer(b"fresh"))

    return handler


async def test_timeout_closes_the_connection_and_it_is_not_reused(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(_silent_first_connection())
    with pytest.raises(TimeoutError):
        await post_expiring_once_seen(pool, server)
    await server.peers[0].eof.wait()
    assert (await post(pool, server)).body == b"fresh"
    assert server.accepted == 2


async def test_cancellation_closes_the_connection_and_it_is_not_reused(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(_silent_first_connection())
    task = asyncio.create_task(post(pool, server))
    await server.wait_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await server.peers[0].eof.wait()
    assert (await post(pool, server)).body == b"fresh"
    assert server.accepted == 2


async def test_timeout_on_a_reused_connection_closes_it(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) == 2:
                await peer.until_closed()
                return
            await peer.write(answer())

    server = await serve(handler)
    await post(pool, server)
    with pytest.raises(TimeoutError):
        await post_expiring_once_seen(pool, server)
    await server.peers[0].eof.wait()
    assert (server.accepted, len(server.requests)) == (1, 2)  # no retry after a timeout


async def test_unsolicited_bytes_on_an_idle_connection_make_it_unusable(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    stray = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.write(answer(b"first" if peer.first else b"fresh"))
            if peer.first:
                await stray.wait()
                await peer.write(answer(b"nobody asked"))
                await peer.until_closed()
                return

    server = await serve(handler)
    assert (await post(pool, server)).body == b"first"
    stray.set()
    await server.peers[0].eof.wait()  # the client hung up on receiving them
    assert (await post(pool, server)).body == b"fresh"
    assert server.accepted == 2


async def test_bytes_after_the_answer_in_the_same_read_make_the_connection_unusable(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            extra = answer(b"stray", headers=[b"x-stray: 1"]) if peer.first else b""
            await peer.write(answer(b"first") + extra)  # one write: one segment on loopback

    server = await serve(handler)
    response = await post(pool, server)
    await post(pool, server)
    assert response.header(b"x-stray") is None
    assert server.accepted == 2


async def test_aclose_closes_idle_connections(serve: ServeFactory) -> None:
    server = await serve(reply(answer()))
    pool = HTTPPool()
    await post(pool, server)
    await pool.aclose()
    await server.peers[0].eof.wait()


async def test_aclose_closes_a_busy_connection_when_its_exchange_ends(
    serve: ServeFactory,
) -> None:
    release = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await release.wait()
            await peer.write(answer())
            await peer.until_closed()

    server = await serve(handler)
    pool = HTTPPool()
    busy = asyncio.create_task(post(pool, server))
    await server.wait_requests(1)
    await pool.aclose()
    release.set()
    assert (await busy).status == 200
    try:
        async with asyncio.timeout(0.5):
            await server.peers[0].eof.wait()
    finally:
        await pool.aclose()  # closes the leaked connection, so the failure leaks nothing


# TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


def _server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_tls_post_with_a_trusted_certificate_and_reuse(
    serve: ServeFactory, certificate: tuple[Path, Path]
) -> None:
    server = await serve(reply(answer(b"secret")), tls=_server_tls(certificate))
    target = server.target(scheme="https")
    async with aclosing(HTTPPool(tls=ssl.create_default_context(cafile=certificate[0]))) as pool:
        first = await pool.post(target, b"x-request-id: t\r\n", b"{}")
        second = await pool.post(target, b"", b"{}")
    assert first.body == second.body == b"secret"
    assert server.accepted == 1
    assert server.requests[0].startswith(
        b"POST /generate HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-request-id: t\r\n" % server.port
    )


async def test_tls_default_context_rejects_a_self_signed_certificate(
    serve: ServeFactory, pool: HTTPPool, certificate: tuple[Path, Path]
) -> None:
    server = await serve(reply(answer()), tls=_server_tls(certificate))
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await pool.post(server.target(scheme="https"), b"", b"{}")
    assert server.requests == []


async def test_tls_to_a_plain_http_server_is_connect_failed(
    serve: ServeFactory, certificate: tuple[Path, Path]
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.reader.read(1)  # a TLS hello is not HTTP: answer it with garbage and go
        await peer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    server = await serve(handler)
    async with aclosing(HTTPPool(tls=ssl.create_default_context(cafile=certificate[0]))) as pool:
        with pytest.raises(ConnectFailed):
            await pool.post(server.target(scheme="https"), b"", b"{}")


# The same core behaviour on uvloop, the loop uvicorn picks in production


async def _uvloop_keep_alive_and_bodies() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    gzipped = answer(gzip.compress(b"zipped"), headers=[b"content-encoding: gzip"])
    async with Upstream(reply(answer(), chunked, gzipped)) as server:
        async with aclosing(HTTPPool()) as pool:
            bodies = [(await post(pool, server)).body for _ in range(3)]
        assert bodies == [b"ok", b"ok", b"zipped"]
        assert server.accepted == 1


async def _uvloop_close_delimited_and_stale() -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil " if peer.first else answer(b"b"))
            if peer.first:
                await peer.write(b"close")

    async with Upstream(handler) as server, aclosing(HTTPPool()) as pool:
        assert (await post(pool, server)).body == b"until close"
        assert (await post(pool, server)).body == b"b"
        assert (await post(pool, server)).body == b"b"  # the server closed that one idle
        assert server.accepted == 3


async def _uvloop_reused_then_hang_up_is_retried() -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.server.requests) == 2:
                return
            await peer.write(answer())

    async with Upstream(handler) as server, aclosing(HTTPPool()) as pool:
        await post(pool, server)
        await post(pool, server)
        assert [len(peer.requests) for peer in server.peers] == [2, 1]


async def _uvloop_timeout_closes() -> None:
    async with Upstream(_silent_first_connection()) as server, aclosing(HTTPPool()) as pool:
        with pytest.raises(TimeoutError):
            await post_expiring_once_seen(pool, server)
        await server.peers[0].eof.wait()
        await post(pool, server)
        assert server.accepted == 2


@pytest.mark.parametrize(
    "scenario",
    [
        _uvloop_keep_alive_and_bodies,
        _uvloop_close_delimited_and_stale,
        _uvloop_reused_then_hang_up_is_retried,
        _uvloop_timeout_closes,
    ],
)
def test_on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


# Deferred writes: under load, a request goes out at the end of the event-loop step


def recorded_connection() -> tuple[http_client._Connection, RecordingTransport]:
    connection = http_client._Connection(
        Origin("http", "upstream.test", 80), asyncio.get_running_loop()
    )
    transport = RecordingTransport()
    connection.connection_made(transport)
    return connection, transport


async def test_a_deferred_request_is_written_at_the_end_of_the_step() -> None:
    connection, transport = recorded_connection()
    exchange = asyncio.ensure_future(connection.exchange(b"request", 100, None, defer=True))
    await asyncio.sleep(0)  # the exchange's first step ran: its write waits for the step's end
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"request"]
    connection.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert (await exchange).body == b"ok"


async def test_a_request_not_deferred_is_written_at_once() -> None:
    connection, transport = recorded_connection()
    exchange = asyncio.ensure_future(connection.exchange(b"request", 100, None))
    await asyncio.sleep(0)
    assert transport.writes == [b"request"]
    exchange.cancel()


async def test_a_deferred_request_given_up_before_its_write_is_never_written() -> None:
    connection, transport = recorded_connection()
    exchange = asyncio.ensure_future(connection.exchange(b"request", 100, None, defer=True))
    await asyncio.sleep(0)
    exchange.cancel()
    connection.close()  # what the pool does with an interrupted exchange
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_concurrent_posts_are_answered_and_the_in_flight_count_returns_to_zero(
    serve: ServeFactory, pool: HTTPPool
) -> None:
    server = await serve(reply(answer(b"ok")))
    answers = await asyncio.gather(*(post(pool, server) for _ in range(8)))  # deferred writes
    assert [response.body for response in answers] == [b"ok"] * 8
    assert (await post(pool, server)).body == b"ok"  # alone: written at once
    assert pool._in_flight == 0
    with pytest.raises(http_client.ConnectFailed):
        await pool.post(prepare_post(f"http://127.0.0.1:{refused_port()}/", {}), b"", b"{}")
    assert pool._in_flight == 0
