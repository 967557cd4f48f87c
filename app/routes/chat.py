"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request

from app.generation import plan_generation
from app.protocols.openai.answers import to_chat_completion
from app.protocols.openai.door import openai_door
from app.protocols.openai.events import chat_chunks
from app.protocols.openai.schemas import ChatCompletionRequest
from app.protocols.openai.translate import check_chat_features, to_ask
from app.routes._request import allowed_route, authorized_body, serve_job
from app.routing import ModelRoute
from app.serving import Answer, Generation
from app.translate import check_count


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
        prompt_param="messages",
        stream=bool(chat.stream),
        door=openai_door(state, chat, "chatcmpl", to_chat_completion, chat_chunks),
    )


def chat_generation(chat: ChatCompletionRequest, route: ModelRoute) -> Generation:
    """The chat request as a generation for one model: its template, its tools, its defaults."""
    return plan_generation(to_ask(chat), route)
