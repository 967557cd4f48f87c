"""POST /v1/completions (legacy): every prompt × n goes upstream in one request."""

from __future__ import annotations

from starlette.requests import Request

from app.routes._request import parse_body, read_body
from app.schemas.openai import CompletionRequest
from app.serving import Answer, Generation, serve_generation
from app.state import proxy_state
from app.streaming import text_chunks
from app.translate import (
    completion_prompts,
    resolve_sampling,
    stop_sequences,
    to_text_completion,
)


async def create_completion(request: Request) -> Answer:
    """Text completion for one prompt or a list of prompts; choices in prompt order."""
    state = proxy_state(request)
    state.keys.check(request.headers.get("authorization"))
    legacy = parse_body(CompletionRequest, await read_body(request, state.config.max_request_bytes))
    route = state.router.resolve(legacy.model)
    prompts = completion_prompts(legacy)
    n = legacy.n or 1
    job = Generation(
        route=route,
        # OpenAI's order: all choices of prompt 0, then of prompt 1, ...
        prompts=[prompt for prompt in prompts for _ in range(n)],
        sampling=resolve_sampling(legacy, route.config.defaults, legacy.max_tokens),
        stops=stop_sequences(legacy.stop),
        counted_prompts=prompts,
        chat=False,
        echo=bool(legacy.echo),
    )
    return await serve_generation(
        state,
        job,
        request_id=request.scope["request_id"],
        model=legacy.model,
        id_prefix="cmpl",
        stream=bool(legacy.stream),
        include_usage=bool(legacy.stream_options and legacy.stream_options.include_usage),
        build_answer=to_text_completion,
        build_chunks=text_chunks,
    )
