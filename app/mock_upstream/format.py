"""The custom format as the mock upstream speaks it: a request body in, the answer out (pure).

See `app.mock_upstream` for the format and how the continuation is made.
"""

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from app.mock_upstream.tools import continue_answer, plan_answer, think
from app.tokens import TOKEN_PATTERN

DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = -1  # "no top-k cut", as in vLLM

_DETERMINERS = ("the", "a", "every", "this", "our", "each")
_ADJECTIVES = ("quick", "small", "careful", "quiet", "bright", "steady", "simple", "early")
_NOUNS = ("model", "proxy", "token", "answer", "server", "request", "river", "garden", "city")
_VERBS = ("reads", "sends", "finds", "keeps", "builds", "follows", "returns", "shapes")
_PREPOSITIONS = ("near", "under", "after", "before", "beside", "within")
_FILLER_THOUGHT = "The question is simple enough; I will answer it briefly."


class BadRequest(ValueError):
    """A request the custom format does not allow; its message goes back in the 400 body."""


@dataclass(frozen=True, slots=True)
class _Params:
    prompts: list[str]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int


def complete(body: object, *, reasoning: bool = False) -> tuple[int, dict[str, Any]]:
    """Pure: a decoded request body → (HTTP status, JSON response body).

    `reasoning`: every answer begins with a `<think>…</think>` block.
    """
    try:
        model, params = _parse_request(body)
    except BadRequest as exc:
        return 400, {"message": str(exc), "data": []}
    echoed = {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
    data = [
        {
            "prompt": prompt,
            "output": [prompt + _continuation(model, prompt, index, params, reasoning)],
            "params": dict(echoed),
        }
        for index, prompt in enumerate(params.prompts)
    ]
    return 200, {"data": data, "message": "ok"}


def _parse_request(body: object) -> tuple[str, _Params]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string")
    params = body.get("params")
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object")
    prompts = params.get("prompt")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'params.prompt' must be a list of strings")
    if not prompts:
        raise BadRequest("'params.prompt' must not be empty")
    max_tokens = _int_param(params, "max_tokens", DEFAULT_MAX_TOKENS)
    if max_tokens < 1:
        raise BadRequest("'params.max_tokens' must be at least 1")
    temperature = _float_param(params, "temperature", DEFAULT_TEMPERATURE)
    if temperature < 0:
        raise BadRequest("'params.temperature' must not be negative")
    top_p = _float_param(params, "top_p", DEFAULT_TOP_P)
    if not 0 <= top_p <= 1:
        raise BadRequest("'params.top_p' must be between 0 and 1")
    top_k = _int_param(params, "top_k", DEFAULT_TOP_K)
    return model, _Params(prompts, max_tokens, temperature, top_p, top_k)


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'params.{name}' must be an integer")
    return value


def _float_param(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'params.{name}' must be a number")
    return float(value)


def _continuation(model: str, prompt: str, index: int, params: _Params, reasoning: bool) -> str:
    planned = plan_answer(prompt)  # None unless the prompt offers tools or asks for JSON
    if planned is not None:
        return _cut(continue_answer(prompt, planned, reasoning=reasoning), params.max_tokens)
    if reasoning:
        filler = _filler(model, prompt, index, params).lstrip()
        return _cut(think(_FILLER_THOUGHT) + filler, params.max_tokens)
    return _filler(model, prompt, index, params)


def _cut(text: str, max_tokens: int) -> str:
    """`text` up to the end of its `max_tokens`-th token (the proxy's estimate unit)."""
    last = next(itertools.islice(TOKEN_PATTERN.finditer(text), max_tokens - 1, None), None)
    return text if last is None else text[: last.end()]


def _filler(model: str, prompt: str, index: int, params: _Params) -> str:
    # Greedy decoding (temperature 0) must not depend on the position in the batch.
    position = None if params.temperature == 0 else index
    key = orjson.dumps([model, prompt, position, params.temperature, params.top_p, params.top_k])
    count, *choices = hashlib.shake_128(key).digest(6)
    pieces: list[str] = []  # each piece is exactly one TOKEN_PATTERN match
    for choice in choices[: 1 + count % 5]:
        pieces += _SENTENCES[choice]
        if len(pieces) >= params.max_tokens:
            break
    return "".join(pieces[: params.max_tokens])


def _build_sentences(entropy: Iterator[int]) -> tuple[tuple[str, ...], ...]:
    def pick(words: tuple[str, ...]) -> str:
        return words[next(entropy) % len(words)]

    def maybe(percent: int) -> bool:
        return next(entropy) * 100 < percent * 256

    sentences = []
    for _ in range(256):
        words = [pick(_DETERMINERS).capitalize()]
        if maybe(50):
            words.append(pick(_ADJECTIVES))
        words += [pick(_NOUNS), pick(_VERBS), pick(_DETERMINERS)]
        if maybe(50):
            words.append(pick(_ADJECTIVES))
        words.append(pick(_NOUNS))
        if maybe(40):
            words += [pick(_PREPOSITIONS), pick(_DETERMINERS), pick(_NOUNS)]
        sentences.append(tuple(" " + word for word in words) + (".",))
    return tuple(sentences)


# Built once from a fixed seed, so a continuation costs one hash and a few lookups;
# one seeded byte picks each of its sentences. Each piece is one token.
_SENTENCES = _build_sentences(iter(hashlib.shake_128(b"mock upstream").digest(256 * 13)))
