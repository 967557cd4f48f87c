"""Token counting: the documented estimate, and exact counts from a real local tokenizer.json."""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from app.config import ConfigError, ModelConfig, ProxyConfig, load_config
from app.routing import build_route, build_router
from app.tokens import EstimateCounter, HuggingFaceCounter, estimate_tokens, load_counter

SENTENCES = [
    "The capital of France is Paris.",
    "The capital of Italy is Rome.",
    "Paris is a city in France, and Rome is a city in Italy.",
    "What is the capital of Spain? It is Madrid.",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("Hello", 1),
        ("Hello, world!", 4),  # the module docstring's example
        ("don't", 3),
        ("3.14", 3),
        ("naïve café", 2),
        ("東京", 1),
        ("a_b c-d", 4),
        ("The capital of France is PARIS.\nThe capital", 9),
    ],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected
    assert EstimateCounter().count(text) == expected


def test_estimate_counts_a_word_run_or_a_punctuation_mark_per_token() -> None:
    """The documented unit (one per run of word characters, one per other non-space
    character), over random text of every kind of character, against that definition."""
    definition = re.compile(r"\w+|[^\w\s]")
    alphabet = string.printable + "éßñ東京—–…«»\u00a0\u2028\u200b¿¡€😀_٣"
    pick = random.Random(7)
    for _ in range(3000):
        text = "".join(pick.choice(alphabet) for _ in range(pick.randint(0, 80)))
        assert estimate_tokens(text) == len(definition.findall(text)), repr(text)


def test_estimate_counter_is_not_exact() -> None:
    assert EstimateCounter.exact is False
    assert isinstance(load_counter(None), EstimateCounter)


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    """A tiny BPE tokenizer trained here, with a BOS post-processor like real chat models."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=["[UNK]", "<s>"])
    tokenizer.train_from_iterator(SENTENCES, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize(
    "text",
    ["The capital of France is Paris.", "Madrid, Spain", "unbelievable zebras", "x"],
)
def test_hugging_face_counter_matches_the_tokenizer(tokenizer_file: Path, text: str) -> None:
    reference = Tokenizer.from_file(str(tokenizer_file))

    counter = HuggingFaceCounter(tokenizer_file)

    assert counter.exact is True
    expected = len(reference.encode(text, add_special_tokens=False).ids)
    assert counter.count(text) == expected
    # The BOS the post-processor adds is not part of the text.
    assert len(reference.encode(text).ids) == expected + 1


def test_hugging_face_counter_really_tokenizes(tokenizer_file: Path) -> None:
    counter = HuggingFaceCounter(tokenizer_file)

    # Words never seen in training split into sub-word pieces: more than the estimate's 2.
    assert counter.count("unbelievable zebras") > estimate_tokens("unbelievable zebras")
    assert counter.count("") == 0


def test_build_route_with_tokenizer_is_exact(tokenizer_file: Path) -> None:
    config = ModelConfig(name="tok", api_base="http://h.test/gen", tokenizer=tokenizer_file)
    reference = Tokenizer.from_file(str(tokenizer_file))
    text = "What is the capital of Italy?"

    route = build_route(config, source="cfg.yaml", index=0)

    assert route.counter.exact is True
    assert route.counter.count(text) == len(reference.encode(text, add_special_tokens=False).ids)


def test_tokenizer_relative_to_config_file_is_loaded(tokenizer_file: Path) -> None:
    path = tokenizer_file.parent / "proxy.yaml"
    path.write_text(
        "models:\n"
        "  - {name: exact, api_base: 'http://h.test/gen', tokenizer: tokenizer.json}\n"
        "  - {name: estimate, api_base: 'http://h.test/gen'}\n",
        encoding="utf-8",
    )

    router = build_router(load_config(path, environ={}), source=str(path), api_base=None)

    assert router.resolve("exact").counter.exact is True
    assert router.resolve("estimate").counter.exact is False


def test_corrupt_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}', encoding="utf-8")
    config = ProxyConfig(
        models=[ModelConfig(name="m", api_base="http://h.test/gen", tokenizer=bad)]
    )

    with pytest.raises(ConfigError) as caught:
        build_router(config, source="cfg.yaml", api_base=None)

    assert str(caught.value).startswith(f"cfg.yaml: models[0] (m).tokenizer: cannot load {bad}")


def test_large_texts_are_estimated_from_samples_close_to_the_full_count() -> None:
    from app.tokens import LARGE_TEXT, TOKEN_PATTERN

    text = "The capital of France is Paris, and it is lovely. " * 20_000
    assert len(text) > LARGE_TEXT
    exact = len(TOKEN_PATTERN.findall(text))
    assert abs(estimate_tokens(text) - exact) / exact < 0.01
    small = text[:LARGE_TEXT]
    assert estimate_tokens(small) == len(TOKEN_PATTERN.findall(small))
