"""The command line as a user runs it: several workers, and a bad config stopping `serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import Server, clean_env, free_port, start_server, wait_until

pytestmark = pytest.mark.e2e


def test_two_workers_serve_the_demo(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        "workers",
        ["serve", "--port", str(port), "--workers", "2"],
        port=port,
        log_dir=tmp_path,
        env=clean_env(),
    )
    try:
        server.wait_ready("/health")
        wait_until(lambda: server.log_text().count("Application startup complete") == 2)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for index in range(8):
                response = client.post(
                    "/v1/chat/completions",
                    json={"model": "demo", "messages": [{"role": "user", "content": f"q{index}"}]},
                )
                assert response.status_code == 200, response.text
        assert server.log_text().count("Started server process") == 2
    finally:
        server.stop()
    assert "Finished server process" in server.log_text()


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n  - name: llama\n    api_base: http://127.0.0.1:9/x\n"
        "    headers: {Authorization: 'Bearer ${E2E_SURELY_UNSET_TOKEN}'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "models[0] (llama).headers.Authorization" in result.stderr
    assert "E2E_SURELY_UNSET_TOKEN" in result.stderr


def test_sigterm_stops_serve_cleanly(tmp_path: Path) -> None:
    port = free_port()
    server: Server = start_server(
        "sigterm", ["serve", "--port", str(port)], port=port, log_dir=tmp_path, env=clean_env()
    )
    server.wait_ready("/health")
    server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM: exit status -15 (143 in a shell).
    assert server.process.returncode in (0, -15)
    log = server.log_text()
    assert "Shutting down" in log and "Finished server process" in log
    assert "Traceback" not in log
