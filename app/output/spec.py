"""What a request asks of the output, whichever API it came through (pure data).

The front doors build an `OutputSpec` from their own request fields (OpenAI's `tools`,
`tool_choice`, `response_format`; later Responses' and Anthropic's); the prompt side
(`app.tool_prompts`) and the readers (`app.output.reading`) take it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.output.types import ToolFormat, ToolSpec

ToolChoice = Literal["auto", "none", "required", "function"]
JsonMode = Literal["text", "json_object", "json_schema"]
Reasoning = Literal["think_tags", "none"]


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """The tools offered and the form the answer must take.

    `tool_choice` "function" means the call must be to `tool_name`. `json` other than "text"
    asks for one JSON object (validated against `schema` for json_schema). `tool_format` and
    `reasoning` come from the model's config: how this model writes calls and thoughts.
    """

    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    json: JsonMode = "text"
    schema: dict[str, Any] | None = None
    schema_name: str | None = None
    strict: bool = False
    tool_format: ToolFormat = "hermes"
    reasoning: Reasoning = "none"

    @property
    def offers_tools(self) -> bool:
        """Tools go into the prompt and calls are read from the answer."""
        return bool(self.tools) and self.tool_choice != "none" and self.tool_format != "none"

    @property
    def plain(self) -> bool:
        """Nothing to add to the prompt and nothing to read but the text (the fast path)."""
        return not self.offers_tools and self.json == "text" and self.reasoning == "none"


# What a request that asks nothing of the output asks: one shared instance (it is immutable).
PLAIN = OutputSpec()
