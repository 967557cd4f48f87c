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

Request headers for tests:

- `x-mock-delay-ms: N` sleeps N ms (asyncio.sleep) before answering; when present it replaces the
  `delay_ms` given to `create_mock_app`, which otherwise applies to every request.
- `x-mock-fault: MODE`, one of
  `status:<400-599>` that status with `{"message": "mock fault: status N", "data": []}`;
  `malformed` 200 with a body that is not JSON; `no-data` 200 `{"message": "ok"}`;
  `not-ok` 200 `{"message": "model overloaded", "data": []}`;
  `wrong-count` one item fewer than prompts; `non-string` every output is `[123]`;
  `empty-output` every output is `[]` (these three answer 400 first if the request is bad);
  `html` 200 text/html error page; `hang` never answers, returns when the client disconnects;
  `reset` sends the status line and headers of a 200 with a Content-Length, then raises
  `MockConnectionReset`: uvicorn closes the connection, so an HTTP client sees the body cut
  short (httpx: `RemoteProtocolError`); through `httpx.ASGITransport` the exception itself
  propagates to the caller. An unknown mode or delay answers 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Iterator
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

_DETERMINERS = ("the", "a", "every", "this", "our", "each")
_ADJECTIVES = ("quick", "small", "careful", "quiet", "bright", "steady", "simple", "early")
_NOUNS = ("model", "proxy", "token", "answer", "server", "request", "river", "garden", "city")
_VERBS = ("reads", "sends", "finds", "keeps", "builds", "follows", "returns", "shapes")
_PREPOSITIONS = ("near", "under", "after", "before", "beside", "within")

_Headers = tuple[tuple[bytes, bytes], ...]
_JSON_HEADERS: _Headers = ((b"content-type", b"application/json"),)
_HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>mock upstream fault</p></body></html>"

logger = logging.getLogger(__name__)


class MockConnectionReset(Exception):
    """Raised by the `reset` fault after the headers went out, so the server drops the link."""


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


def create_mock_app(*, delay_ms: float = 0.0) -> ASGIApp:
    """The mock upstream as a raw ASGI callable; `delay_ms` delays every answer."""

    async def mock_upstream(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _send_json(send, 405, {"message": "only POST is allowed", "data": []})
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its body
        headers = dict(scope["headers"])
        try:
            delay = _header_delay(headers.get(DELAY_HEADER), delay_ms)
        except _BadRequest as exc:
            await _send_json(send, 400, {"message": str(exc), "data": []})
            return
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        fault = headers.get(FAULT_HEADER)
        if fault is None:
            await _send_json(send, *_answer(body))
        else:
            await _send_fault(fault.decode("latin-1").strip(), body, receive, send)

    return mock_upstream


def _answer(body: bytes) -> tuple[int, dict[str, Any]]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, {"message": "request body is not valid JSON", "data": []}
    return complete(decoded)


def _header_delay(raw: bytes | None, default_ms: float) -> float:
    if raw is None:
        return default_ms
    try:
        delay = float(raw)
    except ValueError:
        raise _BadRequest("x-mock-delay-ms must be a number of milliseconds") from None
    if not (math.isfinite(delay) and delay >= 0):
        raise _BadRequest("x-mock-delay-ms must be a finite, non-negative number")
    return delay


async def _send_fault(mode: str, body: bytes, receive: Receive, send: Send) -> None:
    simple: dict[str, tuple[int, _Headers, bytes]] = {
        "malformed": (200, _JSON_HEADERS, b'{"data": [{"prompt": "unterminated'),
        "no-data": (200, _JSON_HEADERS, b'{"message":"ok"}'),
        "not-ok": (200, _JSON_HEADERS, b'{"message":"model overloaded","data":[]}'),
        "html": (200, ((b"content-type", b"text/html; charset=utf-8"),), _HTML_PAGE),
    }
    if mode in simple:
        await _send(send, *simple[mode])
    elif mode in ("wrong-count", "non-string", "empty-output"):
        await _send_json(send, *_spoil(mode, *_answer(body)))
    elif mode.startswith("status:"):
        status = _fault_status(mode.removeprefix("status:"))
        if status is None:
            await _send_json(send, 400, {"message": f"bad x-mock-fault: {mode}", "data": []})
        else:
            await _send_json(send, status, {"message": f"mock fault: status {status}", "data": []})
    elif mode == "hang":
        while (await receive())["type"] != "http.disconnect":
            pass
    elif mode == "reset":
        headers = [*_JSON_HEADERS, (b"content-length", b"1000")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise MockConnectionReset("x-mock-fault: reset")
    else:
        await _send_json(send, 400, {"message": f"unknown x-mock-fault: {mode}", "data": []})


def _spoil(mode: str, status: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if status != 200:
        return status, payload
    data: list[dict[str, Any]] = payload["data"]
    if mode == "wrong-count":
        del data[-1]
    for item in data:
        if mode == "non-string":
            item["output"] = [123]
        elif mode == "empty-output":
            item["output"] = []
    return status, payload


def _fault_status(raw: str) -> int | None:
    try:
        status = int(raw)
    except ValueError:
        return None
    return status if 400 <= status <= 599 else None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _send(send, status, _JSON_HEADERS, orjson.dumps(payload))


async def _send(send: Send, status: int, headers: _Headers, body: bytes) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


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


def run_mock_upstream(host: str, port: int, *, delay_ms: float = 0.0) -> None:
    """Serve the mock upstream with uvicorn until interrupted."""
    import importlib.util

    import uvicorn

    has = importlib.util.find_spec
    config = uvicorn.Config(
        create_mock_app(delay_ms=delay_ms),
        host=host,
        port=port,
        loop="uvloop" if has("uvloop") else "auto",
        http="httptools" if has("httptools") else "auto",
        access_log=False,
        log_level="warning",
    )
    # After Config: it applies uvicorn's logging config, which must not replace the filter.
    logging.getLogger("uvicorn.error").addFilter(_DropResetTracebacks())
    logger.info("mock upstream listening on http://%s:%d (delay %g ms)", host, port, delay_ms)
    uvicorn.Server(config).run()
