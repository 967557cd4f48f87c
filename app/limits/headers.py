"""OpenAI's rate-limit headers from a decision's tallies, pure.

    x-ratelimit-limit-requests      x-ratelimit-limit-tokens
    x-ratelimit-remaining-requests  x-ratelimit-remaining-tokens
    x-ratelimit-reset-requests      x-ratelimit-reset-tokens

When several budgets of a kind apply (the key's and the model's), the headers describe the one
with the least left. `reset` is the time until that budget is whole again (its window empty),
as OpenAI defines it, written as OpenAI writes it: "20ms", "1.5s", "6m0s".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from app.limits.window import Charge, Tally


def format_duration(seconds: float) -> str:
    """A duration as OpenAI (and Go) write it, rounded up to the millisecond."""
    return _format_ms(max(0, math.ceil(seconds * 1000 - 1e-6)))  # 1.5 s stays 1500 ms


@functools.lru_cache(maxsize=1024)  # the same few values (a whole minute, above all) recur
def _format_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    minutes, rest = divmod(ms, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_NAMES = {
    kind: (
        f"x-ratelimit-limit-{kind}",
        f"x-ratelimit-remaining-{kind}",
        f"x-ratelimit-reset-{kind}",
    )
    for kind in ("requests", "tokens")
}


def rate_limit_headers(charges: Sequence[Charge], tallies: Sequence[Tally]) -> dict[str, str]:
    """The x-ratelimit-* headers for the kinds of budget the request was charged against."""
    tightest: dict[str, tuple[int, int, float]] = {}  # kind → (remaining, limit, reset)
    for charge, tally in zip(charges, tallies, strict=True):
        budget = charge.budget
        remaining = budget.limit - tally.used
        current = tightest.get(budget.kind)
        if current is None or remaining < current[0]:
            tightest[budget.kind] = (remaining, budget.limit, tally.reset)
    headers: dict[str, str] = {}
    for kind, (remaining, limit, reset) in tightest.items():
        limit_name, remaining_name, reset_name = _NAMES[kind]
        headers[limit_name] = str(limit)
        headers[remaining_name] = str(max(0, remaining))
        headers[reset_name] = format_duration(reset)
    return headers
