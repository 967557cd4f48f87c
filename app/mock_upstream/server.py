"""The mock upstream's ASGI app and server: counters, latency, and each fault put on the wire.

See `app.mock_upstream` for what it answers.
"""

import asyncio
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.mock_upstream.format import BadRequest, complete
from app.mock_upstream.plan import Fault, FaultPlan, Fixed, draw_ms, parse_fault

DELAY_HEADER = b"x-mock-delay-ms"
FAULT_HEADER = b"x-mock-fault"
RETRY_AFTER_HEADER = b"x-mock-retry-after"
STATS_PATH = "/_mock/stats"
RESET_STATS_PATH = "/_mock/reset-stats"

CHUNK_BYTES = 64 << 10
TRICKLE_SECONDS = 0.2  # between two bytes of `trickle`
TRICKLE_LENGTH = 1 << 30  # the Content-Length `trickle` announces: days away at 5 bytes a second

_Headers = tuple[tuple[bytes, bytes], ...]
_JSON_HEADERS: _Headers = ((b"content-type", b"application/json"),)
_HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>mock upstream fault</p></body></html>"
_FIXED_ANSWERS: Mapping[str, tuple[int, _Headers, bytes]] = {
    "malformed": (200, _JSON_HEADERS, b'{"data": [{"prompt": "unterminated'),
    "no-data": (200, _JSON_HEADERS, b'{"message":"ok"}'),
    "not-ok": (200, _JSON_HEADERS, b'{"message":"model overloaded","data":[]}'),
    "html": (200, ((b"content-type", b"text/html; charset=utf-8"),), _HTML_PAGE),
}
# Padding for `huge`: plain ASCII, so it needs no escaping inside a JSON string.
_FILLER = (b" The steady proxy keeps every answer." * (CHUNK_BYTES // 30))[:CHUNK_BYTES]

logger = logging.getLogger(__name__)


class MockConnectionReset(Exception):
    """Raised by the `reset` faults after sending, so that the server drops the connection."""


# The ASGI app


def create_mock_app(*, plan: FaultPlan | None = None, delay_ms: float | None = None) -> ASGIApp:
    """The mock upstream as a raw ASGI callable with its own counters and random generator.

    `plan` applies latency and faults to every request; `delay_ms` is short for
    `plan=FaultPlan(latency=Fixed(delay_ms))`.
    """
    if delay_ms is not None:
        if plan is not None:
            raise TypeError("give create_mock_app a plan or a delay_ms, not both")
        plan = FaultPlan(latency=Fixed(delay_ms))
    return _MockUpstream(plan or FaultPlan())


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    faults: int = 0
    in_flight: int = 0

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "faults": self.faults, "in_flight": self.in_flight}


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One request that gets a fault: what the fault senders need."""

    fault: Fault
    body: bytes
    reasoning: bool
    receive: Receive
    send: Send
    retry_after: int | None


class _MockUpstream:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.stats = _Stats()
        # The GPU's turns: calls beyond max_calls wait here (asyncio.Semaphore binds to the
        # running loop on first use, not here).
        self.turns = asyncio.Semaphore(plan.max_calls) if plan.max_calls else None

    def __str__(self) -> str:
        return str(self.plan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] in (STATS_PATH, RESET_STATS_PATH):
            await self._send_stats(scope["method"], scope["path"], send)
            return
        if scope["method"] != "POST":
            await _send_json(send, 405, {"message": "only POST is allowed", "data": []})
            return
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            self.stats.in_flight -= 1

    async def _send_stats(self, method: str, path: str, send: Send) -> None:
        allowed = "GET" if path == STATS_PATH else "POST"
        if method != allowed:
            await _send_json(send, 405, {"message": f"only {allowed} is allowed", "data": []})
            return
        counts = self.stats.to_json()
        if path == RESET_STATS_PATH:
            self.stats.requests = self.stats.faults = 0
        await _send_json(send, 200, counts)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its body
        headers = dict(scope["headers"])
        try:
            delay_ms = _header_delay(headers.get(DELAY_HEADER))
            fault = self._fault(headers.get(FAULT_HEADER))
            retry_after = _header_retry_after(headers.get(RETRY_AFTER_HEADER))
        except BadRequest as exc:
            await _send_json(send, 400, {"message": str(exc), "data": []})
            return
        if delay_ms is None:
            delay_ms = draw_ms(self.plan.latency, self.rng)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self.plan.computes:
            await self._compute(body)
        if fault is None:
            await _send_json(send, *_answer(body, self.plan.reasoning))
            return
        self.stats.faults += 1
        if retry_after is None:
            retry_after = self.plan.retry_after
        await _send_fault(_Exchange(fault, body, self.plan.reasoning, receive, send, retry_after))

    async def _compute(self, body: bytes) -> None:
        """A GPU server's time for the call: call_ms + prompt_ms per prompt, in its turn."""
        seconds = (self.plan.call_ms + self.plan.prompt_ms * _prompt_count(body)) / 1000
        if self.turns is None:
            await asyncio.sleep(seconds)
            return
        async with self.turns:
            await asyncio.sleep(seconds)

    def _fault(self, header: bytes | None) -> Fault | None:
        """The header's fault, else the plan's draws: first an error status, then the fault."""
        if header is not None:
            try:
                return parse_fault(header.decode("latin-1"))
            except ValueError as exc:
                raise BadRequest(f"x-mock-fault: {exc}") from None
        plan = self.plan
        if plan.error_rate and self.rng.random() < plan.error_rate:
            return Fault("status", self.rng.choice(plan.error_statuses))
        if plan.fault is not None and self.rng.random() < plan.fault_rate:
            return plan.fault
        return None


def _answer(body: bytes, reasoning: bool) -> tuple[int, dict[str, Any]]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, {"message": "request body is not valid JSON", "data": []}
    return complete(decoded, reasoning=reasoning)


def _prompt_count(body: bytes) -> int:
    """How many prompts a request carries (0 when it is not a valid one: it gets a 400)."""
    try:
        prompts = orjson.loads(body)["params"]["prompt"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0
    return len(prompts) if isinstance(prompts, list) else 0


def _header_delay(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        delay = float(raw)
    except ValueError:
        raise BadRequest("x-mock-delay-ms must be a number of milliseconds") from None
    if not (math.isfinite(delay) and delay >= 0):
        raise BadRequest("x-mock-delay-ms must be a finite, non-negative number")
    return delay


def _header_retry_after(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise BadRequest("x-mock-retry-after must be a whole number of seconds >= 0")
    return seconds


# The faults


async def _send_fault(exchange: _Exchange) -> None:
    mode = exchange.fault.mode
    if mode in _FIXED_ANSWERS:
        await _send(exchange.send, *_FIXED_ANSWERS[mode])
    elif mode in _BARE_FAULTS:
        await _BARE_FAULTS[mode](exchange)
    else:
        status, payload = _answer(exchange.body, exchange.reasoning)
        if status == 200:
            await _ANSWER_FAULTS[mode](payload, exchange)
        else:
            await _send_json(exchange.send, status, payload)


async def _send_status(exchange: _Exchange) -> None:
    status = exchange.fault.arg
    headers = _JSON_HEADERS
    if exchange.retry_after is not None:
        headers += ((b"retry-after", str(exchange.retry_after).encode()),)
    body = orjson.dumps({"message": f"mock fault: status {status}", "data": []})
    await _send(exchange.send, status, headers, body)


async def _hang(exchange: _Exchange) -> None:
    await _wait_for_disconnect(exchange.receive)


async def _send_headers_then_reset(exchange: _Exchange) -> None:
    await exchange.send(_start(200, _JSON_HEADERS, 1000))
    raise MockConnectionReset("x-mock-fault: reset")


async def _send_spoiled(payload: dict[str, Any], exchange: _Exchange) -> None:
    data: list[dict[str, Any]] = payload["data"]
    mode = exchange.fault.mode
    if mode == "wrong-count":
        del data[-1]
    for item in data:
        if mode == "non-string":
            item["output"] = [123]
        elif mode == "empty-output":
            item["output"] = []
    await _send_json(exchange.send, 200, payload)


async def _send_half_then_reset(payload: dict[str, Any], exchange: _Exchange) -> None:
    body = orjson.dumps(payload)
    await exchange.send(_start(200, _JSON_HEADERS, len(body)))
    await exchange.send(_body(body[: len(body) // 2], more=True))
    raise MockConnectionReset("x-mock-fault: reset-body")


async def _send_huge(payload: dict[str, Any], exchange: _Exchange) -> None:
    head, padding, tail = _padded_answer(payload, exchange.fault.arg)
    await exchange.send(_start(200, _JSON_HEADERS, len(head) + padding + len(tail)))
    for chunk in _chunks(head, padding, tail):
        await exchange.send(_body(chunk, more=True))
    await exchange.send(_body(b""))


def _padded_answer(payload: dict[str, Any], size: int) -> tuple[bytes, int, bytes]:
    """The answer as (head, padding, tail): `head`, then `padding` bytes of `_FILLER` text, then
    `tail` is the answer with its first output padded, at least `size` bytes in all."""
    first, *rest = payload["data"]
    output = orjson.dumps(first["output"][0])  # the padding goes before its closing quote
    head = b'{"data":[{"prompt":' + orjson.dumps(first["prompt"]) + b',"output":[' + output[:-1]
    others = b"".join(b"," + orjson.dumps(item) for item in rest)
    tail = b'"],"params":' + orjson.dumps(first["params"]) + b"}" + others + b'],"message":"ok"}'
    return head, max(0, size - len(head) - len(tail)), tail


def _chunks(head: bytes, padding: int, tail: bytes) -> Iterator[bytes]:
    """`head`, `padding` bytes of filler and `tail`, in chunks of CHUNK_BYTES (a long head
    or the tail may make one chunk longer)."""
    first = min(padding, max(0, CHUNK_BYTES - len(head)))
    yield head + _FILLER[:first]
    padding -= first
    while padding > CHUNK_BYTES:
        yield _FILLER
        padding -= CHUNK_BYTES
    yield _FILLER[:padding] + tail


async def _send_trickle(payload: dict[str, Any], exchange: _Exchange) -> None:
    await exchange.send(_start(200, _JSON_HEADERS, TRICKLE_LENGTH))
    left = asyncio.ensure_future(_wait_for_disconnect(exchange.receive))
    try:
        for byte in itertools.chain(orjson.dumps(payload), itertools.repeat(ord(" "))):
            await exchange.send(_body(bytes((byte,)), more=True))
            done, _ = await asyncio.wait({left}, timeout=TRICKLE_SECONDS)
            if done:
                return
    finally:
        left.cancel()


_BARE_FAULTS: Mapping[str, Callable[[_Exchange], Awaitable[None]]] = {
    "status": _send_status,
    "hang": _hang,
    "reset": _send_headers_then_reset,
}
_ANSWER_FAULTS: Mapping[str, Callable[[dict[str, Any], _Exchange], Awaitable[None]]] = {
    "wrong-count": _send_spoiled,
    "non-string": _send_spoiled,
    "empty-output": _send_spoiled,
    "reset-body": _send_half_then_reset,
    "huge": _send_huge,
    "trickle": _send_trickle,
}


# ASGI plumbing


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _start(status: int, headers: _Headers, length: int) -> Message:
    headers += ((b"content-length", str(length).encode()),)
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def _body(chunk: bytes, *, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _send(send, status, _JSON_HEADERS, orjson.dumps(payload))


async def _send(send: Send, status: int, headers: _Headers, body: bytes) -> None:
    await send(_start(status, headers, len(body)))
    await send(_body(body))


async def _run_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _DropResetTracebacks(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate `reset` fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], MockConnectionReset))


def run_mock_upstream(
    host: str, port: int, *, plan: FaultPlan | None = None, delay_ms: float | None = None
) -> None:
    """Serve the mock upstream with uvicorn until interrupted (arguments as `create_mock_app`)."""
    import importlib.util

    import uvicorn

    app = create_mock_app(plan=plan, delay_ms=delay_ms)
    has = importlib.util.find_spec
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if has("uvloop") else "auto",
        http="httptools" if has("httptools") else "auto",
        access_log=False,
        log_level="warning",
        # `hang` and `trickle` hold connections until the client leaves: do not wait for them.
        timeout_graceful_shutdown=1,
    )
    # After Config: it applies uvicorn's logging config, which must not replace the filter.
    logging.getLogger("uvicorn.error").addFilter(_DropResetTracebacks())
    logger.info("mock upstream listening on http://%s:%d (%s)", host, port, app)
    uvicorn.Server(config).run()
