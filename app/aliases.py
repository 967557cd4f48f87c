"""Other names a model answers to: exact names, or glob patterns (`claude-*`) for clients that
ask for names of their own (Claude Code asks for `claude-…` models, Codex for its defaults).

`fnmatch` patterns, matched case-sensitively: `*` any run of characters, `?` one, `[…]` a
set. Names resolve in this order: a configured name or exact alias, then the patterns in config
order, then the passthrough upstream if one is set. At start-up `alias_conflicts` refuses
aliases that would make a name ambiguous: one name (configured or alias) for two models, or a
pattern of one model matching a name or a pattern of another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

_WILDCARD = re.compile(r"[*?\[]")
_SET = re.compile(r"\[!?\]?[^\]]*\]")


def is_pattern(alias: str) -> bool:
    """Whether the alias is a glob pattern rather than one exact name."""
    return _WILDCARD.search(alias) is not None


def matches(pattern: str, name: str) -> bool:
    return fnmatchcase(name, pattern)


def alias_conflicts(models: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """Sentences saying which names or patterns two models share; none when all is clear.

    `models`: (configured name, aliases) in config order.
    """
    owner: dict[str, str] = {}  # exact name → its model
    patterns: list[tuple[str, str]] = []  # (pattern, its model)
    problems: list[str] = []
    for model, aliases in models:
        for name in (model, *aliases):
            if is_pattern(name):
                patterns.append((name, model))
            elif owner.setdefault(name, model) != model:
                problems.append(f"{name!r} names both model {owner[name]!r} and {model!r}")
    problems += [
        f"pattern {pattern!r} of model {model!r} matches {name!r} of {other!r}"
        for pattern, model in patterns
        for name, other in owner.items()
        if other != model and matches(pattern, name)
    ]
    problems += [
        f"patterns {pattern!r} of model {model!r} and {second!r} of {other!r} can match "
        "the same name"
        for index, (pattern, model) in enumerate(patterns)
        for second, other in patterns[index + 1 :]
        if other != model and _overlap(pattern, second)
    ]
    return problems


def _overlap(first: str, second: str) -> bool:
    """Whether some name plainly matches both: each pattern tried on the other's simplest
    instance (`claude-*` and `claude-3-*` overlap: `claude-3-` matches both)."""
    return matches(first, _instance(second)) or matches(second, _instance(first))


def _instance(pattern: str) -> str:
    """The shortest name the pattern matches: `*` empty, `?` and sets one character."""

    def one_of(found: re.Match[str]) -> str:
        inside = found.group()[1:-1]
        if inside.startswith("!"):
            return "\0"  # a negated set: a character no alias uses
        return inside[:1] or "\0"

    with_sets = _SET.sub(one_of, pattern)
    return with_sets.replace("*", "").replace("?", "\0")
