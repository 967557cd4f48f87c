"""`serve` ends with no thread of its own still running when the interpreter tears itself down.

A thread still running an event loop at that point may wake into a half-finalized runtime and
crash the process with SIGSEGV (app/demo.py): with `--workers 2` the built-in demo upstream ran
in the supervisor, PID 1 of the container, until the process died, and `podman stop` ended with
exit code 139 now and then. The crash itself is rare and timing-bound; its precondition is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import clean_env, free_port, start_server, wait_until

pytestmark = pytest.mark.e2e

# `python -m app ARGS`, reporting the threads alive when the interpreter starts its teardown:
# atexit callbacks run after the non-daemon threads are joined, before modules are cleared.
PROBE = """\
import atexit, sys, threading
from app.cli import main

def report():
    others = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    print("threads at exit:", others, flush=True)

atexit.register(report)
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_the_workers_supervisor_leaves_no_thread_running(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        "supervisor",
        ["serve", "--port", str(port), "--workers", "2"],
        port=port,
        log_dir=tmp_path,
        env=clean_env(),
        program=(sys.executable, "-c", PROBE),
    )
    try:
        server.wait_ready("/health")
        wait_until(lambda: server.log_text().count("Application startup complete") == 2, 30)
        # The workers' upstream is the demo server in the supervisor: keep-alive connections to it.
        for index in range(4):
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={"model": "demo", "messages": [{"role": "user", "content": f"q{index}"}]},
                timeout=10,
            )
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    log = server.log_text()
    assert server.process.returncode == 0, log
    assert "Stopping parent process" in log
    assert "threads at exit: []" in log, log
