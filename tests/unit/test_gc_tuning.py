"""The young generation's threshold follows the requests in flight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app import gc_tuning
from app.gc_tuning import BASE_THRESHOLD, OBJECTS_PER_REQUEST, ThresholdFollower, young_threshold
from tests.waiting import until

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def _thresholds_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(gc_tuning, "ADJUST_SECONDS", 0.01)
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_few_requests_keep_the_base_threshold_many_raise_it() -> None:
    assert young_threshold(0) == BASE_THRESHOLD
    assert young_threshold(BASE_THRESHOLD // OBJECTS_PER_REQUEST) == BASE_THRESHOLD
    assert young_threshold(4096) == 4096 * OBJECTS_PER_REQUEST > 1_000_000


async def test_the_threshold_follows_the_requests_in_flight_up_and_down() -> None:
    gc.set_threshold(BASE_THRESHOLD, 50, 100)
    in_flight = [4096]
    follower = ThresholdFollower(lambda: in_flight[0])
    follower.start()
    try:
        await until(lambda: gc.get_threshold()[0] == 4096 * OBJECTS_PER_REQUEST)
        assert gc.get_threshold()[1:] == gc_tuning.OLDER_THRESHOLDS
        in_flight[0] = 3
        await until(lambda: gc.get_threshold()[0] == BASE_THRESHOLD)
    finally:
        follower.stop()
