"""KeyChecker: `Authorization: Bearer <key>` against the configured keys; no keys = open."""

from __future__ import annotations

import pytest

from app.auth import KeyChecker
from app.errors import AuthenticationFailed

KEYS = ["sk-alpha", "sk-beta"]


@pytest.mark.parametrize("header", [None, "", "Bearer sk-anything", "Basic dXNlcjpwYXNz"])
def test_no_keys_means_open(header: str | None) -> None:
    checker = KeyChecker([])

    assert checker.enabled is False
    assert checker.check(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sk-alpha",
        "Bearer sk-beta",
        "bearer sk-alpha",
        "BEARER sk-beta",
        "Bearer  sk-alpha ",
    ],
)
def test_configured_key_passes(header: str) -> None:
    checker = KeyChecker(KEYS)

    assert checker.enabled is True
    assert checker.check(header) is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "You didn't provide an API key"),
        ("", "You didn't provide an API key"),
        ("sk-alpha", "must have the form 'Bearer <key>'"),
        ("Basic sk-alpha", "must have the form 'Bearer <key>'"),
        ("Token sk-alpha", "must have the form 'Bearer <key>'"),
        ("Bearer", "must have the form 'Bearer <key>'"),
        ("Bearer    ", "must have the form 'Bearer <key>'"),
        ("Bearer sk-gamma", "Incorrect API key provided"),
        ("Bearer sk-alph", "Incorrect API key provided"),
        ("Bearer SK-ALPHA", "Incorrect API key provided"),
        ("Bearer sk-alpha sk-beta", "Incorrect API key provided"),
    ],
)
def test_refused(header: str | None, message: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        KeyChecker(KEYS).check(header)

    error = caught.value
    assert message in error.message
    assert error.status == 401
    assert error.code == "invalid_api_key"
    assert error.envelope() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_keys_iterable_is_consumed_once() -> None:
    checker = KeyChecker(key for key in KEYS)

    checker.check("Bearer sk-alpha")
    checker.check("Bearer sk-beta")
    with pytest.raises(AuthenticationFailed):
        checker.check("Bearer sk-gamma")
