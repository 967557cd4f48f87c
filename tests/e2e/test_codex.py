"""The Codex CLI (`@openai/codex` from npm) against a real `serve` and `mock-upstream`.

`codex exec` runs non-interactively with a custom model provider whose base URL is the proxy's
/v1 and whose wire API is the Responses API. The mock upstream, offered Codex's tools, asks for
its shell tool with the command `example`; a script of that name (on the PATH of the login
shell Codex runs commands in) prints a marker; Codex runs it and sends its output back as a
`function_call_output`, and the mock answers with the tool's result. So the answer holds the
marker only if the whole round trip went through the proxy: the streamed call, the CLI running
it, the output in the next request, the answer.

No request may leave the machine: every proxy variable points at a listener of the test's
own that notes any connection (there must be none), Codex's analytics and update check are
off, and its home is a fresh directory. The CLI is installed from npm into tests/clients/node
(`npm ci`) when missing; the test is skipped, saying why, where node, npm or the package
cannot be had.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.npm_cli import npm_cli
from tests.e2e.servers import Server, clean_env, running_mock, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NODE_DIR = Path(__file__).parents[1] / "clients" / "node"
KEY = "sk-codex-e2e"
MODEL = "codex-agent"
MARKER = "marker-from-the-example-command-5e1f"


@pytest.fixture(scope="module")
def codex() -> Path:
    """The codex executable, installed from tests/clients/node's lockfile when missing."""
    return npm_cli(NODE_DIR, "codex", "@openai/codex")


class Trap:
    """A loopback listener that notes every connection made to it (as an HTTP(S) proxy,
    it would see any request Codex tried to send anywhere but the proxy under test)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(2)
                try:
                    self.seen.append(connection.recv(4096))
                except OSError:
                    self.seen.append(b"")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir: Path = tmp_path_factory.mktemp("codex")
    with running_mock(log_dir, "mock-codex") as mock:
        model = {"name": MODEL, "api_base": f"{mock.url}/inference", "prompt_template": "chatml"}
        config = {"models": [model], "api_keys": [KEY]}
        server = serve_config(log_dir, "codex-proxy", config)
        try:
            yield server
        finally:
            server.stop()


def _home(tmp_path: Path) -> Path:
    """A home whose login shell finds `example` (it prints MARKER) first on its PATH."""
    home = tmp_path / "home"
    tools = home / "bin"
    tools.mkdir(parents=True)
    script = tools / "example"
    script.write_text(f'#!/bin/sh\necho "example ran: {MARKER}"\n', encoding="utf-8")
    script.chmod(0o755)
    (home / ".bash_profile").write_text('export PATH="$HOME/bin:$PATH"\n', encoding="utf-8")
    return home


def _codex_exec(codex: Path, proxy: Server, tmp_path: Path, trap: Trap, prompt: str) -> Any:
    home = _home(tmp_path)
    (tmp_path / "codex-home").mkdir()
    (tmp_path / "work").mkdir()
    nowhere = f"http://127.0.0.1:{trap.port}"
    env = clean_env(
        HOME=str(home),
        CODEX_HOME=str(tmp_path / "codex-home"),
        CODEX_PROXY_KEY=KEY,
        HTTP_PROXY=nowhere,
        HTTPS_PROXY=nowhere,
        ALL_PROXY=nowhere,
        http_proxy=nowhere,
        https_proxy=nowhere,
        all_proxy=nowhere,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY"):
        env.pop(name, None)
    provider = (
        f'{{name="custom-llm-proxy", base_url="{proxy.url}/v1", wire_api="responses", '
        'env_key="CODEX_PROXY_KEY"}'
    )
    argv = [
        str(codex),
        "exec",
        "--json",
        "--skip-git-repo-check",
        # The command is the mock's scripted `example`, run in a fresh directory: Codex's
        # sandbox (bubblewrap, which needs user namespaces) is not what is under test here.
        "--sandbox",
        "danger-full-access",
        "-c",
        "analytics.enabled=false",
        "-c",
        "check_for_update_on_startup=false",
        "-c",
        "features.plugins=false",
        "-c",
        f"model_providers.proxy={provider}",
        "-c",
        "model_provider=proxy",
        "-m",
        MODEL,
        prompt,
    ]
    done = subprocess.run(
        argv,
        cwd=tmp_path / "work",
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"codex exec failed:\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_codex_exec_runs_a_shell_tool_round_trip_through_the_proxy(
    codex: Path, proxy: Server, tmp_path: Path
) -> None:
    trap = Trap()
    try:
        events = _codex_exec(codex, proxy, tmp_path, trap, "Run the example command.")
    finally:
        trap.close()
    items = [event["item"] for event in events if event["type"] == "item.completed"]
    [command] = [item for item in items if item["type"] == "command_execution"]
    assert command["command"].endswith("example") and command["exit_code"] == 0
    assert MARKER in command["aggregated_output"]
    messages = [item["text"] for item in items if item["type"] == "agent_message"]
    assert messages and MARKER in messages[-1]  # the answer is made from the tool's output
    assert events[-1]["type"] == "turn.completed"
    # nothing tried to leave for OpenAI or anywhere else (Codex's plugin sync would: github.com)
    assert trap.seen == [], [seen[:90] for seen in trap.seen]
    # Two Responses requests (the call, then the answer from its output), both streamed
    lines = [line for line in proxy.log_text().splitlines() if "app.access" in line]
    assert [line.split()[4:7] for line in lines] == [["POST", "/v1/responses", "200"]] * 2
    assert all('"stream":true' in line for line in lines)
