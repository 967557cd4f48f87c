"""KeyChecker: which key a request carries (Authorization, api-key, x-api-key), plain or hashed
keys, expiry, the models a key may use, keys in query strings; no keys = open."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from app.auth import KeyChecker
from app.config import ApiKeyConfig
from app.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

KEYS = [ApiKeyConfig(key="sk-alpha"), ApiKeyConfig(key="sk-beta", name="beta")]
ALPHA_LABEL = "key-" + hashlib.sha256(b"sk-alpha").hexdigest()[:8]


def scope(*headers: tuple[str, str], query: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "query_string": query.encode(),
    }


def auth(value: str) -> tuple[str, str]:
    return ("Authorization", value)


@pytest.mark.parametrize("headers", [(), (auth("Bearer sk-anything"),), (auth("Basic dXNlcg=="),)])
def test_no_keys_means_open(headers: tuple[tuple[str, str], ...]) -> None:
    checker = KeyChecker([])
    request = scope(*headers)

    assert checker.enabled is False
    assert checker.authenticate(request) is None
    assert "key_name" not in request


@pytest.mark.parametrize(
    ("headers", "label"),
    [
        ((auth("Bearer sk-alpha"),), ALPHA_LABEL),
        ((auth("bearer sk-beta"),), "beta"),
        ((auth("BEARER  sk-beta "),), "beta"),
        ((("api-key", "sk-beta"),), "beta"),
        ((("x-api-key", "sk-alpha"),), ALPHA_LABEL),
        ((("X-Api-Key", " sk-alpha "),), ALPHA_LABEL),
        # Authorization comes first, then api-key, then x-api-key.
        ((("x-api-key", "sk-alpha"), ("api-key", "sk-beta")), "beta"),
        ((("api-key", "sk-wrong"), auth("Bearer sk-alpha")), ALPHA_LABEL),
    ],
)
def test_configured_key_passes_and_names_the_caller(
    headers: tuple[tuple[str, str], ...], label: str
) -> None:
    request = scope(*headers)

    key = KeyChecker(KEYS).authenticate(request)

    assert key is not None
    assert key.label == label
    assert request["key_name"] == label


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ((), "You didn't provide an API key"),
        ((auth(""),), "must have the form 'Bearer <key>'"),
        ((auth("sk-alpha"),), "must have the form 'Bearer <key>'"),
        ((auth("Basic sk-alpha"),), "must have the form 'Bearer <key>'"),
        ((auth("Bearer    "),), "must have the form 'Bearer <key>'"),
        ((auth("Bearer sk-gamma"),), "Incorrect API key provided"),
        ((auth("Bearer sk-alph"),), "Incorrect API key provided"),
        ((auth("Bearer SK-ALPHA"),), "Incorrect API key provided"),
        ((auth("Bearer sk-alpha sk-beta"),), "Incorrect API key provided"),
        ((("api-key", ""),), "You didn't provide an API key"),
        ((("x-api-key", "sk-nope"),), "Incorrect API key provided"),
        # A malformed Authorization is refused even when another header has a good key.
        ((auth("Basic x"), ("x-api-key", "sk-alpha")), "must have the form 'Bearer <key>'"),
    ],
)
def test_refused(headers: tuple[tuple[str, str], ...], message: str) -> None:
    request = scope(*headers)

    with pytest.raises(AuthenticationFailed) as caught:
        KeyChecker(KEYS).authenticate(request)

    error = caught.value
    assert message in error.message
    assert error.status == 401
    assert error.code == "invalid_api_key"
    assert "key_name" not in request
    assert "sk-" not in error.message  # never echoes a key, right or wrong


def test_hashed_key_matches_its_plain_form_and_has_the_same_label() -> None:
    digest = hashlib.sha256(b"sk-secret").hexdigest()
    hashed = ApiKeyConfig(key=f"sha256:{digest.upper()}")  # hex digits in either case
    checker = KeyChecker([hashed])

    key = checker.authenticate(scope(auth("Bearer sk-secret")))

    assert key is not None
    assert key.label == f"key-{digest[:8]}" == ApiKeyConfig(key="sk-secret").label
    with pytest.raises(AuthenticationFailed):
        checker.authenticate(scope(auth(f"Bearer sha256:{digest}")))  # the digest is no key


def test_keys_iterable_is_consumed_once() -> None:
    checker = KeyChecker(key for key in KEYS)

    assert checker.authenticate(scope(auth("Bearer sk-alpha"))) is not None
    assert checker.authenticate(scope(auth("Bearer sk-beta"))) is not None


def test_expired_key_is_refused_from_its_expiry_on() -> None:
    expires = datetime(2026, 6, 1, tzinfo=UTC)
    now = [expires.timestamp() - 1]
    config = ApiKeyConfig(key="sk-old", name="old", expires=expires)
    checker = KeyChecker([config, ApiKeyConfig(key="sk-new")], clock=lambda: now[0])

    assert checker.authenticate(scope(auth("Bearer sk-old"))) is not None
    now[0] = expires.timestamp()
    with pytest.raises(AuthenticationFailed) as caught:
        checker.authenticate(scope(auth("Bearer sk-old")))
    assert caught.value.code == "expired_api_key"
    assert caught.value.status == 401
    assert "'old' expired at 2026-06-01T00:00:00+00:00" in caught.value.message
    assert checker.authenticate(scope(auth("Bearer sk-new"))) is not None


@pytest.mark.parametrize(
    "query",
    [
        "api_key=sk-alpha",
        "api-key=sk-alpha",
        "key=sk-alpha",
        "access_token=sk-alpha",
        "foo=1&API_KEY=sk-alpha",
        "key=",
        "key",
    ],
)
@pytest.mark.parametrize("keys", [KEYS, []], ids=["with-keys", "open"])
def test_key_in_query_string_is_refused(query: str, keys: list[ApiKeyConfig]) -> None:
    request = scope(auth("Bearer sk-alpha"), query=query)

    with pytest.raises(InvalidRequest) as caught:
        KeyChecker(keys).authenticate(request)

    assert caught.value.status == 400
    assert caught.value.code == "api_key_in_query"
    assert "Authorization: Bearer" in caught.value.message
    assert "sk-alpha" not in caught.value.message


@pytest.mark.parametrize("query", ["", "foo=bar", "keys=1", "monkey=2", "api_keyring=3"])
def test_other_query_strings_pass(query: str) -> None:
    assert KeyChecker(KEYS).authenticate(scope(auth("Bearer sk-alpha"), query=query))


def test_model_allowance() -> None:
    limited = ApiKeyConfig(key="sk-l", name="limited", models=["llama", "org/m"])
    nothing = ApiKeyConfig(key="sk-n", name="nothing", models=[])
    checker = KeyChecker([limited, nothing, ApiKeyConfig(key="sk-all")])

    key = checker.authenticate(scope(auth("Bearer sk-l")))
    assert key is not None
    key.check_model("llama")
    key.check_model("org/m")
    with pytest.raises(PermissionDenied) as caught:
        key.check_model("gpt-4")
    assert caught.value.status == 403
    assert caught.value.code == "model_not_allowed"
    assert caught.value.param == "model"
    assert caught.value.message == "The API key 'limited' may not use the model 'gpt-4'."

    empty = checker.authenticate(scope(auth("Bearer sk-n")))
    assert empty is not None
    with pytest.raises(PermissionDenied):
        empty.check_model("llama")
    everything = checker.authenticate(scope(auth("Bearer sk-all")))
    assert everything is not None
    everything.check_model("anything/at-all")
