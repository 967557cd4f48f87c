"""load_config: YAML on disk → ProxyConfig, or a ConfigError naming file, model and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, ModelConfig, ProxyConfig, SamplingDefaults, load_config

BAD_CONFIGS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "config_errors.json").read_text("utf-8")
)["cases"]

# The example from issue 2, verbatim but for the api_keys value.
ISSUE_EXAMPLE = """\
models:
  - name: llama-2-13b                     # what clients send as "model"
    api_base: http://127.0.0.1:9000/inference
    upstream_model: meta-llama/Llama-2-13b-hf   # sent as "model" upstream; default: name
    prompt_template: llama2               # raw | llama2 | llama3 | chatml | mistral | Jinja2
    defaults: {max_tokens: 256, temperature: 0.7, top_p: 1.0, top_k: 40}
    timeout: 300                          # seconds, for the whole upstream call
    headers: {Authorization: "Bearer ${UPSTREAM_TOKEN}"}   # ${VAR} taken from the environment
api_keys: ["sk-test-1"]                   # optional; clients send Authorization: Bearer <key>
"""


def write(tmp_path: Path, text: str, name: str = "proxy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_issue_example_loads_fully(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_EXAMPLE)

    config = load_config(path, environ={"UPSTREAM_TOKEN": "tok-123"})

    assert [key.key for key in config.api_keys] == ["sk-test-1"]
    assert len(config.models) == 1
    model = config.models[0]
    assert model == ModelConfig(
        name="llama-2-13b",
        api_base="http://127.0.0.1:9000/inference",
        upstream_model="meta-llama/Llama-2-13b-hf",
        prompt_template="llama2",
        defaults=SamplingDefaults(max_tokens=256, temperature=0.7, top_p=1.0, top_k=40),
        timeout=300.0,
        headers={"Authorization": "Bearer tok-123"},
    )
    assert model.upstream_name == "meta-llama/Llama-2-13b-hf"
    assert model.strip_prompt == "auto"
    assert model.tokenizer is None


def test_defaults_of_a_minimal_model(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: m\n    api_base: https://h.example/v1/gen\n")

    config = load_config(path, environ={})

    model = config.models[0]
    assert model.upstream_name == "m"
    assert model.prompt_template == "raw"
    assert model.defaults == SamplingDefaults(max_tokens=256, temperature=0.7, top_p=1.0, top_k=40)
    assert model.timeout == 300.0
    assert model.headers == {}
    assert config.api_keys == []
    assert config.max_request_bytes == 4 * 1024 * 1024
    assert config.upstream_max_connections is None  # no pool cap: as many as are in flight


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_is_an_empty_config(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text), environ={}) == ProxyConfig()


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${HOST}", {"HOST": "h1"}, "h1"),
        ("${HOST:-fallback}", {"HOST": "h1"}, "h1"),
        ("${HOST:-fallback}", {}, "fallback"),
        ("${HOST:-}", {}, ""),
        ("pre-${A}-${B:-b}-post", {"A": "a"}, "pre-a-b-post"),
        ("${A}${A}", {"A": "x"}, "xx"),
        ("$HOST and {HOST}", {"HOST": "h1"}, "$HOST and {HOST}"),
    ],
)
def test_env_expansion(tmp_path: Path, value: str, env: dict[str, str], expected: str) -> None:
    path = write(
        tmp_path,
        f'models:\n  - name: m\n    api_base: http://h:1/x\n    headers: {{X-V: "{value}"}}\n',
    )

    config = load_config(path, environ=env)

    assert config.models[0].headers == {"X-V": expected}


def test_env_expansion_reaches_every_string_and_only_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n"
        "  - name: ${NAME}\n"
        "    api_base: ${BASE:-http://fallback:9/x}/inference\n"
        "    timeout: 30\n"
        'api_keys: ["${KEY}", plain]\n',
    )

    config = load_config(path, environ={"NAME": "n1", "KEY": "sk-env"})

    assert config.models[0].name == "n1"
    assert config.models[0].api_base == "http://fallback:9/x/inference"
    assert config.models[0].timeout == 30.0
    assert [key.key for key in config.api_keys] == ["sk-env", "plain"]


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLP_TEST_TOKEN", "from-os")
    path = write(
        tmp_path,
        "models:\n  - name: m\n    api_base: http://h:1/x\n"
        '    headers: {Authorization: "Bearer ${CLP_TEST_TOKEN}"}\n',
    )

    assert load_config(path).models[0].headers == {"Authorization": "Bearer from-os"}


def test_fallback_applies_to_an_empty_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'models:\n  - name: m\n    api_base: "${BASE:-http://fallback:9/x}"\n',
    )

    assert load_config(path, environ={"BASE": ""}).models[0].api_base == "http://fallback:9/x"


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[case["id"] for case in BAD_CONFIGS])
def test_bad_config_names_file_model_and_field(tmp_path: Path, case: dict[str, Any]) -> None:
    path = write(tmp_path, "\n".join(case["yaml"]) + "\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=case["env"])

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for fragment in case["contains"]:
        assert fragment in message
    for secret in case.get("absent", []):
        assert secret not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError, match="cannot read the config") as caught:
        load_config(path, environ={})

    assert str(caught.value).startswith(str(path))


def test_relative_tokenizer_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(
        folder,
        "models:\n"
        "  - {name: rel, api_base: 'http://h:1/x', tokenizer: tok/tokenizer.json}\n"
        f"  - {{name: abs, api_base: 'http://h:1/x', tokenizer: {tmp_path}/t.json}}\n"
        "  - {name: none, api_base: 'http://h:1/x'}\n",
    )

    models = load_config(path, environ={}).models

    assert models[0].tokenizer == folder / "tok" / "tokenizer.json"
    assert models[1].tokenizer == tmp_path / "t.json"
    assert models[2].tokenizer is None


@pytest.mark.parametrize(("text", "expected"), [("5000", 5000), ("null", None)])
def test_upstream_max_connections_is_a_cap_or_none(
    tmp_path: Path, text: str, expected: int | None
) -> None:
    path = write(tmp_path, f"upstream_max_connections: {text}\n")
    assert load_config(path, environ={}).upstream_max_connections == expected


def test_upstream_max_connections_of_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="upstream_max_connections"):
        load_config(write(tmp_path, "upstream_max_connections: 0\n"), environ={})


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_EXAMPLE), environ={"UPSTREAM_TOKEN": "t"})

    with pytest.raises(ValueError, match="frozen"):
        config.models[0].timeout = 1  # type: ignore[misc]
