"""Run one generation upstream and answer as JSON or as an SSE stream.

Everything that can fail before the answer exists (validation, routing, the template) has
already raised by the time `serve_generation` runs. The upstream call then either finishes before
the first keep-alive is due — and a failure is a real HTTP error — or the stream starts with
`: keep-alive` comments and a later failure travels in-band as `data: {"error": …}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from starlette.responses import Response, StreamingResponse

from app.errors import ProxyError
from app.handlers import json_response
from app.routing import ModelRoute
from app.schemas.custom import Sampling, parse_custom_response, to_custom_request
from app.state import ProxyState
from app.streaming import (
    KEEPALIVE,
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    error_stream,
    sse_body,
)
from app.translate import AnswerHead, Choice, finish_choice, usage
from app.upstream import UpstreamRequest

log = logging.getLogger("app.serving")


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class Generation:
    """One request's work: the prompts to send (one per choice) and how to finish the outputs."""

    route: ModelRoute
    prompts: list[str]
    sampling: Sampling
    stops: tuple[str, ...]
    prompt_tokens: int
    chat: bool
    echo: bool = False


BuildAnswer = Callable[[AnswerHead, Sequence[Choice], dict[str, int]], dict[str, Any]]
BuildChunks = Callable[[AnswerHead, Sequence[Choice], dict[str, int] | None], list[dict[str, Any]]]


async def generate(state: ProxyState, job: Generation, request_id: str) -> list[Choice]:
    """Ask the upstream for every prompt in one request and finish each output."""
    route = job.route
    response = await state.upstream.send(
        UpstreamRequest(
            endpoint=route.endpoint,
            body=to_custom_request(route.upstream_model, job.prompts, job.sampling),
            request_id=request_id,
            model=route.name,
        )
    )
    outputs = parse_custom_response(response.status, response.body, len(job.prompts))
    choices = [
        finish_choice(
            index,
            output,
            prompt,
            strip=route.config.strip_prompt,
            stops=job.stops,
            max_tokens=job.sampling.max_tokens,
            counter=route.counter,
            chat=job.chat,
        )
        for index, (output, prompt) in enumerate(zip(outputs, job.prompts, strict=True))
    ]
    if job.echo:
        choices = [replace(c, text=p + c.text) for c, p in zip(choices, job.prompts, strict=True)]
    return choices


async def serve_generation(
    state: ProxyState,
    job: Generation,
    *,
    request_id: str,
    model: str,
    id_prefix: str,
    stream: bool,
    include_usage: bool,
    build_answer: BuildAnswer,
    build_chunks: BuildChunks,
) -> Response:
    """The HTTP answer for a generation, as JSON or as SSE."""
    head = AnswerHead(
        id=f"{id_prefix}-{state.ids.next_hex()}",
        created=int(time.time()),
        model=model,
        fingerprint=state.fingerprint,
    )
    if not stream:
        choices = await generate(state, job, request_id)
        return json_response(build_answer(head, choices, usage(job.prompt_tokens, choices)))

    def render_stream(choices: list[Choice]) -> bytes:
        return sse_body(
            build_chunks(
                head, choices, usage(job.prompt_tokens, choices) if include_usage else None
            )
        )

    task = asyncio.ensure_future(generate(state, job, request_id))
    done, _ = await asyncio.wait((task,), timeout=state.config.stream_keepalive_seconds)
    if done:
        # Finished (or failed) before the first keep-alive was due: a failure is a real
        # HTTP error, and the stream goes out in one write.
        body = render_stream(task.result())
        return Response(body, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    return StreamingResponse(
        _keepalive_stream(task, state.config.stream_keepalive_seconds, render_stream, request_id),
        media_type=SSE_MEDIA_TYPE,
        headers=SSE_HEADERS,
    )


async def _keepalive_stream(
    task: asyncio.Future[list[Choice]],
    interval: float,
    render: Callable[[list[Choice]], bytes],
    request_id: str,
) -> AsyncIterator[bytes]:
    """Keep-alive comments until the upstream answers, then the events (or an in-band error)."""
    try:
        yield KEEPALIVE
        while True:
            done, _ = await asyncio.wait((task,), timeout=interval)
            if done:
                break
            yield KEEPALIVE
        try:
            body = render(task.result())
        except ProxyError as exc:
            log.warning(
                "upstream error after the stream started: %s (request %s)", exc.message, request_id
            )
            body = error_stream(exc.envelope())
        yield body
    finally:
        if not task.done():
            task.cancel()
            log.info(
                "client closed the stream; upstream request cancelled (request %s)", request_id
            )
