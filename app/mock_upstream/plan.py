"""What faults and latency the mock upstream applies: the plan and the parsers of its options.

See `app.mock_upstream` for the modes and options.
"""

import math
import random
from dataclasses import dataclass

DEFAULT_ERROR_STATUSES = (503,)
HUGE_DEFAULT_BYTES = 16 << 20

FAULT_MODES = (
    "status:CODE", "malformed", "no-data", "not-ok", "html", "wrong-count", "non-string",
    "empty-output", "huge[:BYTES]", "trickle", "reset-body", "reset", "hang",
)  # fmt: skip
_PLAIN_MODES = frozenset(FAULT_MODES) - {"status:CODE", "huge[:BYTES]"}


# Latency distributions, in milliseconds


def _check_ms(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of milliseconds >= 0, not {value:g}")


@dataclass(frozen=True, slots=True)
class Fixed:
    """`fixed:MS`: always MS."""

    ms: float = 0.0

    def __post_init__(self) -> None:
        _check_ms("the delay", self.ms)

    def __str__(self) -> str:
        return f"fixed:{self.ms:g}"


@dataclass(frozen=True, slots=True)
class Uniform:
    """`uniform:LO-HI`: any value from LO to HI, evenly."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_ms("LO", self.low)
        _check_ms("HI", self.high)
        if self.low > self.high:
            raise ValueError(f"LO must not exceed HI ({self.low:g} > {self.high:g})")

    def __str__(self) -> str:
        return f"uniform:{self.low:g}-{self.high:g}"


@dataclass(frozen=True, slots=True)
class Exponential:
    """`exp:MEAN`: exponential with that mean (many short waits, a few long ones)."""

    mean: float

    def __post_init__(self) -> None:
        _check_ms("MEAN", self.mean)

    def __str__(self) -> str:
        return f"exp:{self.mean:g}"


@dataclass(frozen=True, slots=True)
class Normal:
    """`normal:MEAN,SD`: normal, clipped at 0."""

    mean: float
    sd: float

    def __post_init__(self) -> None:
        _check_ms("MEAN", self.mean)
        _check_ms("SD", self.sd)

    def __str__(self) -> str:
        return f"normal:{self.mean:g},{self.sd:g}"


Latency = Fixed | Uniform | Exponential | Normal
LATENCY_FORMS = "fixed:MS, uniform:LO-HI, exp:MEAN or normal:MEAN,SD (milliseconds)"


def parse_latency(text: str) -> Latency:
    """`fixed:MS`, `uniform:LO-HI`, `exp:MEAN` or `normal:MEAN,SD` → a Latency; else ValueError."""
    kind, _, spec = text.strip().partition(":")
    try:
        if kind == "fixed":
            return Fixed(_number(spec))
        if kind == "uniform":
            return Uniform(*_number_pair(spec, "-"))
        if kind == "exp":
            return Exponential(_number(spec))
        if kind == "normal":
            return Normal(*_number_pair(spec, ","))
    except ValueError as exc:
        raise ValueError(f"bad latency {text!r}: {exc}") from None
    raise ValueError(f"unknown latency {text!r}; use {LATENCY_FORMS}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _number_pair(text: str, separator: str) -> tuple[float, float]:
    first, found, second = text.partition(separator)
    if not found:
        raise ValueError(f"expected two numbers separated by {separator!r}")
    return _number(first), _number(second)


def draw_ms(latency: Latency, rng: random.Random) -> float:
    """One delay in milliseconds from `latency`."""
    match latency:
        case Fixed(ms):
            return ms
        case Uniform(low, high):
            return rng.uniform(low, high)
        case Exponential(mean):
            return rng.expovariate(1 / mean) if mean > 0 else 0.0
        case Normal(mean, sd):
            return max(0.0, rng.gauss(mean, sd))


# Fault modes and the plan


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault mode; `arg` is the CODE of `status:CODE` or the BYTES of `huge:BYTES`."""

    mode: str
    arg: int = 0

    def __post_init__(self) -> None:
        if self.mode == "status":
            _check_status(self.arg)
        elif self.mode == "huge":
            if self.arg < 0:
                raise ValueError(f"huge:BYTES must not be negative, not {self.arg}")
        elif self.mode not in _PLAIN_MODES or self.arg:
            raise ValueError(f"unknown fault mode {str(self)!r}; one of {', '.join(FAULT_MODES)}")

    def __str__(self) -> str:
        return f"{self.mode}:{self.arg}" if self.mode in ("status", "huge") else self.mode


def parse_fault(text: str) -> Fault:
    """A fault mode such as `not-ok`, `status:503` or `huge:1000000` → a Fault; else ValueError."""
    mode, colon, arg = text.strip().partition(":")
    if mode == "huge" and not colon:
        return Fault("huge", HUGE_DEFAULT_BYTES)
    if mode not in ("status", "huge"):
        return Fault(text.strip())  # rejects anything but a plain mode
    try:
        number = int(arg)
    except ValueError:
        raise ValueError(f"bad fault mode {text!r}: {arg!r} is not a whole number") from None
    try:
        return Fault(mode, number)
    except ValueError as exc:
        raise ValueError(f"bad fault mode {text!r}: {exc}") from None


def _check_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise ValueError(f"a fault status must be 400..599, not {status}")


def _check_rate(name: str, rate: float) -> None:
    if not 0 <= rate <= 1:
        raise ValueError(f"{name} must be between 0 and 1, not {rate:g}")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The latency, faults and answers of every request (see the module docstring); checked
    when built."""

    latency: Latency = Fixed()
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    fault: Fault | None = None
    fault_rate: float = 1.0
    retry_after: int | None = None
    seed: int | None = None
    reasoning: bool = False  # every answer begins with a <think>…</think> block
    # A GPU server's cost: each call computes for call_ms + prompt_ms per prompt, at most
    # max_calls at once (None: no limit); the others queue for their turn.
    call_ms: float = 0.0
    prompt_ms: float = 0.0
    max_calls: int | None = None

    @property
    def computes(self) -> bool:
        """Calls cost compute time (or queue for a turn)."""
        return bool(self.call_ms or self.prompt_ms or self.max_calls)

    def __post_init__(self) -> None:
        _check_rate("the error rate", self.error_rate)
        _check_rate("the fault rate", self.fault_rate)
        if not self.error_statuses:
            raise ValueError("the error statuses must not be empty")
        for status in self.error_statuses:
            _check_status(status)
        if self.fault is None and self.fault_rate != 1.0:
            raise ValueError("a fault rate needs a fault mode")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry-after must be >= 0 seconds, not {self.retry_after}")
        _check_ms("the call time", self.call_ms)
        _check_ms("the prompt time", self.prompt_ms)
        if self.max_calls is not None and self.max_calls < 1:
            raise ValueError(f"max calls must be at least 1, not {self.max_calls}")

    def __str__(self) -> str:
        parts = [f"latency {self.latency}"]
        if self.error_rate:
            statuses = "/".join(map(str, self.error_statuses))
            parts.append(f"{self.error_rate:g} of requests get {statuses}")
        if self.fault is not None:
            parts.append(f"{self.fault_rate:g} of the others get {self.fault}")
        if self.retry_after is not None:
            parts.append(f"Retry-After {self.retry_after}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.reasoning:
            parts.append("answers with reasoning")
        if self.computes:
            calls = "no limit" if self.max_calls is None else f"{self.max_calls} at once"
            parts.append(
                f"calls compute {self.call_ms:g} ms + {self.prompt_ms:g} ms per prompt ({calls})"
            )
        return ", ".join(parts)
