"""The proxy's own rate limits (per key and per model, per minute).

window.py         pure: budgets, charges, the sliding-window log and its decision
headers.py        pure: OpenAI's x-ratelimit-* headers, durations as "6m0s"
backends.py       the backend interface; MemoryBackend (per process)
redis_backend.py  RedisBackend: the same log in Redis, one Lua script per decision
limiter.py        Limiter: charges, the 429, the failure policy; Grant: headers, settling
plan.py           config → budgets and backend; started in the app's lifespan
"""

from app.limits.limiter import Grant, Limiter
from app.limits.plan import LimitsPlan, plan_limits

__all__ = ["Grant", "Limiter", "LimitsPlan", "plan_limits"]
