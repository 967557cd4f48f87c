"""Limiter: charges against key and model budgets (memory backend, clock injected), the 429 and
its headers, settling, and the fail_open / fail_closed policy when the backend cannot answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from app.config import ApiKeyConfig, ConfigError, ModelConfig, ProxyConfig, RateLimitConfig
from app.errors import LimitsUnavailable, RateLimited
from app.limits import Limiter, plan_limits
from app.limits.backends import BackendUnavailable, MemoryBackend
from app.limits.limiter import Budgets
from app.limits.window import Budget, Charge, Decision, Tally, budget

KEY_RPM = budget("key", "alice", "requests", 2)
KEY_TPM = budget("key", "alice", "tokens", 100)
MODEL_RPM = budget("model", "llama", "requests", 3)
BUDGETS = Budgets({"alice": (KEY_RPM, KEY_TPM)}, {"llama": (MODEL_RPM,)})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter_with_memory(clock: Clock, budgets: Budgets = BUDGETS) -> tuple[Limiter, MemoryBackend]:
    backend = MemoryBackend(clock=clock)
    return Limiter(backend, budgets, clock=clock), backend


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_budgets_of_a_request() -> None:
    limiter, _ = limiter_with_memory(Clock())

    assert limiter.budgets("alice", "llama") == (KEY_RPM, KEY_TPM, MODEL_RPM)
    assert limiter.budgets("alice", "other") == (KEY_RPM, KEY_TPM)
    assert limiter.budgets("bob", "llama") == (MODEL_RPM,)
    assert limiter.budgets(None, "llama") == (MODEL_RPM,)
    assert limiter.budgets(None, "other") == ()


async def test_admits_with_headers_then_refuses_with_429() -> None:
    clock = Clock()
    limiter, _ = limiter_with_memory(clock)
    budgets = limiter.budgets("alice", "llama")

    first = await limiter.admit(budgets, 30, key="alice", model="llama")
    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "70",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    clock.now += 15
    await limiter.admit(budgets, 30, key="alice", model="llama")
    clock.now += 5
    before = sample("proxy_rate_limited_total", key="alice", model="llama", limit="key_rpm")

    with pytest.raises(RateLimited) as caught:
        await limiter.admit(budgets, 30, key="alice", model="llama")

    error = caught.value
    assert error.status == 429
    assert error.type == "rate_limit_error"
    assert error.code == "rate_limit_exceeded"
    assert error.message == (
        "Rate limit reached for requests per min (RPM) of key 'alice': Limit 2, Used 2, "
        "Requested 1. Please try again in 40s."
    )
    assert error.headers() == {
        "retry-after": "40",
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "55s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "40",
        "x-ratelimit-reset-tokens": "55s",
    }
    after = sample("proxy_rate_limited_total", key="alice", model="llama", limit="key_rpm")
    assert after == before + 1

    clock.now += 40  # the first request leaves the window
    assert await limiter.admit(budgets, 30, key="alice", model="llama")


async def test_model_budget_is_shared_by_all_keys() -> None:
    clock = Clock()
    limiter, _ = limiter_with_memory(clock)
    for key in ("bob", "carol", None):
        await limiter.admit(limiter.budgets(key, "llama"), 0, key=key, model="llama")

    with pytest.raises(RateLimited) as caught:
        await limiter.admit(limiter.budgets("dave", "llama"), 0, key="dave", model="llama")
    assert "of model 'llama' (all keys): Limit 3, Used 3" in caught.value.message


async def test_refusal_names_the_budget_that_frees_last() -> None:
    clock = Clock()
    limiter, _ = limiter_with_memory(clock)
    budgets = limiter.budgets("alice", "llama")
    await limiter.admit((KEY_TPM,), 90, key="alice", model="other")  # tokens: 90 of 100
    clock.now += 10
    for _ in range(3):  # the model's requests: 3 of 3
        await limiter.admit(limiter.budgets(None, "llama"), 0, key=None, model="llama")

    with pytest.raises(RateLimited) as caught:
        await limiter.admit(budgets, 20, key="alice", model="llama")

    # The tokens free up in 50 s, the model's requests in 60 s: the request waits for both.
    assert caught.value.retry_after == pytest.approx(60.0)
    assert "of model 'llama' (all keys): Limit 3, Used 3" in caught.value.message
    assert caught.value.headers() is not None
    assert caught.value.headers()["x-ratelimit-remaining-tokens"] == "10"


async def test_request_larger_than_the_budget_is_refused_without_retry_after() -> None:
    limiter, _ = limiter_with_memory(Clock())

    with pytest.raises(RateLimited) as caught:
        await limiter.admit((KEY_TPM,), 101, key="alice", model="llama")

    assert caught.value.retry_after is None
    assert "retry-after" not in (caught.value.headers() or {})
    assert caught.value.message.startswith(
        "Request too large for tokens per min (TPM) of key 'alice': Limit 100, Requested 101"
    )


async def test_settle_replaces_the_reservation() -> None:
    clock = Clock()
    limiter, backend = limiter_with_memory(clock)

    grant = await limiter.admit((KEY_RPM, KEY_TPM), 80, key="alice", model="m")
    assert backend.window(KEY_TPM).used == 80
    grant.settle(12)
    assert backend.window(KEY_TPM).used == 12
    assert backend.window(KEY_RPM).used == 1

    failed = await limiter.admit((KEY_TPM,), 50, key="alice", model="m")
    failed.settle(0)  # a failed generation uses nothing
    assert backend.window(KEY_TPM).used == 12


async def test_concurrent_requests_are_counted_exactly() -> None:
    limiter, backend = limiter_with_memory(Clock())

    async def one() -> bool:
        try:
            await limiter.admit((MODEL_RPM,), 0, key=None, model="llama")
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))

    assert results.count(True) == 3
    assert backend.window(MODEL_RPM).used == 3


class FlakyBackend:
    """Fails while `down`; otherwise admits everything. Counts the calls it got."""

    description = "flaky test backend"

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        self.calls += 1
        if self.down:
            raise BackendUnavailable("ConnectionError: connection refused")
        return Decision(True, [Tally(charge.units, 0.0, 60.0) for charge in charges])

    def settle(self, budgets: Sequence[Budget], entry_id: str, units: int) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_fail_open_serves_logs_once_counts_and_asks_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    backend = FlakyBackend()
    limiter = Limiter(backend, BUDGETS, policy="fail_open", retry_seconds=2.0, clock=clock)
    before = sample("proxy_rate_limit_backend_errors_total", policy="fail_open")
    caplog.set_level(logging.INFO, logger="app.limits")

    for _ in range(5):
        grant = await limiter.admit((KEY_RPM,), 0, key="alice", model="m")
        assert grant.headers == {}
        grant.settle(10)  # nothing to settle against

    assert backend.calls == 1  # within retry_seconds the backend is not asked again
    assert sample("proxy_rate_limit_backend_errors_total", policy="fail_open") == before + 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "flaky test backend cannot be reached (ConnectionError: connection refused)" in (
        warnings[0].getMessage()
    )
    assert "policy fail_open: requests are served without limits" in warnings[0].getMessage()

    clock.now += 2.0
    await limiter.admit((KEY_RPM,), 0, key="alice", model="m")
    assert backend.calls == 2  # asked again; still down; still one warning
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    backend.down = False
    clock.now += 2.0
    await limiter.admit((KEY_RPM,), 0, key="alice", model="m")
    assert backend.calls == 3
    assert "flaky test backend answers again after 4.0 s" in caplog.records[-1].getMessage()


async def test_fail_closed_refuses_with_503_until_the_backend_is_back() -> None:
    clock = Clock()
    backend = FlakyBackend()
    limiter = Limiter(backend, BUDGETS, policy="fail_closed", retry_seconds=1.0, clock=clock)
    before = sample("proxy_rate_limit_backend_errors_total", policy="fail_closed")

    for _ in range(3):
        with pytest.raises(LimitsUnavailable) as caught:
            await limiter.admit((KEY_RPM,), 0, key="alice", model="m")
        assert caught.value.status == 503
        assert caught.value.code == "rate_limit_backend_unavailable"
        assert caught.value.headers() == {"retry-after": "1"}
    assert sample("proxy_rate_limit_backend_errors_total", policy="fail_closed") == before + 3

    backend.down = False
    clock.now += 1.0
    assert await limiter.admit((KEY_RPM,), 0, key="alice", model="m") is not None


def test_plan_limits_from_the_config() -> None:
    keys = [
        ApiKeyConfig(key="sk-a", name="a", rpm=10),
        ApiKeyConfig(key="sk-b", tpm=500),
        ApiKeyConfig(key="sk-c"),
    ]
    models = [
        ModelConfig(name="m", api_base="http://h/x", rpm=100, tpm=9000),
        ModelConfig(name="n", api_base="http://h/x"),
    ]

    assert plan_limits(ProxyConfig(api_keys=[keys[2]], models=[models[1]]), None) is None
    plan = plan_limits(ProxyConfig(api_keys=keys, models=models), None)

    assert plan is not None
    assert plan.redis_url is None
    assert dict(plan.budgets.by_key) == {
        "a": (budget("key", "a", "requests", 10),),
        keys[1].label: (budget("key", keys[1].label, "tokens", 500),),
    }
    assert dict(plan.budgets.by_model) == {
        "m": (budget("model", "m", "requests", 100), budget("model", "m", "tokens", 9000))
    }
    assert plan.describe() == "2 key(s) and 1 model(s) with limits, counted in memory (per process)"


@pytest.mark.parametrize(
    ("rate_limit", "env_url", "expected"),
    [
        (RateLimitConfig(), "redis://r:6379/0", "redis://r:6379/0"),
        (RateLimitConfig(redis_url="redis://cfg:1/2"), None, "redis://cfg:1/2"),
        (RateLimitConfig(redis_url="redis://cfg:1/2"), "redis://env:1/0", "redis://env:1/0"),
        (RateLimitConfig(backend="memory"), "redis://r:6379/0", None),
        (RateLimitConfig(backend="redis", redis_url="redis://cfg:1/0"), None, "redis://cfg:1/0"),
    ],
)
def test_plan_chooses_the_backend(
    rate_limit: RateLimitConfig, env_url: str | None, expected: str | None
) -> None:
    config = ProxyConfig(api_keys=[ApiKeyConfig(key="k", rpm=1)], rate_limit=rate_limit)

    plan = plan_limits(config, env_url)

    assert plan is not None
    assert plan.redis_url == expected


def test_redis_backend_without_url_is_a_config_error() -> None:
    config = ProxyConfig(
        api_keys=[ApiKeyConfig(key="k", rpm=1)], rate_limit=RateLimitConfig(backend="redis")
    )
    with pytest.raises(ConfigError, match="rate_limit.backend: redis needs"):
        plan_limits(config, None)


def test_redis_description_hides_the_password() -> None:
    config = ProxyConfig(api_keys=[ApiKeyConfig(key="k", rpm=1)])
    plan = plan_limits(config, "redis://user:s3cret@cache.internal:6380/1")

    assert plan is not None
    assert "s3cret" not in plan.describe()
    assert "cache.internal:6380/1, policy fail_open" in plan.describe()
