"""Token counting for `usage`: exact with a local Hugging Face tokenizer, else an estimate.

The estimate counts one token per run of word characters and one per punctuation mark
(`"Hello, world!"` → 4). English text averages about 1.3 real tokens per word, so the estimate
is low by roughly a quarter on prose; it is stable, cheap and needs no files. The mock upstream
counts `max_tokens` in the same unit, so `finish_reason` agrees with it in the demo and tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Count tokens in the estimate unit (words and punctuation marks)."""
    return len(TOKEN_PATTERN.findall(text))


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
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def load_counter(tokenizer_path: Path | None) -> TokenCounter:
    """The counter for a model: exact when it names a tokenizer file, else the estimate."""
    if tokenizer_path is None:
        return EstimateCounter()
    return HuggingFaceCounter(tokenizer_path)
