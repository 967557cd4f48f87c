"""Anthropic Messages request models, in the order of Anthropic's API reference.

Content blocks have one loose model (`Block`, typed by its `type`) rather than a tagged union:
`app.protocols.anthropic.translate` checks each kind and answers a 400 naming the exact block
(`messages[0].content[1].type`), and kinds the custom endpoint cannot take (`image`,
`document`) are refused there, not by a pydantic error about union members.

Accepted and ignored, since they change nothing for the custom endpoint: `thinking`,
`context_management`, `output_config.effort`, `cache_control` (on blocks, system blocks and
tools), `service_tier`, `metadata`, `container`. Unknown fields are allowed (the SDK's
`extra_body`; new fields Claude Code sends before this proxy knows them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.protocols.openai.schemas import INT32_MAX


class _Model(BaseModel):
    # strict: "0.5" is not a number and "yes" is not a boolean, as with Anthropic itself.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class Block(_Model):
    """One content block of a message; which fields apply depends on `type`.

    text: `text`; tool_use: `id`, `name`, `input`; tool_result: `tool_use_id`, `content`
    (a string or text blocks), `is_error`; thinking: `thinking`, `signature`;
    redacted_thinking: `data`; image/document: `source` (refused).
    """

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    source: Any = None
    cache_control: Any = None


class Message(_Model):
    # "system" is not Anthropic's, but Claude Code sends system messages inside `messages`.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class SystemBlock(_Model):
    type: Literal["text"]
    text: str
    cache_control: Any = None


class Tool(_Model):
    """A custom tool (no `type`, or "custom") or one of Anthropic's own (`bash_20250124`,
    `web_search_20250305`, …): those have no schema the model could be shown, and are left
    out of the prompt, as are tools with `defer_loading` (Anthropic loads them only once its
    tool search finds them; Claude Code always sends a deferred placeholder)."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: Any = None
    defer_loading: bool | None = None


class ToolChoice(_Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None  # type "tool"
    disable_parallel_tool_use: bool | None = None


class OutputFormat(_Model):
    type: Literal["json_schema"]
    # `schema` is a BaseModel attribute: the field is read through its alias.
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Model):
    effort: str | None = None  # accepted and ignored
    format: OutputFormat | None = None


class Metadata(_Model):
    user_id: str | None = None


class _Conversation(_Model):
    """What a messages request and a count_tokens request share."""

    messages: Annotated[list[Message], Field(min_length=1)]
    model: str = Field(min_length=1)
    context_management: Any = None  # accepted and ignored
    mcp_servers: list[Any] | None = None  # refused when not empty
    output_config: OutputConfig | None = None
    system: str | list[SystemBlock] | None = None
    thinking: Any = None  # accepted and ignored: reasoning is the model's own (its config)
    tool_choice: ToolChoice | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None


class MessagesRequest(_Conversation):
    """POST /v1/messages."""

    max_tokens: int = Field(ge=1, le=INT32_MAX)
    container: Any = None  # accepted and ignored
    metadata: Metadata | None = None
    service_tier: str | None = None  # accepted and ignored
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)


class CountTokensRequest(_Conversation):
    """POST /v1/messages/count_tokens: the prompt the same request would render."""
