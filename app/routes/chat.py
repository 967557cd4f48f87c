"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from starlette.requests import Request

from app.chat_tools import needs_agent_path, to_output_spec, to_turns
from app.errors import InvalidRequest
from app.output.spec import OutputSpec
from app.prompts import PromptRenderError, Turn
from app.routes._request import allowed_route, authorized_body, serve_job
from app.routing import ModelRoute
from app.schemas.openai import ChatCompletionRequest
from app.serving import Answer, Generation
from app.streaming import chat_chunks
from app.tool_prompts import reask_turns, render_generation_prompt
from app.translate import (
    chat_max_tokens,
    check_chat_features,
    check_count,
    check_max_tokens,
    flatten_messages,
    resolve_sampling,
    stop_sequences,
    to_chat_completion,
)


async def create_chat_completion(request: Request) -> Answer:
    """Chat completion (streamed or not) from the model's custom endpoint."""
    state, key, chat = await authorized_body(request, ChatCompletionRequest)
    route = allowed_route(state, key, chat.model)
    check_chat_features(chat)
    check_count(len(chat.messages), state.config.max_messages, "messages", "messages")
    job = chat_generation(chat, route)
    return await serve_job(
        request,
        state,
        key,
        job,
        client=chat,
        prompt_param="messages",
        id_prefix="chatcmpl",
        build_answer=to_chat_completion,
        build_chunks=chat_chunks,
    )


def chat_generation(chat: ChatCompletionRequest, route: ModelRoute) -> Generation:
    """The chat request as a generation for one model: its template, its tools, its defaults."""
    if needs_agent_path(chat) or route.config.reasoning != "none":
        return _agent_generation(chat, route)
    try:
        prompt = route.template.render(flatten_messages(chat.messages))
    except PromptRenderError as exc:
        raise _unrenderable(exc) from exc
    return _generation(chat, route, prompt)


def _agent_generation(chat: ChatCompletionRequest, route: ModelRoute) -> Generation:
    """Tools and the answer's form go into the prompt; the answer is read for them."""
    spec = to_output_spec(chat, route.config)
    turns = to_turns(chat.messages)
    try:
        prompt, prefill = render_generation_prompt(route.template, turns, spec)
    except PromptRenderError as exc:
        raise _unrenderable(exc) from exc
    job = _generation(chat, route, prompt)
    if not spec.plain:
        job.output = spec
        job.prefill = prefill
        job.reask = partial(_reask_prompt, route, turns, spec)
    return job


def _reask_prompt(
    route: ModelRoute, turns: Sequence[Turn], spec: OutputSpec, answer: str, problems: list[str]
) -> str:
    again = reask_turns(turns, answer, problems, spec)
    return render_generation_prompt(route.template, again, spec)[0]


def _unrenderable(exc: PromptRenderError) -> InvalidRequest:
    return InvalidRequest(f"The messages cannot be rendered: {exc}", param="messages")


def _generation(chat: ChatCompletionRequest, route: ModelRoute, prompt: str) -> Generation:
    max_tokens = chat_max_tokens(chat)
    param = "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
    check_max_tokens(max_tokens, route.config.max_tokens_cap, param)
    return Generation(
        route=route,
        prompts=[prompt] * (chat.n or 1),
        sampling=resolve_sampling(chat, route.config.defaults, max_tokens),
        stops=stop_sequences(chat.stop),
        counted_prompts=[prompt],
        chat=True,
        retarget=partial(chat_generation, chat),
    )
