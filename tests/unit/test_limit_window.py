"""The sliding window as data: what fits, when it would, settling, and the headers."""

from __future__ import annotations

import math

import pytest

from app.limits.headers import format_duration, rate_limit_headers
from app.limits.window import (
    WINDOW_SECONDS,
    Charge,
    SlidingWindow,
    Tally,
    budget,
    decide,
)

RPM_3 = budget("key", "alice", "requests", 3)
TPM_100 = budget("key", "alice", "tokens", 100)
MODEL_RPM_5 = budget("model", "llama", "requests", 5)


def test_budget_names_and_labels() -> None:
    assert RPM_3.name == "key:alice:requests"
    assert (RPM_3.label, TPM_100.label, MODEL_RPM_5.label) == ("key_rpm", "key_tpm", "model_rpm")
    assert budget("model", "m", "tokens", 1).label == "model_tpm"


def test_requests_fit_until_the_limit_then_wait_for_the_oldest() -> None:
    window = SlidingWindow()
    for at in (0.0, 10.0, 20.0):
        window.trim(at)
        assert window.tally(at, 1, 3).wait == 0
        window.add(at, 1)

    window.trim(30.0)
    assert window.tally(30.0, 1, 3) == Tally(used=3, wait=30.0, reset=50.0)
    # The entry made at 0 counts while now - 60 < 0: until 60 exactly.
    window.trim(59.999)
    assert window.tally(59.999, 1, 3).wait == pytest.approx(0.001)
    window.trim(60.0)
    assert window.tally(60.0, 1, 3) == Tally(used=2, wait=0.0, reset=20.0)
    assert len(window) == 2


def test_minute_boundaries_do_not_matter() -> None:
    """A fixed window would allow 2 × limit around a boundary; the sliding one never does."""
    window = SlidingWindow()
    admitted = 0
    for i in range(40):  # 40 requests spread over 20 s around 60.0
        now = 50.0 + i * 0.5
        window.trim(now)
        if window.tally(now, 1, 20).wait == 0:
            window.add(now, 1)
            admitted += 1
    assert admitted == 20


def test_weighted_wait_frees_enough_units() -> None:
    window = SlidingWindow()
    window.add(0.0, 40, "a")
    window.add(5.0, 30, "b")
    window.add(10.0, 20, "c")

    window.trim(15.0)
    assert window.used == 90
    assert window.tally(15.0, 10, 100).wait == 0
    assert window.tally(15.0, 20, 100).wait == 45.0  # "a" must leave: at 60
    assert window.tally(15.0, 60, 100).wait == 50.0  # "a" and "b": at 65
    assert window.tally(15.0, 101, 100).wait == math.inf  # more than the limit: never


def test_settle_replaces_the_reservation_where_it_still_counts() -> None:
    window = SlidingWindow()
    window.add(0.0, 80, "r1")
    window.add(1.0, 10, "r2")

    window.settle(2.0, "r1", 25)
    assert window.used == 35
    window.settle(2.0, "r2", 0)
    assert window.used == 25
    assert len(window) == 2  # entries stay: a zero still dates the request

    window.trim(60.5)
    assert window.used == 0  # r1 left at 60, r2 at 61 but holds nothing
    window.trim(61.0)
    assert len(window) == 0


def test_settle_after_the_window_counts_from_now() -> None:
    window = SlidingWindow()
    window.add(0.0, 80, "slow")

    window.settle(75.0, "slow", 30)  # the generation took 75 s

    assert window.used == 30
    window.trim(134.0)
    assert window.used == 30
    window.trim(135.0)
    assert window.used == 0
    window.settle(200.0, "never-made", 0)
    assert len(window) == 0


def test_decide_admits_all_charges_or_none() -> None:
    key_rpm, key_tpm, model_rpm = SlidingWindow(), SlidingWindow(), SlidingWindow()
    windows = [key_rpm, key_tpm, model_rpm]
    charges = [Charge(RPM_3, 1), Charge(TPM_100, 60), Charge(MODEL_RPM_5, 1)]

    first = decide(windows, charges, 0.0, "e1")
    assert first.admitted
    assert first.tallies == [
        Tally(1, 0.0, WINDOW_SECONDS),
        Tally(60, 0.0, WINDOW_SECONDS),
        Tally(1, 0.0, WINDOW_SECONDS),
    ]

    second = decide(windows, charges, 1.0, "e2")  # 60 + 60 tokens > 100
    assert not second.admitted
    assert second.tallies[1] == Tally(60, 59.0, 59.0)
    assert (key_rpm.used, key_tpm.used, model_rpm.used) == (1, 60, 1)  # nothing charged

    key_tpm.settle(2.0, "e1", 30)  # only the token entry has the id
    third = decide(windows, charges, 2.0, "e3")
    assert third.admitted
    assert (key_rpm.used, key_tpm.used, model_rpm.used) == (2, 90, 2)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (2.163, "2.163s"),
        (59.9989, "59.999s"),  # rounded up to the millisecond
        (59.9999, "1m0s"),
        (60, "1m0s"),
        (90.25, "1m30.25s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_format_duration_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_describe_the_tightest_budget_of_each_kind() -> None:
    charges = [Charge(RPM_3, 1), Charge(MODEL_RPM_5, 1), Charge(TPM_100, 40)]
    tallies = [Tally(2, 0, 30.0), Tally(5, 0, 59.5), Tally(40, 0, 60.0)]

    assert rate_limit_headers(charges, tallies) == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "59.5s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "60",
        "x-ratelimit-reset-tokens": "1m0s",
    }


def test_headers_only_for_the_kinds_charged_and_never_negative() -> None:
    assert rate_limit_headers([Charge(RPM_3, 1)], [Tally(4, 0, 1.0)]) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
    }
    assert rate_limit_headers([], []) == {}
