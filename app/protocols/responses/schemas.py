"""Request models for POST /v1/responses, in OpenAI's field order (CreateResponse).

Strict like `app.protocols.openai.schemas`: "0.5" is not a number. Unknown fields are kept, so that
`translate.check_features` refuses them by name (as OpenAI does), except `top_k`, the custom
format's own knob. Input items are typed loosely here, one model for every kind, so that
`app.protocols.responses.translate` can refuse what does not fit with the exact `param`
(`input[2].arguments`) instead of a union's unreadable error. Tools other than functions are
accepted and left out of the prompt (Codex always sends some); fields that change nothing here
(`reasoning`, `include`, `prompt_cache_key`, …) are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.protocols.openai.schemas import INT32_MAX, Temperature, TopP

_LOOSE = ConfigDict(extra="allow", strict=True)


class ContentPart(BaseModel):
    """`input_text` / `output_text` (the only kinds the custom endpoint can take)."""

    model_config = _LOOSE

    type: str
    text: str | None = None


class InputItem(BaseModel):
    """One item of `input`: a message (with or without `type: "message"`), a
    `function_call`, a `function_call_output`, a `reasoning` item (dropped), or another
    kind (a 400 naming it)."""

    model_config = _LOOSE

    type: str | None = None
    id: str | None = None
    # message
    role: str | None = None
    content: str | list[ContentPart] | None = None
    # function_call / function_call_output
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None


class ResponseTool(BaseModel):
    """A tool in the flat shape; only `type: "function"` ones reach the prompt."""

    model_config = _LOOSE

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedToolChoice(BaseModel):
    """`{"type": "function", "name": …}`; other types name tools the endpoint cannot run."""

    model_config = _LOOSE

    type: str
    name: str | None = None


class TextFormat(BaseModel):
    """`text.format`: the JSON schema's fields sit flat inside it, unlike chat's."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextParam(BaseModel):
    model_config = _LOOSE

    format: TextFormat | None = None
    verbosity: str | None = None


class CreateResponse(BaseModel):
    """POST /v1/responses."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)

    model: str = Field(min_length=1)
    # Optional, as OpenAI's: a request may only add instructions to a stored conversation.
    input: str | Annotated[list[InputItem], Field(min_length=1)] | None = None
    instructions: str | None = None
    tools: Annotated[list[ResponseTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    # OpenAI's minimum is 16; a custom endpoint has no reason to refuse less.
    max_output_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    # Not OpenAI's: the custom format's own knob, sent through the SDK's extra_body.
    top_k: int | None = Field(default=None, ge=-1, le=INT32_MAX)
    # Accepted and ignored: nothing here changes with them.
    reasoning: Any = None
    include: Any = None
    prompt_cache_key: Any = None
    client_metadata: Any = None
    truncation: Any = None
    service_tier: Any = None
    user: Any = None
    safety_identifier: Any = None
    stream_options: Any = None
    max_tool_calls: Any = None  # built-in tools' calls; none run here
    context_management: Any = None
    moderation: Any = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Any = None
    # OpenAI's, refused when set (app.protocols.responses.translate.check_features).
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    top_logprobs: int | None = None
