"""Claude Code, the real CLI from npm, run non-interactively (`claude -p`) against a real `serve`
and `mock-upstream`: it answers a prompt through the proxy, and it completes one tool round trip
(the mock asks for the CLI's Read tool, the CLI reads the file, the answer quotes it).

The CLI is installed from tests/clients/claude-code/package.json (its lock file) when missing;
the tests skip, saying why, where npm or the package cannot be had. It runs with a home of its
own, `--bare` (no hooks, plugins or CLAUDE.md discovery), its telemetry, error reports and
auto-updates off, and the proxy as its only endpoint; the model it asks for by default
(`claude-…`) reaches the demo model through the alias pattern `claude-*`.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.npm_cli import npm_cli
from tests.e2e.servers import Server, running_mock, serve_config, wait_until

KEY = "sk-claude-code"
CLIENT_DIR = Path(__file__).parents[1] / "clients" / "claude-code"
RUN_SECONDS = 120


@pytest.fixture(scope="module")
def claude() -> Path:
    """The CLI, installed with `npm ci` from the lock file if it is not yet."""
    return npm_cli(CLIENT_DIR, "claude", "Claude Code")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir: Path = tmp_path_factory.mktemp("claude-code")
    with running_mock(log_dir, "mock-claude-code") as mock:
        model = {
            "name": "demo",
            "api_base": f"{mock.url}/inference",
            "prompt_template": "chatml",
            "aliases": ["claude-*"],
        }
        config = {"models": [model], "api_keys": [KEY], "log_content": True}
        server = serve_config(log_dir, "claude-code-proxy", config)
        try:
            yield server
        finally:
            server.stop()


def _run(claude: Path, proxy: Server, home: Path, cwd: Path, *args: str) -> dict[str, Any]:
    """`claude -p … --output-format json` with only what it needs in its environment; its
    JSON result."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_API_KEY": KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [str(claude), "--bare", "--output-format", "json", "-p", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stderr}{done.stdout}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _answers(proxy: Server) -> list[dict[str, Any]]:
    """The access log's lines for the Messages requests (with the completions: log_content)."""
    lines = [line for line in proxy.log_text().splitlines() if "POST /v1/messages 200 " in line]
    return [json.loads(line.split(" 200 ", 1)[1]) for line in lines]


def _new_answers(proxy: Server, before: int, count: int) -> list[dict[str, Any]]:
    """The `count` answers logged after the first `before`, once they are all logged (a line
    is written once its response is out, which may be after the CLI exited)."""
    wait_until(lambda: len(_answers(proxy)) >= before + count)
    return _answers(proxy)[before:]


def test_claude_answers_a_prompt_through_the_proxy(
    claude: Path, proxy: Server, tmp_path: Path
) -> None:
    before = len(_answers(proxy))
    result = _run(claude, proxy, tmp_path / "home", tmp_path, "Say hello", "--tools", "")
    assert result["is_error"] is False and result["subtype"] == "success", result
    [answer] = _new_answers(proxy, before, 1)
    assert answer["model"] == "demo" and answer["stream"] is True
    assert result["result"] == answer["completion"][0]  # what the mock wrote, as the CLI shows it
    assert result["usage"]["input_tokens"] == answer["prompt_tokens"]


def test_claude_runs_the_tool_the_model_asks_for(
    claude: Path, proxy: Server, tmp_path: Path
) -> None:
    """The mock calls the one tool offered (Read, with the file_path "example"); the CLI reads
    that file in its working directory and sends its content back as the tool_result; the mock
    quotes it, and the CLI prints that."""
    work = tmp_path / "work"
    work.mkdir()
    secret = f"the secret word is {uuid.uuid4().hex}"
    (work / "example").write_text(secret + "\n", encoding="utf-8")
    before = len(_answers(proxy))
    result = _run(
        claude, proxy, tmp_path / "home", work, "Read the file named example", "--tools", "Read"
    )
    assert result["is_error"] is False, result
    call, final = _new_answers(proxy, before, 2)
    assert call["completion"][0] == (
        '<tool_call>\n{"name": "Read", "arguments": {"file_path": "example"}}\n</tool_call>'
    )
    assert final["completion"][0].startswith("The tool returned: ")
    assert secret in final["completion"][0]  # the file's content came back through the CLI
    assert result["result"] == final["completion"][0]
