"""Fixtures shared by the unit tests of the upstream client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.scripted_upstream import ServeFactory, upstreams


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """Scripted upstreams on free loopback ports, stopped after the test."""
    async with upstreams() as start:
        yield start
