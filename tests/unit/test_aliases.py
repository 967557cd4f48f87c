"""Aliases: exact names and glob patterns, and the overlaps refused at start-up (as data)."""

from __future__ import annotations

from typing import Any

import pytest

from app.aliases import alias_conflicts, is_pattern, matches
from app.config import ModelConfig, ProxyConfig
from app.errors import ModelNotFound
from app.routing import build_router


@pytest.mark.parametrize(
    ("alias", "pattern"),
    [("claude-*", True), ("gpt-?", True), ("m[12]", True), ("claude-sonnet-4-5", False)],
)
def test_what_is_a_pattern(alias: str, pattern: bool) -> None:
    assert is_pattern(alias) is pattern


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("claude-*", "claude-sonnet-4-5-20250929", True),
        ("claude-*", "Claude-x", False),  # case-sensitive
        ("gpt-5*", "gpt-5-codex", True),
        ("gpt-5*", "gpt-4o", False),
        ("m?", "m1", True),
    ],
)
def test_matching(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


CONFLICTS: list[tuple[str, list[tuple[str, list[str]]], list[str]]] = [
    ("distinct", [("a", ["claude-*"]), ("b", ["gpt-*", "codex"])], []),
    ("one name twice", [("a", ["x"]), ("b", ["x"])], ["'x' names both model 'a' and 'b'"]),
    ("an alias that is another's name", [("a", ["b"]), ("b", [])], ["'b' names both"]),
    ("a pattern over another's name", [("a", ["claude-*"]), ("claude-opus", [])], ["matches"]),
    ("nested patterns", [("a", ["claude-*"]), ("b", ["claude-3-*"])], ["can match the same"]),
    ("the same pattern", [("a", ["gpt-*"]), ("b", ["gpt-*"])], ["can match the same"]),
    ("one model's own overlap is fine", [("a", ["claude-*", "claude-3-*", "a"])], []),
]


@pytest.mark.parametrize(
    ("models", "expected"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS]
)
def test_conflicts(models: list[tuple[str, list[str]]], expected: list[str]) -> None:
    problems = alias_conflicts(models)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def config(*models: dict[str, Any]) -> ProxyConfig:
    return ProxyConfig(models=[ModelConfig(api_base="http://127.0.0.1:1/x", **m) for m in models])


def test_overlapping_aliases_are_a_config_error_naming_both_models() -> None:
    with pytest.raises(ValueError, match="aliases overlap: pattern 'claude-\\*' of model 'a'"):
        config({"name": "a", "aliases": ["claude-*"]}, {"name": "b", "aliases": ["claude-3"]})


def test_the_router_resolves_names_then_exact_aliases_then_patterns() -> None:
    router = build_router(
        config(
            {"name": "big", "aliases": ["claude-opus-4", "claude-opus-*"]},
            {"name": "small", "aliases": ["claude-haiku-*", "claude-3-?-*"]},
        ),
        source="test",
        api_base=None,
    )
    assert router.resolve("claude-opus-4").name == "big"
    assert router.resolve("claude-opus-4-1").name == "big"
    assert router.resolve("claude-haiku-4-5").name == "small"
    assert router.resolve("claude-3-5-sonnet").name == "small"
    assert [name for name, _ in router.listed_names] == ["big", "small", "claude-opus-4"]
    with pytest.raises(ModelNotFound):
        router.resolve("gpt-4o")
