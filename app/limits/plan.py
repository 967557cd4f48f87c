"""From the config to a running limiter: the budgets, and where they are counted."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import ConfigError, ProxyConfig, RateLimitConfig
from app.limits.backends import LimitBackend, MemoryBackend
from app.limits.limiter import Budgets, Limiter
from app.limits.window import Budget, Kind, Scope, budget


@dataclass(frozen=True, slots=True)
class LimitsPlan:
    """What `start` builds: checked when the app is made, started in its lifespan."""

    budgets: Budgets
    redis_url: str | None  # None: in memory
    settings: RateLimitConfig

    def describe(self) -> str:
        """For the start-up log: how many budgets, where, under which policy."""
        keys, models = len(self.budgets.by_key), len(self.budgets.by_model)
        if self.redis_url is None:
            where = "in memory (per process)"
        else:
            from app.limits.redis_backend import redis_location

            where = f"in Redis at {redis_location(self.redis_url)}, policy {self.settings.policy}"
        return f"{keys} key(s) and {models} model(s) with limits, counted {where}"

    def start(self) -> Limiter:
        backend: LimitBackend
        if self.redis_url is None:
            backend = MemoryBackend()
        else:
            from app.limits.redis_backend import RedisBackend  # only where Redis is used

            backend = RedisBackend(
                self.redis_url,
                timeout=self.settings.redis_timeout,
                prefix=self.settings.key_prefix,
            )
        return Limiter(
            backend,
            self.budgets,
            policy=self.settings.policy,
            retry_seconds=self.settings.retry_seconds,
        )


def plan_limits(config: ProxyConfig, redis_url: str | None) -> LimitsPlan | None:
    """The limits of a config, or None when it sets none (then nothing is counted at all).

    `redis_url` (PROXY_REDIS_URL) wins over `rate_limit.redis_url`; with a URL the backend is
    Redis unless `rate_limit.backend` says memory. Raises ConfigError for a Redis backend
    without a URL.
    """
    settings = config.rate_limit
    url = redis_url or settings.redis_url
    backend = settings.backend or ("redis" if url else "memory")
    if backend == "redis" and not url:
        raise ConfigError("rate_limit.backend: redis needs rate_limit.redis_url or PROXY_REDIS_URL")
    by_key = {
        key.label: _budgets("key", key.label, key.rpm, key.tpm)
        for key in config.api_keys
        if key.rpm or key.tpm
    }
    by_model = {
        model.name: _budgets("model", model.name, model.rpm, model.tpm)
        for model in config.models
        if model.rpm or model.tpm
    }
    budgets = Budgets(by_key, by_model)
    if not budgets:
        return None
    return LimitsPlan(budgets, url if backend == "redis" else None, settings)


def _budgets(scope: Scope, holder: str, rpm: int | None, tpm: int | None) -> tuple[Budget, ...]:
    limits: list[tuple[Kind, int | None]] = [("requests", rpm), ("tokens", tpm)]
    return tuple(budget(scope, holder, kind, limit) for kind, limit in limits if limit)
