"""Run one generation upstream and answer as JSON or as an SSE stream.

Everything that can fail before the answer exists (validation, routing, the template) has
already raised by the time `serve_generation` runs. The dispatcher retries across the model's
deployments; when they all failed, the model's `fallbacks` are tried in order, each with the
request rebuilt for its own template and defaults. Streams are answered by `KeepAliveSSE`:
an upstream failure before the first keep-alive is a real HTTP error, a later one travels
in-band. A client that leaves cancels the work, streamed or not.

Each front door (OpenAI chat and completions, Responses, Anthropic Messages) answers the same
`Finished` generation its own way: a `Door` builds its JSON answer and frames its stream.
app.protocols.openai.door is chat's and completions'; app.protocols.responses.door and
app.protocols.anthropic.door are the others'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive

from app.agent_output import read_choice
from app.disconnect import ClientConnection, DisconnectWatch
from app.errors import (
    ClientClosedRequest,
    InvalidModelOutput,
    InvalidRequest,
    Overloaded,
    UpstreamError,
)
from app.handlers import json_response
from app.limits import Grant
from app.limits.limiter import WithHeaders
from app.metrics import FALLBACKS
from app.output.spec import OutputSpec
from app.response_cache import CacheHeader, Run
from app.routing import ModelRoute
from app.schemas.custom import Sampling
from app.sse_response import Framing, KeepAliveSSE
from app.state import ProxyState
from app.telemetry import RequestRecord
from app.tokens import LARGE_TEXT
from app.translate import Choice, finish_choice, usage

log = logging.getLogger("app.serving")


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class Generation:
    """One request's work: the prompts to send (one per choice) and how to finish the outputs.

    `counted_prompts` are the distinct prompts whose tokens make `usage.prompt_tokens` (a chat
    prompt counts once however large `n` is). `retarget` builds the same request for another
    model (a fallback); it raises InvalidRequest when that model cannot take it. `record`
    collects what the work did, for the metrics and the access log (app.telemetry).
    """

    route: ModelRoute
    prompts: list[str]
    counted_prompts: list[str]
    sampling: Sampling
    stops: tuple[str, ...]
    chat: bool
    retarget: Callable[[ModelRoute], Generation]
    echo: bool = False
    record: RequestRecord | None = None
    client_key: str | None = None  # the client's key, for models that forward it upstream
    # Tools, JSON or reasoning asked for (None: plain text). The prompts end with `prefill`, the
    # start of the answer the proxy wrote for the model; `reask` makes the prompt that shows
    # the model its answer and what was wrong with it (app.generation).
    output: OutputSpec | None = None
    prefill: str = ""
    reask: Callable[[str, list[str]], str] | None = None


@dataclass(slots=True)
class Finished:
    choices: list[Choice]
    usage: dict[str, int]
    fallback: str = ""  # the fallback model that answered ("": the model asked)


Answer = Response | KeepAliveSSE[Any] | WithHeaders | CacheHeader


class Door(Framing[Finished], Protocol):
    """How one client API answers a finished generation: its JSON answer, or its stream
    (framed as app.sse_response.Framing says)."""

    @property
    def keep(self) -> Callable[[Finished], Awaitable[None]] | None:
        """Awaited once the generation finished, before anything of the answer is built (the
        Responses API stores its response); None for a door that keeps nothing."""

    def answer(self, finished: Finished) -> dict[str, Any]:
        """The JSON answer (non-streamed)."""


async def generate(state: ProxyState, job: Generation, request_id: str) -> Finished:
    """Ask the upstream for every prompt in one request and finish each output."""
    record = job.record
    fallback = ""
    try:
        outputs = await state.dispatcher.complete(
            job.route, job.prompts, job.sampling, request_id, record, job.client_key
        )
    except (UpstreamError, Overloaded) as error:
        if not job.route.config.fallbacks or not _worth_falling_back(error):
            raise
        job, outputs = await _fall_back(state, job, error, request_id)
        fallback = job.route.name
    if job.route.counter.exact and _any_large(job.counted_prompts, outputs):  # _needs_thread
        finished = await _finish_in_thread(job, outputs)
    else:
        finished = finish(job, outputs)  # inline: no coroutine per request on the hot path
    if job.output is not None:
        finished = await _ask_until_valid(state, job, finished, request_id)
    if fallback:
        finished.fallback = fallback
    if record is not None:
        note_finished(record, job, finished)
    return finished


def note_finished(record: RequestRecord, job: Generation, finished: Finished) -> None:
    """The request's record learns its usage, and its texts where the model logs content."""
    record.count_tokens(finished.usage)
    if record.log_content:
        record.prompt = job.counted_prompts
        # what the model wrote, its tool markup included (`raw`) when it was read for calls
        record.completion = [choice.raw or choice.text for choice in finished.choices]


async def _finish_in_thread(job: Generation, outputs: list[str]) -> Finished:
    # A real tokenizer takes seconds on megabytes; it releases the GIL, so a thread keeps
    # the event loop serving everyone else meanwhile.
    return await asyncio.to_thread(finish, job, outputs)


async def _ask_until_valid(
    state: ProxyState, job: Generation, finished: Finished, request_id: str
) -> Finished:
    """Ask again for the choices whose answer broke the form asked for, up to the model's
    `output_retries` times; InvalidModelOutput (502) if one still does. Usage adds up."""
    choices = list(finished.choices)
    usage = dict(finished.usage)
    retries = job.route.config.output_retries
    for _ in range(retries):
        wrong = [c for c in choices if c.problems]
        if not wrong or job.reask is None:
            break
        prompts = [job.reask(c.raw or "", c.problems or []) for c in wrong]
        outputs = await state.dispatcher.complete(
            job.route, prompts, job.sampling, request_id, job.record, job.client_key
        )
        retried = replace(job, prompts=prompts, counted_prompts=prompts)
        if _needs_thread(retried, outputs):
            again = await _finish_in_thread(retried, outputs)
        else:
            again = finish(retried, outputs)
        for old, new in zip(wrong, again.choices, strict=True):
            choices[old.index] = replace(new, index=old.index)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage[name] += again.usage[name]
    wrong = [c for c in choices if c.problems]
    if wrong:
        tries = "once" if retries == 0 else f"{retries + 1} times"
        raise InvalidModelOutput(
            f"The model's answer did not have the form the request asked for (asked {tries}): "
            + "; ".join(wrong[0].problems or [])
        )
    return Finished(choices, usage)


def _worth_falling_back(error: UpstreamError | Overloaded) -> bool:
    """Every deployment failed or is full; not when the upstream refused the request itself."""
    return isinstance(error, Overloaded) or error.retryable


async def _fall_back(
    state: ProxyState, job: Generation, error: UpstreamError | Overloaded, request_id: str
) -> tuple[Generation, list[str]]:
    """The first fallback model that answers; the primary model's error if none does."""
    record = job.record
    for name in job.route.config.fallbacks:
        route = state.router.resolve(name)
        try:
            fallback = job.retarget(route)
        except InvalidRequest as exc:
            log.info("fallback %s cannot take request %s: %s", name, request_id, exc.message)
            continue
        log.info(
            "model %s failed (%s); falling back to %s (request %s)",
            job.route.name,
            error.message,
            name,
            request_id,
        )
        FALLBACKS.labels(job.route.config.name, route.config.name).inc()
        try:
            outputs = await state.dispatcher.complete(
                route, fallback.prompts, fallback.sampling, request_id, record, job.client_key
            )
        except (UpstreamError, Overloaded) as exc:
            log.info("fallback %s failed too: %s (request %s)", name, exc.message, request_id)
            continue
        if record is not None:
            record.fallback = name
        return fallback, outputs
    raise error


def _needs_thread(job: Generation, outputs: list[str]) -> bool:
    """Counting these texts with the model's real tokenizer would hold the event loop."""
    return job.route.counter.exact and _any_large(job.counted_prompts, outputs)


def _any_large(*texts: list[str]) -> bool:
    return any(len(text) > LARGE_TEXT for group in texts for text in group)


def finish(job: Generation, outputs: list[str]) -> Finished:
    """The upstream's outputs as choices (echo stripped, stop applied, tokens counted)."""
    route = job.route
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
    if job.output is not None:
        choices = [read_choice(choice, job.output, job.prefill) for choice in choices]
    prompt_tokens = sum(route.counter.count(prompt) for prompt in job.counted_prompts)
    return Finished(choices, usage(prompt_tokens, choices))


async def serve_generation(
    state: ProxyState,
    job: Generation,
    *,
    request_id: str,
    receive: Receive,
    connection: ClientConnection | None = None,
    stream: bool,
    door: Door,
    grant: Grant | None = None,
    record: RequestRecord | None = None,
    cached: Run | None = None,
) -> Answer:
    """The HTTP answer for a generation, as JSON or as a stream, built by the client API's door.

    A rate-limit `grant` adds its x-ratelimit-* headers and is settled with the usage. The
    request's telemetry `record` learns the model here and the rest as the work goes. The work
    is cancelled when the client leaves: `connection` tells (app.disconnect), else `receive`.
    `cached` is the request's way through its model's response cache (app.response_cache):
    the answer may come from there, and carries `x-cache`.
    """
    if record is not None:
        record.bind(job.route, stream=stream)
        job.record = record
    keep = door.keep
    if not stream:
        with DisconnectWatch(receive, connection) as watch:
            try:
                finished = await _generate_settled(state, job, request_id, grant, cached)
                if keep is not None:
                    await keep(finished)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not watch.client_gone or task is None:
                    raise
                task.uncancel()
                raise ClientClosedRequest(
                    "client closed the connection; upstream request cancelled"
                ) from None
        headers = grant.headers if grant is not None and grant.headers else None
        if cached is not None:
            headers = {**(headers or {}), "x-cache": cached.outcome}
        return json_response(door.answer(finished), 200, headers)

    async def produce_stream() -> Finished:
        finished = await _generate_settled(state, job, request_id, grant, cached)
        if keep is not None:
            await keep(finished)
        return finished

    answer: Answer = KeepAliveSSE(
        produce_stream,
        interval=state.config.stream_keepalive_seconds,
        request_id=request_id,
        framing=door,
    )
    if cached is not None:
        answer = CacheHeader(answer, cached)
    return WithHeaders(answer, grant.headers) if grant is not None and grant.headers else answer


async def _generate_settled(
    state: ProxyState,
    job: Generation,
    request_id: str,
    grant: Grant | None,
    cached: Run | None = None,
) -> Finished:
    """`generate`, then the grant's token reservation settled with the usage (0 on failure)."""
    if cached is not None:
        return await _generate_cached(state, job, request_id, grant, cached)
    if grant is None:
        return await generate(state, job, request_id)
    tokens = 0
    try:
        finished = await generate(state, job, request_id)
        tokens = finished.usage["total_tokens"]
    finally:
        grant.settle(tokens)
    return finished


async def _generate_cached(
    state: ProxyState, job: Generation, request_id: str, grant: Grant | None, cached: Run
) -> Finished:
    """`generate` through the model's response cache. An answer this request did not make
    an upstream call for (a hit) settles its token reservation at 0: token limits count what
    the upstream generated. Its usage is reported all the same."""
    tokens = 0
    record = job.record
    try:
        finished = await cached.generate(partial(generate, state, job, request_id))
        if cached.own_call:
            tokens = finished.usage["total_tokens"]
        elif record is not None:
            note_finished(record, job, finished)
    finally:
        if record is not None:
            record.cache = cached.outcome
        if grant is not None:
            grant.settle(tokens)
    return finished
