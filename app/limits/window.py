"""Sliding-window arithmetic, pure: budgets, charges, and the log of one budget's last minute.

A budget allows at most `limit` units (requests, or tokens) in any `WINDOW_SECONDS`. Its log
holds one entry per admitted request — when, and how many units — so the question "does this
request fit?" has an exact answer at any moment, minute boundaries included: the units of the
entries younger than the window, plus the request's, must not exceed the limit. A token entry
starts as a reservation and is settled later with the real figure.

The Redis backend keeps the same log in a sorted set and answers the same questions in Lua;
`SlidingWindow` is the in-memory form, and the reference the tests hold both to.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

WINDOW_SECONDS = 60.0

Kind = Literal["requests", "tokens"]
Scope = Literal["key", "model"]


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `limit` units of `kind` in any window, for one key or one model.

    `name` identifies the budget's log wherever it is kept (`key:alice:requests`); `holder`
    is the key's label or the model's name, for messages.
    """

    name: str
    kind: Kind
    limit: int
    scope: Scope
    holder: str

    @property
    def label(self) -> str:
        """Which limit this is, for metrics: key_rpm, key_tpm, model_rpm, model_tpm."""
        return f"{self.scope}_{'rpm' if self.kind == 'requests' else 'tpm'}"


def budget(scope: Scope, holder: str, kind: Kind, limit: int) -> Budget:
    return Budget(f"{scope}:{holder}:{kind}", kind, limit, scope, holder)


@dataclass(slots=True)  # made per request: plain init is cheaper than frozen
class Charge:
    """What one request asks of one budget."""

    budget: Budget
    units: int


@dataclass(slots=True)
class Tally:
    """One budget's window as a decision left it.

    `used`: units in the window, the request's own included when it was admitted. `wait`:
    seconds until the request's units would fit (0 when they do; infinity when they never
    can, being more than the limit). `reset`: seconds until the window is empty again.
    """

    used: int
    wait: float
    reset: float


@dataclass(slots=True)
class Decision:
    """All of a request's charges admitted together, or none; one tally per charge.
    `entry_id` names the request's entries, for settling its token reservation."""

    admitted: bool
    tallies: list[Tally]
    entry_id: str = ""


@dataclass(slots=True)
class _Entry:
    at: float
    units: int
    entry_id: str | None


class SlidingWindow:
    """The log of one budget: entries of the last `span` seconds, oldest first, and their sum.

    An entry made at `at` counts while `now - span < at`. Entries with an id can be settled:
    their units replaced (a token reservation by the real count).
    """

    __slots__ = ("_by_id", "_entries", "span", "used")

    def __init__(self, span: float = WINDOW_SECONDS) -> None:
        self.span = span
        self.used = 0
        self._entries: deque[_Entry] = deque()
        self._by_id: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def trim(self, now: float) -> None:
        """Forget the entries that have left the window."""
        cutoff = now - self.span
        entries = self._entries
        while entries and entries[0].at <= cutoff:
            entry = entries.popleft()
            self.used -= entry.units
            if entry.entry_id is not None:
                del self._by_id[entry.entry_id]

    def tally(self, now: float, units: int, limit: int) -> Tally:
        """Whether `units` more fit now (call `trim` first), and when they would."""
        need = self.used + units - limit
        if need <= 0:
            wait = 0.0
        elif units > limit:
            wait = math.inf
        else:
            wait = self._expiry_freeing(need) - now
        return Tally(self.used, wait, self.reset(now))

    def reset(self, now: float) -> float:
        """Seconds until the window is empty again."""
        return self._entries[-1].at + self.span - now if self._entries else 0.0

    def add(self, now: float, units: int, entry_id: str | None = None) -> None:
        entry = _Entry(now, units, entry_id)
        self._entries.append(entry)
        self.used += units
        if entry_id is not None:
            self._by_id[entry_id] = entry

    def settle(self, now: float, entry_id: str, units: int) -> None:
        """Replace an entry's units where it still counts; otherwise count `units` from now."""
        self.trim(now)
        entry = self._by_id.get(entry_id)
        if entry is not None:
            self.used += units - entry.units
            entry.units = units
        elif units > 0:
            self.add(now, units)

    def _expiry_freeing(self, need: int) -> float:
        """When enough of the oldest entries have left the window to free `need` units."""
        freed = 0
        for entry in self._entries:
            freed += entry.units
            if freed >= need:
                return entry.at + self.span
        raise AssertionError("need exceeds the window's units")  # callers check units <= limit


def decide(
    windows: Sequence[SlidingWindow], charges: Sequence[Charge], now: float, entry_id: str
) -> Decision:
    """Admit all of a request's charges or none (the in-memory decision, the Lua one's twin).

    Token entries are made under `entry_id`, so the reservation can be settled later.
    """
    tallies: list[Tally] = []
    admitted = True
    for window, charge in zip(windows, charges, strict=True):
        window.trim(now)
        tally = window.tally(now, charge.units, charge.budget.limit)
        admitted = admitted and tally.wait == 0
        tallies.append(tally)
    if admitted:
        for window, charge, tally in zip(windows, charges, tallies, strict=True):
            window.add(now, charge.units, entry_id if charge.budget.kind == "tokens" else None)
            tally.used = window.used
            tally.reset = window.span  # the newest entry is this one
    return Decision(admitted, tallies, entry_id)
