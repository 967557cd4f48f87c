"""The command line: check-config output and exit codes, help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("name", ["example.yaml", "demo.yaml"])
def test_shipped_configs_check_out(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLES / name)]) == 0
    out = capsys.readouterr().out
    assert f"{name}: OK" in out


def test_check_config_shows_models_and_hides_header_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "very-secret")
    assert main(["check-config", str(EXAMPLES / "example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "- llama-2-13b -> meta-llama/Llama-2-13b-hf, routing least-busy" in out
    assert "llama-2-13b[0] @ http://127.0.0.1:9000/inference: weight 1, timeout 300 s" in out
    assert "template llama2" in out and "template jinja" in out
    assert "headers Authorization" in out
    assert "very-secret" not in out
    assert "llama-ha[1] @ http://127.0.0.1:9001/inference: weight 1, timeout 120 s" in out
    assert "max_concurrency 16, upstream model llama-2-13b-awq, headers X-Pool" in out


def test_bad_config_exits_2_naming_file_model_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "models:\n  - name: broken\n    api_base: http://x\n    prompt_template: '{% if %}'\n"
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "models[0] (broken)" in err and "prompt_template" in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_serving_does_not_import_what_only_other_commands_or_configs_need() -> None:
    # Jinja2 and the mock upstream take about 70 ms of the start-up; `serve` with built-in
    # templates needs neither. A fresh interpreter, as `custom-llm-proxy serve` starts.
    code = (
        "import sys, app.cli, app.main\n"
        "from app.prompts import compile_template\n"
        "compile_template('llama3')\n"
        "print(sorted(m for m in ('jinja2', 'app.mock_upstream') if m in sys.modules))\n"
        "compile_template('{{ messages[0].content }}')\n"
        "print('jinja2' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == ["[]", "True"]
