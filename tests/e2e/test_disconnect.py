"""A client that leaves while the upstream works: real `serve` processes, a real upstream socket.

The upstream (tests/scripted_upstream.py) reads each request and holds it until the proxy closes
the connection, noting when. Every model has two deployments and a fallback on that upstream,
so a retry or a fallback would show as a second request. Two proxies: `quiet` with the default
10 s keep-alive (nothing is sent before the answer), `chatty` with 0.2 s (the stream has started).
For each way of leaving: the upstream sees its connection closed within a second of the client
leaving, gets exactly one request, and the access line and /metrics say 499.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from tests.e2e.servers import Server, access_line, clean_env, scrape, serve_config
from tests.scripted_upstream import Peer, Upstream
from tests.waiting import until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

MESSAGES = [{"role": "user", "content": "Say something"}]
NOTICED_WITHIN = 1.0  # seconds from the client leaving to the upstream connection closing
MODELS = ("stream-early", "stream-late", "stream-started", "plain", "legacy")
_ids = itertools.count()


@dataclass
class HeldUpstream:
    """Requests by the proxy's request id, and when the proxy closed each one's connection."""

    upstream: Upstream | None = None
    requests: dict[str, int] = field(default_factory=dict)
    closed_at: dict[str, float] = field(default_factory=dict)

    async def hold(self, peer: Peer) -> None:
        request = await peer.read_request()
        if request is None:
            return
        request_id = _header(request, b"x-request-id")
        self.requests[request_id] = self.requests.get(request_id, 0) + 1
        await peer.until_closed()  # never answers: the proxy must be the one to close
        self.closed_at[request_id] = asyncio.get_running_loop().time()

    def url(self, path: str) -> str:
        assert self.upstream is not None
        return self.upstream.url(path)


def _header(request: bytes, name: bytes) -> str:
    for line in request.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    raise AssertionError(f"no {name!r} header in {request!r}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def held() -> AsyncIterator[HeldUpstream]:
    held = HeldUpstream()
    async with Upstream(held.hold) as upstream:
        held.upstream = upstream
        yield held


def _config(held: HeldUpstream, keepalive: float | None) -> dict[str, Any]:
    def model(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "deployments": [{"api_base": held.url(f"/{name}/a")}, {"api_base": held.url("/b")}],
            "fallbacks": ["backup"],
            "max_retries": 2,
            "retry_read_timeouts": True,
            "cooldown": {"failures": 1_000_000},
        }

    config: dict[str, Any] = {
        "models": [*map(model, MODELS), {"name": "backup", "api_base": held.url("/backup")}]
    }
    if keepalive is not None:
        config["stream_keepalive_seconds"] = keepalive
    return config


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxies(
    held: HeldUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Server]]:
    log_dir = tmp_path_factory.mktemp("disconnect")
    env = clean_env(PROXY_LOG_FORMAT="json")
    quiet, chatty = await asyncio.gather(
        asyncio.to_thread(serve_config, log_dir, "quiet", _config(held, None), env),
        asyncio.to_thread(serve_config, log_dir, "chatty", _config(held, 0.2), env),
    )
    try:
        yield {"quiet": quiet, "chatty": chatty}
    finally:
        await asyncio.gather(asyncio.to_thread(quiet.stop), asyncio.to_thread(chatty.stop))


def _requests(proxy: Server, model: str) -> dict[str, float]:
    """proxy_requests_total for the model, by status."""
    return {
        sample.labels["status"]: sample.value
        for sample in scrape(proxy)
        if sample.name == "proxy_requests_total" and sample.labels["model"] == model
    }


async def _leave_waiting(proxy: Server, model: str, request_id: str) -> None:
    """httpx, giving up after 0.5 s without an answer."""
    body = {"model": model, "messages": MESSAGES}
    headers = {"x-request-id": request_id}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=httpx.Timeout(10, read=0.5)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=body, headers=headers)


async def _leave_sdk_stream(proxy: Server, model: str, request_id: str, patience: float) -> None:
    """The OpenAI SDK, streaming, giving up after `patience` s."""
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="x", timeout=patience, max_retries=0
    ) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                extra_headers={"x-request-id": request_id},
            )


async def _leave_after_a_keepalive(proxy: Server, model: str, request_id: str) -> None:
    """httpx, streaming: the first keep-alive arrives, then the client goes."""
    body = {"model": model, "messages": MESSAGES, "stream": True}
    headers = {"x-request-id": request_id}
    async with (
        httpx.AsyncClient(base_url=proxy.url, timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == ": keep-alive"


async def _leave_legacy(proxy: Server, model: str, request_id: str) -> None:
    """A legacy completion, not streamed, through the SDK, giving up after 0.5 s."""
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="x", timeout=0.5, max_retries=0
    ) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.completions.create(
                model=model, prompt="Say something", extra_headers={"x-request-id": request_id}
            )


async def _check_cancelled_at_once(
    held: HeldUpstream, proxy: Server, model: str, leave: Callable[[str], Awaitable[None]]
) -> dict[str, Any]:
    """The client leaves; the upstream connection closes within NOTICED_WITHIN, one request
    went upstream, and the proxy logged and counted 499. Returns the access line."""
    request_id = f"disconnect-{model}-{next(_ids)}"
    loop = asyncio.get_running_loop()
    await leave(request_id)
    left = loop.time()  # the client's connection is closed once `leave` returns

    await until(lambda: request_id in held.closed_at, seconds=10)
    assert held.closed_at[request_id] - left < NOTICED_WITHIN

    line = await asyncio.to_thread(access_line, proxy, request_id)
    assert line["status"] == 499
    assert line["message"].endswith(" 499")
    assert line["client_disconnected"] is True
    # The request's work is over (its line is written): nothing was retried or fell back.
    assert held.requests[request_id] == 1
    assert line["retries"] == 0 and line["fallback"] == ""
    assert await asyncio.to_thread(_requests, proxy, model) == {"499": 1.0}
    return line


@pytest.mark.parametrize(("model", "patience"), [("stream-early", 0.1), ("stream-late", 0.6)])
async def test_a_stream_left_before_its_first_byte_is_cancelled_at_once(
    held: HeldUpstream, proxies: dict[str, Server], model: str, patience: float
) -> None:
    # Before (0.1 s) and after (0.6 s) the proxy starts watching the client; 10 s before its
    # first keep-alive either way.
    proxy = proxies["quiet"]
    line = await _check_cancelled_at_once(
        held, proxy, model, lambda rid: _leave_sdk_stream(proxy, model, rid, patience)
    )
    assert line["stream"] is True
    assert line["ttfb_ms"] is None  # nothing was sent


async def test_a_stream_left_after_its_first_keepalive_is_cancelled_at_once(
    held: HeldUpstream, proxies: dict[str, Server]
) -> None:
    proxy = proxies["chatty"]
    line = await _check_cancelled_at_once(
        held,
        proxy,
        "stream-started",
        lambda rid: _leave_after_a_keepalive(proxy, "stream-started", rid),
    )
    assert line["stream"] is True
    assert line["ttfb_ms"] is not None  # the headers went out with status 200; the line says 499


@pytest.mark.parametrize("route", ["chat", "legacy"])
async def test_a_plain_request_left_waiting_is_cancelled_at_once(
    held: HeldUpstream, proxies: dict[str, Server], route: str
) -> None:
    proxy = proxies["quiet"]
    if route == "chat":
        line = await _check_cancelled_at_once(
            held, proxy, "plain", lambda rid: _leave_waiting(proxy, "plain", rid)
        )
    else:
        line = await _check_cancelled_at_once(
            held, proxy, "legacy", lambda rid: _leave_legacy(proxy, "legacy", rid)
        )
    assert line["stream"] is False
