"""The data the output readers share: tools offered, calls found, what was wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ToolFormat = Literal["hermes", "llama3_json", "mistral", "pythonic", "none"]
TOOL_FORMATS: tuple[ToolFormat, ...] = ("hermes", "llama3_json", "mistral", "pythonic", "none")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the request offers the model."""

    name: str
    description: str = ""
    # JSON schema of the arguments; {"type": "object", "properties": {}} when the client gave none
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False


@dataclass(frozen=True, slots=True)
class RawCall:
    """A call as the model wrote it, its arguments already decoded (and repaired if needed)."""

    name: str
    arguments: Any  # a dict when the model wrote an object; anything else is checked and refused


@dataclass(frozen=True, slots=True)
class Extraction:
    """One output text split by a tool-format reader.

    `content`: the text that is not tool markup (text before the first call, stripped; "" when
    there is none). `calls`: every call block that decoded, in order. `problems`: one sentence
    per block that was recognised as a call but could not be decoded (shown to the model when
    it is asked again, and in the 502 when it never gets it right).
    """

    content: str
    calls: list[RawCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A checked call: the name of an offered tool and its arguments as compact JSON text."""

    name: str
    arguments: str
