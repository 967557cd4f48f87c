"""OpenAI request models, in OpenAI's field order.

Only what the proxy reads is typed precisely. Knobs the custom format cannot carry are accepted
and dropped (`seed`, `user`, penalties, `logit_bias`); features it cannot honour are typed loosely
here and refused with a 400 in `app.translate`, so the client learns which `param` is the problem.
Unknown fields are allowed, as the OpenAI SDK's `extra_body` puts them at the top level (`top_k`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Stop = str | Annotated[list[str], Field(max_length=16)]
# Integers the proxy sends upstream stay within 32 bits: JSON encoders (and the upstream's own
# parsers) refuse or wrap larger ones.
INT32_MAX = 2**31 - 1


class _Request(BaseModel):
    # strict: "0.5" is not a number and "yes" is not a boolean, as with OpenAI itself.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class SamplingFields(_Request):
    """Fields chat and legacy completions share."""

    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: Any = None
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    n: int | None = Field(default=None, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: Stop | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None
    # Not OpenAI's: the custom format's own knob, sent through the SDK's extra_body.
    top_k: int | None = Field(default=None, ge=-1, le=INT32_MAX)


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    audio: Any = None
    function_call: Any = None
    functions: Any = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    modalities: Any = None
    parallel_tool_calls: Any = None
    response_format: Any = None
    tool_choice: Any = None
    tools: Any = None
    top_logprobs: Any = None


class CompletionRequest(SamplingFields):
    """POST /v1/completions (legacy)."""

    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[list[int]], Field(min_length=1)]
    )
    best_of: int | None = Field(default=None, ge=1, le=128)
    echo: bool | None = False
    suffix: str | None = None
