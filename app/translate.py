"""What every front door shares between its request and its answer (pure): the model's
sampling defaults filled in (`resolve_sampling`), the limits every door checks (`check_max_tokens`,
`check_count`, `check_prompt_size`), and `finish_choice`, which turns one upstream output into a
`Choice` (echo stripped, stop applied and recorded, tokens counted) with its `usage`. Each API's
own translation is in app.protocols.* (OpenAI's chat and completions in app.protocols.openai).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from app.config import SamplingDefaults
from app.errors import InvalidRequest
from app.output.types import ToolCall
from app.schemas.custom import Sampling
from app.tokens import TokenCounter

StripPrompt = Literal["auto", "always", "never"]
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class Choice:
    """One finished completion."""

    index: int
    text: str
    finish_reason: FinishReason
    completion_tokens: int
    # Read from the text when the request asked for tools, JSON or reasoning (app.output):
    calls: list[ToolCall] | None = None
    reasoning: str | None = None
    problems: list[str] | None = None  # how the answer broke the form asked for (asked again)
    raw: str | None = None  # the whole answer as the model wrote it, prefill included
    stop_sequence: str | None = None  # the stop sequence the text was cut at, if any


class AskedSampling(Protocol):
    """The sampling a client asked for (None: the model's default)."""

    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def top_k(self) -> int | None: ...


def resolve_sampling(
    request: AskedSampling, defaults: SamplingDefaults, max_tokens: int | None
) -> Sampling:
    """The request's generation parameters, the model's defaults where it gives none."""
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else defaults.max_tokens,
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        top_k=defaults.top_k if request.top_k is None else request.top_k,
    )


def check_max_tokens(requested: int | None, cap: int | None, param: str) -> None:
    """A client's max_tokens above the model's configured cap is a 400 naming the param."""
    if requested is not None and cap is not None and requested > cap:
        raise InvalidRequest(
            f"'{param}' is {requested}, above this model's limit of {cap}.", param=param
        )


def check_count(count: int, limit: int, param: str, what: str) -> None:
    """More items than the proxy takes (messages, prompts) is a 400 naming the param."""
    if count > limit:
        raise InvalidRequest(f"The request has {count} {what}; the limit is {limit}.", param=param)


def check_prompt_size(prompts: list[str], limit: int, param: str) -> None:
    """The text sent upstream (each prompt once per choice) must stay within `limit` chars."""
    size = sum(len(prompt) for prompt in prompts)
    if size > limit:
        raise InvalidRequest(
            f"The prompt text to generate from is {size} characters (counting each of the n "
            f"choices); the limit is {limit}.",
            param=param,
            code="context_length_exceeded",
        )


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    """The stop parameter as a tuple of non-empty strings."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    return tuple(item for item in items if item)


def strip_echo(output: str, prompt: str, mode: StripPrompt) -> str:
    """Remove the prompt the custom endpoint echoes at the start of its output.

    `auto` strips it when the output starts with it exactly; `always` drops the prompt's length
    of characters (for upstreams that echo it with small changes); `never` keeps the output.
    """
    if mode == "never" or not prompt:
        return output
    if output.startswith(prompt):
        return output[len(prompt) :]
    if mode == "always":
        return output[len(prompt) :]
    return output


def apply_stop(text: str, stops: Iterable[str]) -> tuple[str, str | None]:
    """Cut the text before the earliest stop sequence; say which one matched (None: none).
    Of several starting at the same place, the first listed."""
    cut = len(text)
    matched = None
    for stop in stops:
        position = text.find(stop)
        if position != -1 and position < cut:
            cut = position
            matched = stop
    return text[:cut], matched


def finish_choice(
    index: int,
    output: str,
    prompt: str,
    *,
    strip: StripPrompt,
    stops: tuple[str, ...],
    max_tokens: int,
    counter: TokenCounter,
    chat: bool,
) -> Choice:
    """One upstream output as a finished choice: echo stripped, stop applied, tokens counted.

    For chat the leading white space left between prompt and answer is dropped, as chat clients
    show the message as it is; legacy completions keep it, since callers append the text.
    """
    text = strip_echo(output, prompt, strip)
    if chat:
        text = text.lstrip()
    matched = None
    if stops:  # the plain path: no call
        text, matched = apply_stop(text, stops)
    tokens = counter.count(text)
    finish: FinishReason = "stop" if matched is not None or tokens < max_tokens else "length"
    return Choice(
        index=index,
        text=text,
        finish_reason=finish,
        completion_tokens=tokens,
        stop_sequence=matched,
    )


def usage(prompt_tokens: int, choices: Iterable[Choice]) -> dict[str, int]:
    """OpenAI's usage object; the prompt counts once however many choices there are."""
    completion = sum(choice.completion_tokens for choice in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
