"""Token counting for `usage`: exact with a local Hugging Face tokenizer, else an estimate.

The estimate counts one token per run of word characters and one per punctuation mark
(`"Hello, world!"` → 4). English text averages about 1.3 real tokens per word, so the estimate
is low by roughly a quarter on prose; it is stable, cheap and needs no files. The mock upstream
counts `max_tokens` in the same unit, so `finish_reason` agrees with it in the demo and tests.

Counting costs about 0.1 µs per character, so a text over 16 KiB is estimated from eight
evenly spaced 2 KiB samples: a 4 MiB prompt costs 2 ms instead of half a second of a stalled
event loop.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

# `\S` after `\w+` matches exactly `[^\w\s]` (a word character was taken by `\w+`), and the
# regex engine tests a category faster than a set: 10 % less time per count.
TOKEN_PATTERN = re.compile(r"\w+|\S")


SAMPLE_CHARS = 2048
SAMPLES = 8
LARGE_TEXT = SAMPLE_CHARS * SAMPLES


def estimate_tokens(text: str) -> int:
    """Count tokens in the estimate unit (words and punctuation marks); sampled over 16 KiB."""
    if len(text) <= LARGE_TEXT:
        return len(TOKEN_PATTERN.findall(text))
    step = len(text) // SAMPLES
    counted = sum(
        len(TOKEN_PATTERN.findall(text, start, start + SAMPLE_CHARS))
        for start in range(0, step * SAMPLES, step)
    )
    return round(counted * len(text) / LARGE_TEXT)


class TokenCounter(Protocol):
    """Counts the tokens of a text; `exact` says whether the count comes from a real tokenizer."""

    exact: bool

    def count(self, text: str) -> int: ...


class EstimateCounter:
    """The tokenizer-free estimate (see the module docstring)."""

    exact = False

    def count(self, text: str) -> int:
        return estimate_tokens(text)


class HuggingFaceCounter:
    """Exact counts from a local `tokenizer.json`, loaded once; never downloads anything."""

    exact = True

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer  # imported here: only models that name a file pay for it

        self._tokenizer = Tokenizer.from_file(str(path))

    def count(self, text: str) -> int:
        if not text:
            return 0
        if len(text) > LARGE_TEXT:
            # encode_batch releases the GIL while it works (encode does not), so a large text
            # counted in a worker thread leaves the event loop free.
            return len(self._tokenizer.encode_batch([text], add_special_tokens=False)[0].ids)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def load_counter(tokenizer_path: Path | None) -> TokenCounter:
    """The counter for a model: exact when it names a tokenizer file, else the estimate."""
    if tokenizer_path is None:
        return EstimateCounter()
    return HuggingFaceCounter(tokenizer_path)
