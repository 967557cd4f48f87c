"""Anthropic's paged model list (GET /v1/models with anthropic-version), as data."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.routes.models import anthropic_page

NAMES = ["a", "b", "c", "d", "e"]
LISTED: list[Any] = [(name, SimpleNamespace(created=1_796_000_000)) for name in NAMES]


@pytest.mark.parametrize(
    ("limit", "after", "before", "ids", "more"),
    [
        (20, None, None, NAMES, False),
        (2, None, None, ["a", "b"], True),
        (2, "b", None, ["c", "d"], True),
        (2, "d", None, ["e"], False),
        (2, "e", None, [], False),
        (2, None, "d", ["b", "c"], True),
        (2, None, "b", ["a"], False),
        (2, "zzz", None, ["a", "b"], True),  # an unknown id pages from the start
    ],
)
def test_pages(
    limit: int, after: str | None, before: str | None, ids: list[str], more: bool
) -> None:
    page = anthropic_page(LISTED, limit, after, before)
    assert [model["id"] for model in page["data"]] == ids
    assert page["has_more"] is more
    assert (page["first_id"], page["last_id"]) == ((ids[0], ids[-1]) if ids else (None, None))


def test_a_model_object() -> None:
    [model] = anthropic_page(LISTED[:1], 1, None, None)["data"]
    assert model == {
        "type": "model",
        "id": "a",
        "display_name": "a",
        "created_at": "2026-11-30T00:53:20Z",
    }
