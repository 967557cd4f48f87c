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


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1)
    arguments: str  # JSON text, as the model wrote it


class MessageToolCall(BaseModel):
    """A call an earlier assistant message made (sent back by the client with the results)."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    # `schema` is a BaseModel attribute: the field is read through its alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: Annotated[list[ChatTool], Field(max_length=128)] | None = None
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
