"""What the container checks found: one line per check as it happens, counts at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


class CheckFailed(Exception):
    """A check did not hold; the message says what was seen."""


class Skipped(Exception):
    """A step cannot run here; the message says why."""


@dataclass
class Report:
    """Counts checks and prints each one; `summary()` is the closing line."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}", flush=True)

    def fail(self, step: str, error: object) -> None:
        self.failed += 1
        print(f"  FAIL  {step}: {error}", flush=True)

    def skip(self, step: str, reason: str) -> None:
        self.skipped += 1
        print(f"  SKIP  {step}: {reason}", flush=True)

    def note(self, text: str) -> None:
        """A figure worth keeping (sizes, times); repeated before the summary."""
        self.notes.append(text)
        print(f"  note  {text}", flush=True)

    def summary(self) -> str:
        elapsed = time.monotonic() - self._started
        lines = [f"  {note}" for note in self.notes]
        lines.append(f"container-test ({elapsed:.0f} s):")
        lines.append(f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped")
        return "\n".join(lines)


def expect(condition: bool, message: str) -> None:
    """Raise CheckFailed with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)
