"""Reference server of the custom format ("mock upstream") for the demo, tests and benchmarks.

Answers POST on any path. Request and answer follow LiteLLM's custom-endpoint format:

    {"model": M, "params": {"prompt": [P, ...], "max_tokens": 256, "temperature": 1.0,
                            "top_p": 1.0, "top_k": -1}}
    → 200 {"data": [{"prompt": P, "output": [P + CONTINUATION],
                     "params": {"temperature": T, "top_k": K, "top_p": TP}}, ...], "message": "ok"}

Only `prompt` (a non-empty list of strings) is required; the other params default to the values
above (`null` also means the default). Bad requests get 400 and non-POST 405, both with
`{"message": "<what is wrong>", "data": []}`.

The continuation starts with a space and is English-ish text from a small fixed vocabulary: one to
five sentences, each ending with a period, 6–55 tokens in all. It is deterministic: seeded
from (model, prompt, its index in the list, temperature, top_p, top_k), except that with
temperature 0 the index is left out, so equal prompts get equal outputs as in greedy decoding.
A token is one match of `app.tokens.TOKEN_PATTERN` (a run of word characters or one punctuation
mark), the unit of the proxy's usage estimate; the continuation is cut to at most `max_tokens`
such tokens, so `estimate_tokens(continuation) <= max_tokens`.

Fault modes (header `x-mock-fault: MODE`, or `--fault MODE` for every request):

    status:CODE    CODE (400-599) with {"message": "mock fault: status CODE", "data": []}
    malformed      200 with a body that is not JSON
    no-data        200 {"message": "ok"}
    not-ok         200 {"message": "model overloaded", "data": []}
    html           200 text/html error page
    wrong-count    200, one item fewer than prompts (*)
    non-string     200, every output is [123] (*)
    empty-output   200, every output is [] (*)
    huge[:BYTES]   200, a valid answer of at least BYTES bytes (default 16 MiB; the first
                   output is padded with text), sent in 64 KiB chunks with a Content-Length (*)
    trickle        200 with a Content-Length of 1 GiB, then one byte of the answer (then
                   spaces) every 200 ms until the client disconnects: a slowloris (*)
    reset-body     200 with the real answer's Content-Length and half its body, then the
                   connection drops (*)
    reset          the status line and headers of a 200 with a Content-Length, then the
                   connection drops
    hang           never answers; returns when the client disconnects
    (*) answers 400 instead when the request is bad.

"The connection drops": the app raises `MockConnectionReset` after sending, so uvicorn closes
the connection and an HTTP client sees the body cut short (httpx: `RemoteProtocolError`);
through `httpx.ASGITransport` the exception itself reaches the caller.

Other request headers: `x-mock-delay-ms: MS` waits MS ms (asyncio.sleep) before answering;
`x-mock-retry-after: SECONDS` adds `Retry-After: SECONDS` to a `status:` answer. A bad header
value answers 400.

For every request, a `FaultPlan` (`create_mock_app(plan=...)`, or the options of
`custom-llm-proxy mock-upstream`) sets:

- `latency` (`--latency DIST`): a wait before each answer, drawn per request from `fixed:MS`,
  `uniform:LO-HI`, `exp:MEAN` (exponential) or `normal:MEAN,SD` (clipped at 0), in ms.
  `--delay-ms MS` (and `create_mock_app(delay_ms=MS)`) means `fixed:MS`.
- `error_rate`, `error_statuses` (`--error-rate P`, `--error-status CODE` repeatable, default
  503): that fraction of requests gets a `status:` fault, its code drawn from the statuses.
- `fault`, `fault_rate` (`--fault MODE`, `--fault-rate P`, default 1): a request the error draw
  spared gets MODE with probability P.
- `retry_after` (`--retry-after SECONDS`): `Retry-After` on every `status:` answer.
- `seed` (`--seed N`): seeds the app's own `random.Random`; the same requests in the same order
  then get the same draws.
A request's `x-mock-fault` replaces the error and fault draws, its `x-mock-delay-ms` the latency,
its `x-mock-retry-after` the plan's `retry_after`.

Counters: `GET /_mock/stats` → `{"requests": R, "faults": F, "in_flight": N}`: POSTs received,
POSTs answered with a fault (from a header or the plan), POSTs being handled now.
`POST /_mock/reset-stats` answers the same object and then sets `requests` and `faults` to 0
(`in_flight` is a gauge, not a count). Other methods on these two paths answer 405.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = -1  # "no top-k cut", as in vLLM

DELAY_HEADER = b"x-mock-delay-ms"
FAULT_HEADER = b"x-mock-fault"
RETRY_AFTER_HEADER = b"x-mock-retry-after"
STATS_PATH = "/_mock/stats"
RESET_STATS_PATH = "/_mock/reset-stats"

DEFAULT_ERROR_STATUSES = (503,)
HUGE_DEFAULT_BYTES = 16 << 20
CHUNK_BYTES = 64 << 10
TRICKLE_SECONDS = 0.2  # between two bytes of `trickle`
TRICKLE_LENGTH = 1 << 30  # the Content-Length `trickle` announces: days away at 5 bytes a second

FAULT_MODES = (
    "status:CODE", "malformed", "no-data", "not-ok", "html", "wrong-count", "non-string",
    "empty-output", "huge[:BYTES]", "trickle", "reset-body", "reset", "hang",
)  # fmt: skip
_PLAIN_MODES = frozenset(FAULT_MODES) - {"status:CODE", "huge[:BYTES]"}

_DETERMINERS = ("the", "a", "every", "this", "our", "each")
_ADJECTIVES = ("quick", "small", "careful", "quiet", "bright", "steady", "simple", "early")
_NOUNS = ("model", "proxy", "token", "answer", "server", "request", "river", "garden", "city")
_VERBS = ("reads", "sends", "finds", "keeps", "builds", "follows", "returns", "shapes")
_PREPOSITIONS = ("near", "under", "after", "before", "beside", "within")

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


class _BadRequest(ValueError):
    """A request the custom format does not allow; its message goes back in the 400 body."""


@dataclass(frozen=True, slots=True)
class _Params:
    prompts: list[str]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int


def complete(body: object) -> tuple[int, dict[str, Any]]:
    """Pure: a decoded request body → (HTTP status, JSON response body)."""
    try:
        model, params = _parse_request(body)
    except _BadRequest as exc:
        return 400, {"message": str(exc), "data": []}
    echoed = {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
    data = [
        {
            "prompt": prompt,
            "output": [prompt + _continuation(model, prompt, index, params)],
            "params": dict(echoed),
        }
        for index, prompt in enumerate(params.prompts)
    ]
    return 200, {"data": data, "message": "ok"}


def _parse_request(body: object) -> tuple[str, _Params]:
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("'model' must be a non-empty string")
    params = body.get("params")
    if not isinstance(params, dict):
        raise _BadRequest("'params' must be an object")
    prompts = params.get("prompt")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise _BadRequest("'params.prompt' must be a list of strings")
    if not prompts:
        raise _BadRequest("'params.prompt' must not be empty")
    max_tokens = _int_param(params, "max_tokens", DEFAULT_MAX_TOKENS)
    if max_tokens < 1:
        raise _BadRequest("'params.max_tokens' must be at least 1")
    temperature = _float_param(params, "temperature", DEFAULT_TEMPERATURE)
    if temperature < 0:
        raise _BadRequest("'params.temperature' must not be negative")
    top_p = _float_param(params, "top_p", DEFAULT_TOP_P)
    if not 0 <= top_p <= 1:
        raise _BadRequest("'params.top_p' must be between 0 and 1")
    top_k = _int_param(params, "top_k", DEFAULT_TOP_K)
    return model, _Params(prompts, max_tokens, temperature, top_p, top_k)


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"'params.{name}' must be an integer")
    return value


def _float_param(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"'params.{name}' must be a number")
    return float(value)


def _continuation(model: str, prompt: str, index: int, params: _Params) -> str:
    # Greedy decoding (temperature 0) must not depend on the position in the batch.
    position = None if params.temperature == 0 else index
    key = orjson.dumps([model, prompt, position, params.temperature, params.top_p, params.top_k])
    count, *choices = hashlib.shake_128(key).digest(6)
    pieces: list[str] = []  # each piece is exactly one TOKEN_PATTERN match
    for choice in choices[: 1 + count % 5]:
        pieces += _SENTENCES[choice]
        if len(pieces) >= params.max_tokens:
            break
    return "".join(pieces[: params.max_tokens])


def _build_sentences(entropy: Iterator[int]) -> tuple[tuple[str, ...], ...]:
    def pick(words: tuple[str, ...]) -> str:
        return words[next(entropy) % len(words)]

    def maybe(percent: int) -> bool:
        return next(entropy) * 100 < percent * 256

    sentences = []
    for _ in range(256):
        words = [pick(_DETERMINERS).capitalize()]
        if maybe(50):
            words.append(pick(_ADJECTIVES))
        words += [pick(_NOUNS), pick(_VERBS), pick(_DETERMINERS)]
        if maybe(50):
            words.append(pick(_ADJECTIVES))
        words.append(pick(_NOUNS))
        if maybe(40):
            words += [pick(_PREPOSITIONS), pick(_DETERMINERS), pick(_NOUNS)]
        sentences.append(tuple(" " + word for word in words) + (".",))
    return tuple(sentences)


# Built once from a fixed seed, so a continuation costs one hash and a few lookups;
# one seeded byte picks each of its sentences. Each piece is one token.
_SENTENCES = _build_sentences(iter(hashlib.shake_128(b"mock upstream").digest(256 * 13)))


# Latency distributions, in milliseconds


def _check_ms(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of milliseconds >= 0, not {value:g}")


@dataclass(frozen=True, slots=True)
class Fixed:
    """`fixed:MS`: always MS."""

    ms: float = 0.0

    def __post_init__(self) -> None:
        _check_ms("the delay", self.ms)

    def __str__(self) -> str:
        return f"fixed:{self.ms:g}"


@dataclass(frozen=True, slots=True)
class Uniform:
    """`uniform:LO-HI`: any value from LO to HI, evenly."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_ms("LO", self.low)
        _check_ms("HI", self.high)
        if self.low > self.high:
            raise ValueError(f"LO must not exceed HI ({self.low:g} > {self.high:g})")

    def __str__(self) -> str:
        return f"uniform:{self.low:g}-{self.high:g}"


@dataclass(frozen=True, slots=True)
class Exponential:
    """`exp:MEAN`: exponential with that mean (many short waits, a few long ones)."""

    mean: float

    def __post_init__(self) -> None:
        _check_ms("MEAN", self.mean)

    def __str__(self) -> str:
        return f"exp:{self.mean:g}"


@dataclass(frozen=True, slots=True)
class Normal:
    """`normal:MEAN,SD`: normal, clipped at 0."""

    mean: float
    sd: float

    def __post_init__(self) -> None:
        _check_ms("MEAN", self.mean)
        _check_ms("SD", self.sd)

    def __str__(self) -> str:
        return f"normal:{self.mean:g},{self.sd:g}"


Latency = Fixed | Uniform | Exponential | Normal
LATENCY_FORMS = "fixed:MS, uniform:LO-HI, exp:MEAN or normal:MEAN,SD (milliseconds)"


def parse_latency(text: str) -> Latency:
    """`fixed:MS`, `uniform:LO-HI`, `exp:MEAN` or `normal:MEAN,SD` → a Latency; else ValueError."""
    kind, _, spec = text.strip().partition(":")
    try:
        if kind == "fixed":
            return Fixed(_number(spec))
        if kind == "uniform":
            return Uniform(*_number_pair(spec, "-"))
        if kind == "exp":
            return Exponential(_number(spec))
        if kind == "normal":
            return Normal(*_number_pair(spec, ","))
    except ValueError as exc:
        raise ValueError(f"bad latency {text!r}: {exc}") from None
    raise ValueError(f"unknown latency {text!r}; use {LATENCY_FORMS}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _number_pair(text: str, separator: str) -> tuple[float, float]:
    first, found, second = text.partition(separator)
    if not found:
        raise ValueError(f"expected two numbers separated by {separator!r}")
    return _number(first), _number(second)


def draw_ms(latency: Latency, rng: random.Random) -> float:
    """One delay in milliseconds from `latency`."""
    match latency:
        case Fixed(ms):
            return ms
        case Uniform(low, high):
            return rng.uniform(low, high)
        case Exponential(mean):
            return rng.expovariate(1 / mean) if mean > 0 else 0.0
        case Normal(mean, sd):
            return max(0.0, rng.gauss(mean, sd))


# Fault modes and the plan


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault mode; `arg` is the CODE of `status:CODE` or the BYTES of `huge:BYTES`."""

    mode: str
    arg: int = 0

    def __post_init__(self) -> None:
        if self.mode == "status":
            _check_status(self.arg)
        elif self.mode == "huge":
            if self.arg < 0:
                raise ValueError(f"huge:BYTES must not be negative, not {self.arg}")
        elif self.mode not in _PLAIN_MODES or self.arg:
            raise ValueError(f"unknown fault mode {str(self)!r}; one of {', '.join(FAULT_MODES)}")

    def __str__(self) -> str:
        return f"{self.mode}:{self.arg}" if self.mode in ("status", "huge") else self.mode


def parse_fault(text: str) -> Fault:
    """A fault mode such as `not-ok`, `status:503` or `huge:1000000` → a Fault; else ValueError."""
    mode, colon, arg = text.strip().partition(":")
    if mode == "huge" and not colon:
        return Fault("huge", HUGE_DEFAULT_BYTES)
    if mode not in ("status", "huge"):
        return Fault(text.strip())  # rejects anything but a plain mode
    try:
        number = int(arg)
    except ValueError:
        raise ValueError(f"bad fault mode {text!r}: {arg!r} is not a whole number") from None
    try:
        return Fault(mode, number)
    except ValueError as exc:
        raise ValueError(f"bad fault mode {text!r}: {exc}") from None


def _check_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise ValueError(f"a fault status must be 400..599, not {status}")


def _check_rate(name: str, rate: float) -> None:
    if not 0 <= rate <= 1:
        raise ValueError(f"{name} must be between 0 and 1, not {rate:g}")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The latency and faults of every request (see the module docstring); checked when built."""

    latency: Latency = Fixed()
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    fault: Fault | None = None
    fault_rate: float = 1.0
    retry_after: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_rate("the error rate", self.error_rate)
        _check_rate("the fault rate", self.fault_rate)
        if not self.error_statuses:
            raise ValueError("the error statuses must not be empty")
        for status in self.error_statuses:
            _check_status(status)
        if self.fault is None and self.fault_rate != 1.0:
            raise ValueError("a fault rate needs a fault mode")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry-after must be >= 0 seconds, not {self.retry_after}")

    def __str__(self) -> str:
        parts = [f"latency {self.latency}"]
        if self.error_rate:
            statuses = "/".join(map(str, self.error_statuses))
            parts.append(f"{self.error_rate:g} of requests get {statuses}")
        if self.fault is not None:
            parts.append(f"{self.fault_rate:g} of the others get {self.fault}")
        if self.retry_after is not None:
            parts.append(f"Retry-After {self.retry_after}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)


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
    receive: Receive
    send: Send
    retry_after: int | None


class _MockUpstream:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.stats = _Stats()

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
        except _BadRequest as exc:
            await _send_json(send, 400, {"message": str(exc), "data": []})
            return
        if delay_ms is None:
            delay_ms = draw_ms(self.plan.latency, self.rng)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if fault is None:
            await _send_json(send, *_answer(body))
            return
        self.stats.faults += 1
        if retry_after is None:
            retry_after = self.plan.retry_after
        await _send_fault(_Exchange(fault, body, receive, send, retry_after))

    def _fault(self, header: bytes | None) -> Fault | None:
        """The header's fault, else the plan's draws: first an error status, then the fault."""
        if header is not None:
            try:
                return parse_fault(header.decode("latin-1"))
            except ValueError as exc:
                raise _BadRequest(f"x-mock-fault: {exc}") from None
        plan = self.plan
        if plan.error_rate and self.rng.random() < plan.error_rate:
            return Fault("status", self.rng.choice(plan.error_statuses))
        if plan.fault is not None and self.rng.random() < plan.fault_rate:
            return plan.fault
        return None


def _answer(body: bytes) -> tuple[int, dict[str, Any]]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, {"message": "request body is not valid JSON", "data": []}
    return complete(decoded)


def _header_delay(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        delay = float(raw)
    except ValueError:
        raise _BadRequest("x-mock-delay-ms must be a number of milliseconds") from None
    if not (math.isfinite(delay) and delay >= 0):
        raise _BadRequest("x-mock-delay-ms must be a finite, non-negative number")
    return delay


def _header_retry_after(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise _BadRequest("x-mock-retry-after must be a whole number of seconds >= 0")
    return seconds


# The faults


async def _send_fault(exchange: _Exchange) -> None:
    mode = exchange.fault.mode
    if mode in _FIXED_ANSWERS:
        await _send(exchange.send, *_FIXED_ANSWERS[mode])
    elif mode in _BARE_FAULTS:
        await _BARE_FAULTS[mode](exchange)
    else:
        status, payload = _answer(exchange.body)
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
