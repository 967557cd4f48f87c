"""POST /v1/completions (legacy): every prompt × n goes upstream in one request."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request

from app.protocols.openai.answers import to_text_completion
from app.protocols.openai.door import openai_door
from app.protocols.openai.events import text_chunks
from app.protocols.openai.schemas import CompletionRequest
from app.protocols.openai.translate import completion_prompts
from app.routes._request import allowed_route, authorized_body, serve_job
from app.routing import ModelRoute
from app.serving import Answer, Generation
from app.translate import check_count, check_max_tokens, resolve_sampling, stop_sequences


async def create_completion(request: Request) -> Answer:
    """Text completion for one prompt or a list of prompts; choices in prompt order."""
    state, key, legacy = await authorized_body(request, CompletionRequest)
    route = allowed_route(state, key, legacy.model)
    if isinstance(legacy.prompt, list):  # before the prompts are multiplied by n
        check_count(len(legacy.prompt), state.config.max_messages, "prompt", "prompts")
    job = completion_generation(legacy, route)
    return await serve_job(
        request,
        state,
        key,
        job,
        prompt_param="prompt",
        stream=bool(legacy.stream),
        door=openai_door(state, legacy, "cmpl", to_text_completion, text_chunks),
    )


def completion_generation(legacy: CompletionRequest, route: ModelRoute) -> Generation:
    """The completion request as a generation for one model, with that model's defaults."""
    prompts = completion_prompts(legacy)
    check_max_tokens(legacy.max_tokens, route.config.max_tokens_cap, "max_tokens")
    n = legacy.n or 1
    return Generation(
        route=route,
        # OpenAI's order: all choices of prompt 0, then of prompt 1, ...
        prompts=[prompt for prompt in prompts for _ in range(n)],
        sampling=resolve_sampling(legacy, route.config.defaults, legacy.max_tokens),
        stops=stop_sequences(legacy.stop),
        counted_prompts=prompts,
        chat=False,
        echo=bool(legacy.echo),
        retarget=partial(completion_generation, legacy),
    )
