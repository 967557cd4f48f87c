"""Latency upstream for the benchmark: the same custom-format answer to every request, late.

    python bench/slow_upstream.py --port 18081 --delay-ms 50

Why not `custom-llm-proxy mock-upstream --delay-ms 50`: on one core shared with wrk it tops out at
~3,800 rps at 256 connections × 50 ms (75 % of the ideal 5,120), because each request costs a
uvicorn protocol round, an ASGI task and a generated answer. The benchmark's latency row must
measure the proxy, not its upstream, so this server does the least work an HTTP/1.1 keep-alive
server can: an asyncio Protocol (uvloop when importable); a request is complete when its headers
and Content-Length bytes have arrived, and its answer is one `loop.call_later` timer, with no task
and no JSON work. The answer is the fixed body nginx sends too, so a proxy returns the same text.

Only the standard library (plus optional uvloop): the benchmark harness starts it with any Python.
Requests with `Transfer-Encoding: chunked` get 411 and the connection is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import cast

ANSWER = (
    b'{"data": [{"prompt": "The capital of France is P", '
    b'"output": ["The capital of France is PARIS."], '
    b'"params": {"temperature": 0.7, "top_k": 40, "top_p": 1}}], "message": "ok"}'
)
_LENGTH_REQUIRED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def http_response(body: bytes) -> bytes:
    """A complete HTTP/1.1 200 response carrying `body` as JSON."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def body_length(head: bytes) -> int | None:
    """Content-Length of a request head (0 if absent); None if the body is chunked."""
    lowered = head.lower()
    if b"\r\ntransfer-encoding:" in lowered:
        return None
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = lowered.find(b"\r\n", start)
    return int(lowered[start : end if end >= 0 else len(lowered)].strip())


class _Connection(asyncio.Protocol):
    """One client connection: splits the byte stream into requests, answers each after the delay."""

    def __init__(self, delay_s: float, response: bytes) -> None:
        self._delay_s = delay_s
        self._response = response
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (head_end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = body_length(bytes(self._buffer[:head_end]))
            if length is None:
                self._refuse()
                return
            total = head_end + 4 + length
            if len(self._buffer) < total:
                return  # the rest of the body is still on its way
            del self._buffer[:total]
            if self._delay_s > 0:
                asyncio.get_running_loop().call_later(self._delay_s, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        # Timers of one connection share the delay, so they fire in request order.
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._response)

    def _refuse(self) -> None:
        if self._transport is not None:
            self._transport.write(_LENGTH_REQUIRED)
            self._transport.close()
        self._buffer.clear()


async def serve(host: str, port: int, delay_ms: float, backlog: int = 4096) -> None:
    """Listen until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    response = http_response(ANSWER)
    server = await loop.create_server(
        lambda: _Connection(delay_ms / 1000, response), host, port, backlog=backlog
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"slow upstream on http://{host}:{port}/ (delay {delay_ms:g} ms)", flush=True)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog [4096]")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.delay_ms, args.backlog))
    else:
        uvloop.run(serve(args.host, args.port, args.delay_ms, args.backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
