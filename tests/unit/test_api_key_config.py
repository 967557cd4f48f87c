"""The `api_keys` config: plain strings or objects, hashes, names, expiry, limits, duplicates,
and PROXY_API_KEYS merged in (bad files: tests/data/config_errors.json)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.config import (
    ApiKeyConfig,
    ConfigError,
    ProxyConfig,
    RateLimitConfig,
    load_config,
    with_extra_keys,
)

DIGEST = hashlib.sha256(b"sk-hashed").hexdigest()


def load(tmp_path: Path, text: str) -> ProxyConfig:
    path = tmp_path / "proxy.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={"TEAM_KEY": "sk-team"})


def test_plain_strings_and_objects(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""\
api_keys:
  - sk-plain
  - "${{TEAM_KEY}}"
  - key: "sha256:{DIGEST}"
    name: alice
    models: [llama, org/model]
    rpm: 60
    tpm: 100000
    expires: 2026-12-31
  - {{key: sk-later, expires: "2026-07-01T12:30:00+02:00"}}
  - {{key: sk-naive, expires: 2026-07-01T12:30:00}}
""",
    )

    plain, team, alice, later, naive = config.api_keys
    assert plain == ApiKeyConfig(key="sk-plain")
    assert plain.label == "key-" + hashlib.sha256(b"sk-plain").hexdigest()[:8]
    assert plain.models is None and plain.rpm is None and plain.expires is None
    assert team.key == "sk-team"
    assert alice == ApiKeyConfig(
        key=f"sha256:{DIGEST}",
        name="alice",
        models=["llama", "org/model"],
        rpm=60,
        tpm=100000,
        expires=datetime(2026, 12, 31, tzinfo=UTC),  # a date is 00:00 UTC of that day
    )
    assert alice.digest == bytes.fromhex(DIGEST)
    assert alice.label == "alice"
    assert later.expires == datetime(2026, 7, 1, 10, 30, tzinfo=UTC)
    assert later.expires is not None and later.expires.utcoffset() == timedelta(hours=2)
    assert naive.expires == datetime(2026, 7, 1, 12, 30, tzinfo=UTC)  # naive is UTC


def test_date_object_and_aware_datetime_in_code() -> None:
    key = ApiKeyConfig(key="k", expires=date(2027, 1, 2))
    assert key.expires == datetime(2027, 1, 2, tzinfo=UTC)
    tz = timezone(timedelta(hours=-5))
    assert ApiKeyConfig(key="k", expires=datetime(2027, 1, 2, tzinfo=tz)).expires == datetime(
        2027, 1, 2, 5, tzinfo=UTC
    )


def test_rate_limit_defaults() -> None:
    assert ProxyConfig().rate_limit == RateLimitConfig(
        backend=None,
        redis_url=None,
        policy="fail_open",
        redis_timeout=0.25,
        retry_seconds=1.0,
        key_prefix="clp:rl:",
    )


def test_model_limits(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "models:\n  - {name: m, api_base: 'http://h:1/x', rpm: 600, tpm: 90000}\n"
        "  - {name: n, api_base: 'http://h:1/x'}\n",
    )
    assert (config.models[0].rpm, config.models[0].tpm) == (600, 90000)
    assert (config.models[1].rpm, config.models[1].tpm) == (None, None)


def test_env_keys_are_added() -> None:
    config = ProxyConfig(api_keys=[ApiKeyConfig(key="sk-file", name="file")])

    merged = with_extra_keys(config, ["sk-env-1", "sk-env-2"], "PROXY_API_KEYS")

    assert [key.key for key in merged.api_keys] == ["sk-file", "sk-env-1", "sk-env-2"]
    assert with_extra_keys(config, [], "PROXY_API_KEYS") is config


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        (["sk-file"], "api_keys[1] is the same key as api_keys[0]"),
        ([f"sha256:{DIGEST[:10]}"], "64 hex digits"),
    ],
)
def test_bad_env_keys_name_the_variable(keys: list[str], words: str) -> None:
    config = ProxyConfig(api_keys=[ApiKeyConfig(key="sk-file")])

    with pytest.raises(ConfigError) as caught:
        with_extra_keys(config, keys, "PROXY_API_KEYS")

    assert str(caught.value).startswith("PROXY_API_KEYS: ")
    assert words in str(caught.value)
