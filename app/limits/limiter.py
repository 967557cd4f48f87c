"""The proxy's own rate limits: which budgets a request is charged against, the 429, the
headers, and what happens when the backend cannot answer.

A request is charged against its key's budgets (`rpm`, `tpm` of its `api_keys` entry) and its
model's (`rpm`, `tpm` of the model: for all keys together), all at once or not at all. A
request counts 1 against an rpm budget and, against a tpm budget, a reservation of its prompt
(estimated) plus `max_tokens` for every choice; when the generation is over, the `Grant`
settles the reservation with the usage's `total_tokens` (0 when it failed).

While the backend (Redis) cannot answer, the policy decides: `fail_open` serves unlimited,
`fail_closed` answers 503. Either way the first failure of an incident is logged as a WARNING
and its end as INFO, every request served under the policy is counted in
`proxy_rate_limit_backend_errors{policy}`, and the backend is asked again only every
`retry_seconds`, so an outage costs requests no time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import LimitsUnavailable, RateLimited
from app.limits.backends import BackendUnavailable, LimitBackend
from app.limits.headers import format_duration, rate_limit_headers
from app.limits.window import Budget, Charge, Decision
from app.metrics import LIMIT_BACKEND_ERRORS, RATE_LIMITED

log = logging.getLogger("app.limits")

Policy = Literal["fail_open", "fail_closed"]
NO_KEY = ""  # the key label of requests without a key (an open proxy), in metrics


class Grant:
    """An admitted request's headers, and the settling of its token reservation."""

    __slots__ = ("_backend", "_budgets", "_entry_id", "_reserved", "headers")

    def __init__(
        self,
        headers: dict[str, str],
        backend: LimitBackend | None = None,
        budgets: Sequence[Budget] = (),
        entry_id: str = "",
        reserved: int = 0,
    ) -> None:
        self.headers = headers
        self._backend = backend
        self._budgets = budgets
        self._entry_id = entry_id
        self._reserved = reserved

    def settle(self, tokens: int) -> None:
        """Replace the token reservation by the tokens used; call once, when generation ends."""
        if self._backend is not None and self._budgets and tokens != self._reserved:
            self._backend.settle(self._budgets, self._entry_id, tokens)


class WithHeaders:
    """An ASGI answer with extra response headers (a stream's x-ratelimit-*)."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


_UNLIMITED = Grant({})


@dataclass(frozen=True, slots=True)
class Budgets:
    """The budgets of every key label and every model, built from the config."""

    by_key: Mapping[str, tuple[Budget, ...]]
    by_model: Mapping[str, tuple[Budget, ...]]

    def __bool__(self) -> bool:
        return bool(self.by_key or self.by_model)


class Limiter:
    """Charges requests against their budgets in one backend, under one failure policy."""

    def __init__(
        self,
        backend: LimitBackend,
        budgets: Budgets,
        *,
        policy: Policy = "fail_open",
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self._by_key = budgets.by_key
        self._by_model = budgets.by_model
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._backend_errors = LIMIT_BACKEND_ERRORS.labels(policy=policy)
        self._down_since: float | None = None
        self._ask_again_at = 0.0

    def budgets(self, key: str | None, model: str) -> tuple[Budget, ...]:
        """The budgets a request of this key (label) for this model is charged against."""
        by_key = self._by_key.get(key, ()) if key is not None else ()
        by_model = self._by_model.get(model)
        return by_key + by_model if by_model else by_key

    async def admit(
        self, budgets: Sequence[Budget], tokens: int, *, key: str | None, model: str
    ) -> Grant:
        """Charge one request (1 per rpm budget, `tokens` per tpm budget) or raise the 429.

        Raises RateLimited when a budget is used up, LimitsUnavailable when the backend cannot
        answer and the policy is fail_closed.
        """
        charges = [Charge(budget, 1 if budget.kind == "requests" else tokens) for budget in budgets]
        now = self._clock()
        if now < self._ask_again_at:
            return self._unanswered()
        try:
            decision = await self.backend.acquire(charges)
        except BackendUnavailable as exc:
            self._backend_failed(now, exc)
            return self._unanswered()
        if self._down_since is not None:
            log.info(
                "rate limits: %s answers again after %.1f s; limits apply again",
                self.backend.description,
                now - self._down_since,
            )
            self._down_since = None
        if not decision.admitted:
            raise _refusal(charges, decision, key=key, model=model)
        if not tokens:
            return Grant(rate_limit_headers(charges, decision.tallies))
        token_budgets = [budget for budget in budgets if budget.kind == "tokens"]
        return Grant(
            rate_limit_headers(charges, decision.tallies),
            self.backend,
            token_budgets,
            decision.entry_id,
            tokens,
        )

    def _backend_failed(self, now: float, exc: BackendUnavailable) -> None:
        self._ask_again_at = now + self._retry_seconds
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "rate limits: %s cannot be reached (%s); policy %s: %s until it answers",
                self.backend.description,
                exc,
                self.policy,
                "requests are served without limits"
                if self.policy == "fail_open"
                else "requests are refused with 503",
            )

    def _unanswered(self) -> Grant:
        self._backend_errors.inc()
        if self.policy == "fail_open":
            return _UNLIMITED
        raise LimitsUnavailable(
            "The proxy cannot check rate limits right now; please retry shortly.",
            retry_after=self._retry_seconds,
        )

    async def aclose(self) -> None:
        await self.backend.aclose()


def _refusal(
    charges: Sequence[Charge], decision: Decision, *, key: str | None, model: str
) -> RateLimited:
    """The 429 for the budget that binds: the one whose units free up last."""
    pairs = list(zip(decision.tallies, charges, strict=True))
    tally, charge = max(pairs, key=lambda pair: pair[0].wait)
    budget = charge.budget
    RATE_LIMITED.labels(key=key or NO_KEY, model=model, limit=budget.label).inc()
    headers = rate_limit_headers(charges, decision.tallies)
    if math.isinf(tally.wait):
        return RateLimited(
            f"Request too large for {_what(budget)}: Limit {budget.limit}, Requested "
            f"{charge.units} (the prompt and max_tokens for every choice). Lower max_tokens "
            "or shorten the prompt.",
            headers=headers,
        )
    return RateLimited(
        f"Rate limit reached for {_what(budget)}: Limit {budget.limit}, Used {tally.used}, "
        f"Requested {charge.units}. Please try again in {format_duration(tally.wait)}.",
        retry_after=tally.wait,
        headers=headers,
    )


def _what(budget: Budget) -> str:
    unit = "requests per min (RPM)" if budget.kind == "requests" else "tokens per min (TPM)"
    if budget.scope == "key":
        return f"{unit} of key '{budget.holder}'"
    return f"{unit} of model '{budget.holder}' (all keys)"
