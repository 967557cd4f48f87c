"""The request id's response headers per path: Anthropic's paths add `request-id`; the names
found per path are kept, but only for a bounded number of paths."""

from __future__ import annotations

import pytest

from app import middleware

BOTH = ((b"x-request-id", b"req-1"), (b"request-id", b"req-1"))
OPENAI = ((b"x-request-id", b"req-1"),)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/chat/completions", OPENAI),
        ("/v1/responses", OPENAI),
        ("/v1/messages", BOTH),
        ("/v1/messages/count_tokens", BOTH),
        ("/v1/messagesx", OPENAI),  # a prefix counts only up to a "/"
        ("/nowhere", OPENAI),
    ],
)
def test_id_headers_by_path_the_first_time_and_again(path: str, expected: object) -> None:
    assert middleware._id_headers(path, "req-1") == expected
    assert middleware._id_headers(path, "req-1") == expected  # from what was kept


def test_made_up_paths_are_not_all_kept() -> None:
    for number in range(3 * middleware._ID_NAMES_KEPT):
        assert middleware._id_headers(f"/made-up/{number}", "r") == ((b"x-request-id", b"r"),)
        assert middleware._id_headers(f"/v1/messages/{number}", "r")[1] == (b"request-id", b"r")
    assert len(middleware._ID_NAMES) == middleware._ID_NAMES_KEPT
