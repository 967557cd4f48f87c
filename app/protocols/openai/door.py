"""Chat's and legacy completions' door: how they answer a finished generation (app.serving.Door)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from app.errors import ProxyError
from app.protocols.openai.answers import AnswerHead
from app.protocols.openai.schemas import SamplingFields
from app.serving import Finished
from app.sse_response import DATA_FRAMING
from app.state import ProxyState
from app.streaming import KEEPALIVE, sse_body
from app.translate import Choice

BuildAnswer = Callable[[AnswerHead, Sequence[Choice], dict[str, int]], dict[str, Any]]


BuildChunks = Callable[[AnswerHead, Sequence[Choice], dict[str, int] | None], list[dict[str, Any]]]


class OpenAIDoor:
    """Chat's and legacy completions' answers: `build_answer`'s object, or `build_chunks`'
    chunks as `data:` events with `[DONE]` (the usage chunk when the client asked for it)."""

    __slots__ = ("head", "build_answer", "build_chunks", "include_usage")
    opening = b""
    keepalive = KEEPALIVE
    keep = None

    def __init__(
        self,
        head: AnswerHead,
        build_answer: BuildAnswer,
        build_chunks: BuildChunks,
        include_usage: bool,
    ) -> None:
        self.head = head
        self.build_answer = build_answer
        self.build_chunks = build_chunks
        self.include_usage = include_usage

    def answer(self, finished: Finished) -> dict[str, Any]:
        return self.build_answer(self.head, finished.choices, finished.usage)

    def body(self, result: Finished, opened: bool) -> bytes:  # noqa: ARG002  # opening is empty
        usage = result.usage if self.include_usage else None
        return sse_body(self.build_chunks(self.head, result.choices, usage))

    def failure(self, error: ProxyError | None, request_id: str) -> bytes:
        return DATA_FRAMING.failure(error, request_id)


def openai_door(
    state: ProxyState,
    client: SamplingFields,
    id_prefix: str,
    build_answer: BuildAnswer,
    build_chunks: BuildChunks,
) -> OpenAIDoor:
    """The door for one chat or completions request: a new id ("chatcmpl-…", "cmpl-…")."""
    head = AnswerHead(
        id=f"{id_prefix}-{state.ids.next_hex()}",
        created=int(time.time()),
        model=client.model,
        fingerprint=state.fingerprint,
    )
    include_usage = bool(client.stream_options and client.stream_options.include_usage)
    return OpenAIDoor(head, build_answer, build_chunks, include_usage)
