"""Micro-batching end to end: a real `serve` process, a real upstream socket, the OpenAI SDK.

The upstream (tests/scripted_upstream.py) notes every call it gets (path, x-request-id, prompts,
params) and answers each prompt with `got <marker>`, the `word-N` marker the prompt holds; a
model's path can make its first calls fail (503) or answer one output short. Batches here close
by being full (`max_batch`) long before their `max_wait_ms` of 10 s, so which requests share a
call never depends on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
import pytest_asyncio

from tests.e2e.servers import Server, access_line, clean_env, scrape, serve_config
from tests.scripted_upstream import Peer, Upstream, answer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

LONG_WAIT_MS = 10_000  # a batch here is sent because it is full, never by its timer
_words = itertools.count()


@dataclass
class Call:
    path: str
    request_ids: list[str]
    prompts: list[str]
    params: dict[str, Any]


@dataclass
class BatchUpstream:
    """Answers every prompt with `got <marker>`; `/fail-once` paths answer their first call
    with 503, `/short` paths one output short."""

    upstream: Upstream | None = None
    calls: list[Call] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)

    async def serve(self, peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            head, _, body = request.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            params = orjson.loads(body)["params"]
            prompts: list[str] = params.pop("prompt")
            ids = _header(head, b"x-request-id").split(",")
            self.calls.append(Call(path, ids, prompts, params))
            if path.startswith("/fail-once") and path not in self.failed:
                self.failed.add(path)
                await peer.write(answer(b'{"message": "busy", "data": []}', status=b"503 No"))
                continue
            data = [{"prompt": p, "output": [f"got {_marker(p)}"]} for p in prompts]
            if path.startswith("/short"):
                del data[-1]
            await peer.write(answer(orjson.dumps({"data": data, "message": "ok"})))

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]


def _header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    raise AssertionError(f"no {name!r} header in {head!r}")


def _marker(prompt: str) -> str:
    found = re.search(r"word-\d+", prompt)
    return found.group() if found else "?"


def _model(upstream: BatchUpstream, name: str, max_batch: int, **fields: Any) -> dict[str, Any]:
    assert upstream.upstream is not None
    return {
        "name": name,
        "api_base": upstream.upstream.url(f"/{name}"),
        "batching": {"max_batch": max_batch, "max_wait_ms": LONG_WAIT_MS},
        "cooldown": {"failures": 1_000_000},
        **fields,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[BatchUpstream]:
    batch = BatchUpstream()
    async with Upstream(batch.serve) as server:
        batch.upstream = server
        yield batch


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(
    upstream: BatchUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    config = {
        "models": [
            _model(upstream, "burst", 6),
            _model(upstream, "params", 2),
            _model(upstream, "leave", 3),
            _model(upstream, "fail-once", 4, max_retries=1, retry_backoff_seconds=0),
            _model(upstream, "short", 3, max_retries=0),
        ]
    }
    env = clean_env(PROXY_LOG_FORMAT="json")
    log_dir = tmp_path_factory.mktemp("batching")
    server = await asyncio.to_thread(serve_config, log_dir, "batching", config, env)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest_asyncio.fixture(loop_scope="module")
async def sdk(proxy: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="x", max_retries=0, timeout=30
    ) as client:
        yield client


def word() -> str:
    return f"word-{next(_words)}"


async def chat(sdk: openai.AsyncOpenAI, model: str, text: str, **params: Any) -> tuple[str, str]:
    """The answer's text and the request id the proxy gave it."""
    raw = await sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **params
    )
    completion = raw.parse()
    return completion.choices[0].message.content or "", raw.headers["x-request-id"]


async def chat_stream(sdk: openai.AsyncOpenAI, model: str, text: str) -> tuple[str, str]:
    """`chat`, streamed: the text of its chunks put together."""
    raw = await sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in raw.parse() if chunk.choices]
    return "".join(pieces), raw.headers["x-request-id"]


async def test_a_burst_goes_upstream_as_one_call_and_each_client_gets_its_own_answer(
    upstream: BatchUpstream, proxy: Server, sdk: openai.AsyncOpenAI
) -> None:
    words = [word() for _ in range(6)]

    results = await asyncio.gather(
        *(chat(sdk, "burst", f"Say {w}") for w in words[:4]),
        *(chat_stream(sdk, "burst", f"Say {w}") for w in words[4:]),
    )

    calls = upstream.calls_to("/burst")
    assert len(calls) == 1
    assert sorted(_marker(p) for p in calls[0].prompts) == sorted(words)
    assert [text for text, _ in results] == [f"got {w}" for w in words]
    assert sorted(calls[0].request_ids) == sorted(request_id for _, request_id in results)
    samples = await asyncio.to_thread(scrape, proxy)
    batch = {
        s.name: s.value for s in samples if s.labels.get("model") == "burst" and "batch" in s.name
    }
    assert batch["proxy_batch_size_count"] == 1
    assert batch["proxy_batch_size_sum"] == 6
    assert batch["proxy_batched_requests_total"] == 6
    assert batch["proxy_batch_upstream_calls_total"] == 1
    assert batch["proxy_batch_wait_seconds_count"] == 6


async def test_differing_parameters_never_share_a_call(
    upstream: BatchUpstream, sdk: openai.AsyncOpenAI
) -> None:
    cool = [word() for _ in range(2)]
    warm = [word() for _ in range(2)]

    results = await asyncio.gather(
        *(chat(sdk, "params", f"Say {w}", temperature=0.2) for w in cool),
        *(chat(sdk, "params", f"Say {w}", temperature=0.9) for w in warm),
    )

    assert [text for text, _ in results] == [f"got {w}" for w in cool + warm]
    calls = upstream.calls_to("/params")
    assert len(calls) == 2
    by_temperature = {c.params["temperature"]: sorted(map(_marker, c.prompts)) for c in calls}
    assert by_temperature == {0.2: sorted(cool), 0.9: sorted(warm)}


async def test_a_client_that_leaves_before_its_batch_is_sent_is_not_in_the_call(
    upstream: BatchUpstream, proxy: Server, sdk: openai.AsyncOpenAI
) -> None:
    gone, *stay = [word() for _ in range(4)]
    body = {"model": "leave", "messages": [{"role": "user", "content": f"Say {gone}"}]}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=httpx.Timeout(10, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=body, headers={"x-request-id": gone})
    # Its work is over once its access line is written: it left the batch then.
    assert (await asyncio.to_thread(access_line, proxy, gone))["status"] == 499

    results = await asyncio.gather(*(chat(sdk, "leave", f"Say {w}") for w in stay))

    assert [text for text, _ in results] == [f"got {w}" for w in stay]
    calls = upstream.calls_to("/leave")
    assert len(calls) == 1
    assert sorted(map(_marker, calls[0].prompts)) == sorted(stay)
    assert gone not in calls[0].request_ids


async def test_a_failing_batch_is_retried_as_a_whole(
    upstream: BatchUpstream, sdk: openai.AsyncOpenAI
) -> None:
    words = [word() for _ in range(4)]

    results = await asyncio.gather(*(chat(sdk, "fail-once", f"Say {w}") for w in words))

    assert [text for text, _ in results] == [f"got {w}" for w in words]
    calls = upstream.calls_to("/fail-once")
    assert len(calls) == 2  # the failed call, then its retry with the same prompts
    assert calls[0].prompts == calls[1].prompts
    assert sorted(map(_marker, calls[0].prompts)) == sorted(words)
    assert calls[0].request_ids == calls[1].request_ids


async def test_an_answer_with_the_wrong_number_of_outputs_is_a_502_for_everyone_in_it(
    upstream: BatchUpstream, sdk: openai.AsyncOpenAI
) -> None:
    words = [word() for _ in range(3)]

    results = await asyncio.gather(
        *(chat(sdk, "short", f"Say {w}") for w in words), return_exceptions=True
    )

    for result in results:
        assert isinstance(result, openai.APIStatusError)
        assert result.status_code == 502
        assert "2 outputs for 3 prompts" in result.message
    assert len(upstream.calls_to("/short")) == 1
