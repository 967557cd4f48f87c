"""PooledUpstream against scripted servers: what it sends, what it returns, how failures map.

The scripted server (`Upstream`) and its helpers live in tests/scripted_upstream.py; the
`serve` fixture in conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from app.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnavailable
from app.http_client import prepare_post
from app.http_errors import ConnectFailed, ConnectionBroken
from app.http_origin import Origin, Target
from app.upstream import PooledUpstream, UpstreamEndpoint, UpstreamRequest, UpstreamResponse
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


@pytest.fixture
async def client() -> AsyncIterator[PooledUpstream]:
    async with aclosing(PooledUpstream()) as client:
        yield client


def endpoint_of(
    server: Upstream, *, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> UpstreamEndpoint:
    return UpstreamEndpoint(url=server.url("/generate"), headers=headers or {}, timeout=timeout)


def request_to(
    endpoint: UpstreamEndpoint, *, body: bytes = b'{"prompt": "Hi"}', request_id: str = "req-1"
) -> UpstreamRequest:
    return UpstreamRequest(
        endpoint=endpoint,
        body=body,
        request_id=request_id,
        model="llama-13b",
        timeout=endpoint.timeout,
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (b"200 OK", b'{"data": [{"output": ["Hi there"]}], "message": "ok"}'),
        (b"400 Bad Request", b'{"detail": "bad"}'),
        (b"429 Too Many Requests", b"slow down"),
        (b"500 Internal Server Error", b""),
    ],
)
async def test_send_passes_status_and_body_through(
    serve: ServeFactory, client: PooledUpstream, status: bytes, body: bytes
) -> None:
    server = await serve(reply(answer(body, status=status)))
    response = await client.send(request_to(endpoint_of(server)))
    assert response == UpstreamResponse(status=int(status[:3]), body=body)


async def test_send_puts_endpoint_headers_and_request_id_on_the_wire(
    serve: ServeFactory, client: PooledUpstream
) -> None:
    server = await serve(reply(answer()))
    headers = {"authorization": "Bearer sk-up", "content-type": "application/json"}
    endpoint = endpoint_of(server, headers=headers)
    body = b'{"prompt": "Hello"}'
    await client.send(request_to(endpoint, body=body, request_id="abc-123"))
    assert server.requests == [
        b"POST /generate HTTP/1.1\r\n"
        + b"host: 127.0.0.1:%d\r\n" % server.port
        + b"authorization: Bearer sk-up\r\n"
        + b"content-type: application/json\r\n"
        + b"x-request-id: abc-123\r\n"
        + b"content-length: 19\r\n"
        + b"\r\n"
        + body
    ]


async def test_each_send_carries_its_own_request_id(
    serve: ServeFactory, client: PooledUpstream
) -> None:
    server = await serve(reply(answer()))
    endpoint = endpoint_of(server)
    for request_id in ("first", "second"):
        await client.send(request_to(endpoint, request_id=request_id))
    assert b"x-request-id: first\r\n" in server.requests[0]
    assert b"x-request-id: second\r\n" in server.requests[1]
    assert all(request.count(b"x-request-id") == 1 for request in server.requests)
    assert server.accepted == 1  # and they shared a keep-alive connection


async def test_endpoint_timeout_is_upstream_timeout_504(
    serve: ServeFactory, client: PooledUpstream
) -> None:
    async def never_answers(peer: Peer) -> None:
        await peer.read_request()
        await peer.until_closed()

    server = await serve(never_answers)
    with pytest.raises(UpstreamTimeout) as caught:
        await client.send(request_to(endpoint_of(server, timeout=0.05)))
    error = caught.value
    assert (error.status, error.code) == (504, "upstream_timeout")
    assert "'llama-13b'" in error.message
    assert "0.05 s" in error.message
    assert isinstance(error.__cause__, TimeoutError)
    await server.peers[0].eof.wait()  # the abandoned connection was closed


async def test_refused_connection_is_upstream_unavailable_503(client: PooledUpstream) -> None:
    endpoint = UpstreamEndpoint(
        url=f"http://127.0.0.1:{refused_port()}/generate", headers={}, timeout=5.0
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.send(request_to(endpoint))
    error = caught.value
    assert (error.status, error.code) == (503, "upstream_unavailable")
    assert error.message.startswith("cannot connect to the upstream of model 'llama-13b': ")
    assert isinstance(error.__cause__, ConnectFailed)


async def _hang_up(peer: Peer) -> None:
    await peer.read_request()


async def _half_an_answer(peer: Peer) -> None:
    if await peer.read_request() is not None:
        await peer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{")


@pytest.mark.parametrize(
    "handler",
    [_hang_up, _half_an_answer, reply(b"not http\r\n\r\n")],
    ids=["hang-up", "half-an-answer", "garbage"],
)
async def test_broken_answer_is_upstream_bad_response_502(
    serve: ServeFactory, client: PooledUpstream, handler: Handler
) -> None:
    server = await serve(handler)
    with pytest.raises(UpstreamBadResponse) as caught:
        await client.send(request_to(endpoint_of(server)))
    error = caught.value
    assert (error.status, error.code) == (502, "bad_upstream_response")
    assert error.message.startswith("the upstream of model 'llama-13b' broke off its answer: ")
    assert isinstance(error.__cause__, ConnectionBroken)


async def test_oversized_answer_is_upstream_bad_response_502(serve: ServeFactory) -> None:
    server = await serve(reply(answer(b"x" * 33)))
    async with aclosing(PooledUpstream(max_response_bytes=32)) as client:
        with pytest.raises(UpstreamBadResponse) as caught:
            await client.send(request_to(endpoint_of(server)))
    assert caught.value.status == 502
    assert "'llama-13b'" in caught.value.message


async def test_oversized_answer_says_so_in_the_message(serve: ServeFactory) -> None:
    server = await serve(reply(answer(b"x" * 33)))
    async with aclosing(PooledUpstream(max_response_bytes=32)) as client:
        with pytest.raises(UpstreamBadResponse, match="larger than 32 bytes"):
            await client.send(request_to(endpoint_of(server)))


async def test_answer_at_the_size_limit_is_passed_through(serve: ServeFactory) -> None:
    server = await serve(reply(answer(b"x" * 32)))
    async with aclosing(PooledUpstream(max_response_bytes=32)) as client:
        assert (await client.send(request_to(endpoint_of(server)))).body == b"x" * 32


async def test_a_target_is_prepared_once_per_endpoint_object(
    serve: ServeFactory, client: PooledUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[str] = []

    def counting_prepare_post(url: str, headers: dict[str, str], **network: Any) -> Target:
        prepared.append(url)
        return prepare_post(url, headers, **network)

    monkeypatch.setattr("app.upstream.prepare_post", counting_prepare_post)
    server = await serve(reply(answer()))
    endpoint = endpoint_of(server)
    await client.send(request_to(endpoint))
    await client.send(request_to(endpoint))
    assert prepared == [endpoint.url]
    twin = endpoint_of(server)  # equal fields, another object: endpoints compare by identity
    await client.send(request_to(twin))
    assert prepared == [endpoint.url, twin.url]
    assert server.accepted == 1  # one origin, one pool of connections


async def test_a_new_connection_after_a_timeout(serve: ServeFactory) -> None:
    async def silent_then_answering(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if peer.first:
                await peer.until_closed()
                return
            await peer.write(answer(b"fresh"))

    server = await serve(silent_then_answering)
    async with aclosing(PooledUpstream()) as client:
        with pytest.raises(UpstreamTimeout):
            await client.send(request_to(endpoint_of(server, timeout=0.05)))
        assert (await client.send(request_to(endpoint_of(server)))).body == b"fresh"
    assert server.accepted == 2


async def test_max_connections_is_passed_to_the_pool(serve: ServeFactory) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer()))
    endpoint = endpoint_of(server)
    async with aclosing(PooledUpstream(max_connections=1)) as client:
        sends = [asyncio.create_task(client.send(request_to(endpoint))) for _ in range(3)]
        await server.wait_requests(1)
        release.set()
        await asyncio.gather(*sends)
    assert (server.max_open, server.accepted, len(server.requests)) == (1, 1, 3)


async def test_slot_waits_is_passed_to_the_pool(serve: ServeFactory) -> None:
    release = asyncio.Event()
    server = await serve(held(release, answer()))
    endpoint = endpoint_of(server)
    waited: list[float] = []

    class Waits:
        def wait_started(self, origin: Origin, limit: int, *, first: bool) -> None:
            pass

        def wait_ended(self, origin: Origin, seconds: float) -> None:  # noqa: ARG002
            waited.append(seconds)

    async with aclosing(PooledUpstream(max_connections=1, slot_waits=Waits())) as client:
        sends = [asyncio.create_task(client.send(request_to(endpoint))) for _ in range(3)]
        await server.wait_requests(1)
        release.set()
        await asyncio.gather(*sends)
    assert len(waited) == 2


async def test_keepalive_seconds_is_passed_to_the_pool(serve: ServeFactory) -> None:
    server = await serve(reply(answer()))
    endpoint = endpoint_of(server)
    async with aclosing(PooledUpstream(keepalive_seconds=0.0)) as client:
        await client.send(request_to(endpoint))
        await client.send(request_to(endpoint))
    assert server.accepted == 2


async def test_aclose_closes_the_idle_connections(serve: ServeFactory) -> None:
    server = await serve(reply(answer()))
    client = PooledUpstream()
    await client.send(request_to(endpoint_of(server)))
    await client.aclose()
    await server.peers[0].eof.wait()
