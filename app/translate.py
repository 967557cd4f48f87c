"""Pure translation between OpenAI requests/responses and the custom format.

Data in, data out: no I/O, no web framework. The steps, in the order a request meets them:
`check_chat_features` / `completion_prompts` refuse what the custom format cannot honour,
`resolve_sampling` fills the model's defaults,
`finish_choice` turns one upstream output into a choice (echo stripped, stop applied, tokens
counted), and `to_chat_completion` / `to_text_completion` build the OpenAI answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.config import SamplingDefaults
from app.errors import InvalidRequest, UnsupportedParameter
from app.output.types import ToolCall
from app.schemas.custom import Sampling
from app.schemas.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
)
from app.tokens import TokenCounter

StripPrompt = Literal["auto", "always", "never"]
FinishReason = Literal["stop", "length", "tool_calls"]

# Chat features the proxy cannot honour: silently ignoring them would lie to the client.
# (`tools` and `response_format` are honoured by the proxy itself: app.chat_tools.)
_UNSUPPORTED_CHAT = ("functions", "function_call", "audio")


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


def check_chat_features(request: ChatCompletionRequest) -> None:
    """Refuse, with the offending `param`, what the custom format cannot do."""
    for name in _UNSUPPORTED_CHAT:
        value = getattr(request, name)
        if value in (None, [], {}):
            continue
        raise UnsupportedParameter(
            f"'{name}' is not supported: send 'tools' instead of functions; audio cannot be made",
            param=name,
        )
    if request.logprobs or request.top_logprobs is not None:
        param = "logprobs" if request.logprobs else "top_logprobs"
        raise UnsupportedParameter(
            "log probabilities are not supported by the custom endpoint", param=param
        )
    if request.modalities not in (None, ["text"]):
        raise UnsupportedParameter(
            "only the 'text' modality is supported by the custom endpoint", param="modalities"
        )


def message_text(message: ChatMessage, index: int) -> str:
    """A message's content as one string (text parts joined by newlines); a 400 naming the
    part for anything but text."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part_index, part in enumerate(content):
        if part.type == "text" and part.text is None:
            raise InvalidRequest(
                "a content part of type 'text' needs a 'text' string",
                param=f"messages[{index}].content[{part_index}].text",
            )
        if part.type != "text" or part.text is None:
            raise UnsupportedParameter(
                f"content parts of type '{part.type}' are not supported: "
                "the custom endpoint takes text only",
                param=f"messages[{index}].content[{part_index}].type",
            )
        texts.append(part.text)
    return "\n".join(texts)


def completion_prompts(request: CompletionRequest) -> list[str]:
    """The legacy endpoint's prompts as strings, refusing what cannot be honoured."""
    prompt = request.prompt
    if isinstance(prompt, str):
        prompts = [prompt]
    elif all(isinstance(item, str) for item in prompt):
        prompts = [str(item) for item in prompt]
    else:
        raise UnsupportedParameter(
            "token-id prompts are not supported: send the prompt as text", param="prompt"
        )
    if request.suffix:
        raise UnsupportedParameter("'suffix' is not supported", param="suffix")
    if request.logprobs is not None:
        raise UnsupportedParameter("'logprobs' is not supported", param="logprobs")
    if request.best_of is not None and request.best_of != (request.n or 1):
        raise UnsupportedParameter("'best_of' other than n is not supported", param="best_of")
    return prompts


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


def chat_max_tokens(request: ChatCompletionRequest) -> int | None:
    """`max_completion_tokens` (the current name) wins over `max_tokens` (the deprecated one)."""
    if request.max_completion_tokens is not None:
        return request.max_completion_tokens
    return request.max_tokens


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


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class AnswerHead:
    """What the answer, and every chunk, of one completion shares."""

    id: str
    created: int
    model: str
    fingerprint: str

    def fields(self, object_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }


def to_chat_completion(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int]
) -> dict[str, Any]:
    """The `chat.completion` object, with every field OpenAI's schema requires."""
    return {
        **head.fields("chat.completion"),
        "choices": [
            {
                "index": choice.index,
                "message": _chat_message(head, choice),
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for choice in choices
        ],
        "usage": usage,
    }


def _chat_message(head: AnswerHead, choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text,
        "refusal": None,
        "annotations": [],
    }
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    if choice.calls:
        message["tool_calls"] = chat_tool_calls(head, choice)
        if not choice.text:
            message["content"] = None
    return message


def chat_tool_calls(head: AnswerHead, choice: Choice) -> list[dict[str, Any]]:
    """A choice's calls as OpenAI's `tool_calls`; ids unique in the answer and the same in a
    stream as in the JSON answer."""
    return [
        {
            "id": tool_call_id(head, choice.index, position),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for position, call in enumerate(choice.calls or ())
    ]


def tool_call_id(head: AnswerHead, choice: int, position: int) -> str:
    """`call_` and the answer's own id digits, then the choice and the call's position."""
    digits = head.id.rpartition("-")[2]
    return f"call_{digits}{choice:02x}{position:02x}"


def to_text_completion(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int]
) -> dict[str, Any]:
    """The legacy `text_completion` object."""
    return {
        **head.fields("text_completion"),
        "choices": [
            {
                "index": choice.index,
                "text": choice.text,
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for choice in choices
        ],
        "usage": usage,
    }
