"""Finished choices every answer and stream test runs over: (name, choice, the stop_sequence
the answer shows)."""

from __future__ import annotations

from app.output.types import ToolCall
from app.translate import Choice

WEATHER_ARGS = '{"city":"Paris, \\"FR\\"","days":[1,2,3],"units":{"t":"C","wind":"km/h"}}'

CHOICES: list[tuple[str, Choice, str | None]] = [
    ("text", Choice(0, "Sunny, 18C.", "stop", 5), None),
    ("cut by max_tokens", Choice(0, "Sunny, 18", "length", 4), None),
    ("empty text", Choice(0, "", "stop", 0), None),
    (
        "stop sequence known",
        Choice(0, "Sunny", "stop", 2, stop_sequence="\n\nHuman:"),
        "\n\nHuman:",
    ),
    (
        "one call, no text",
        Choice(0, "", "tool_calls", 9, calls=[ToolCall("get_weather", WEATHER_ARGS)]),
        None,
    ),
    (
        "reasoning, text and two calls",
        Choice(
            0,
            "Checking both.",
            "tool_calls",
            30,
            calls=[ToolCall("get_weather", WEATHER_ARGS), ToolCall("ping", "{}")],
            reasoning="Two cities, é and ü: two calls.",
        ),
        None,
    ),
    ("reasoning only", Choice(0, "Done.", "stop", 3, reasoning="Easy."), None),
    (
        "a call after the text was cut at a stop",  # the stop is not the reason: no stop shown
        Choice(0, "", "tool_calls", 4, calls=[ToolCall("ping", "{}")], stop_sequence="\n"),
        None,
    ),
]
IDS = [name for name, _choice, _stop in CHOICES]
USAGE = {"prompt_tokens": 21, "completion_tokens": 9}
