"""The wheel: `python -m build` makes it, a fresh venv installs it, its console script serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.container.engine import run_command
from tests.container.http import ask_demo, free_port, wait_healthy
from tests.container.report import Report, expect

BUILD_TIMEOUT = 300.0
INSTALL_TIMEOUT = 600.0
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0


def check_wheel(repo: Path, report: Report) -> None:
    """Build sdist and wheel, install the wheel alone into a new venv, serve the demo from it."""
    with tempfile.TemporaryDirectory(prefix="clp-wheel-") as tmp:
        work = Path(tmp)
        run_command(
            [sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(repo)],
            timeout=BUILD_TIMEOUT,
        )
        wheels = sorted((work / "dist").glob("*.whl"))
        expect(len(wheels) == 1, f"expected one wheel, found {[w.name for w in wheels]}")
        report.ok(f"python -m build made {wheels[0].name}")

        venv = work / "venv"
        run_command([sys.executable, "-m", "venv", str(venv)], timeout=120)
        run_command(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", str(wheels[0])],
            timeout=INSTALL_TIMEOUT,
        )
        script = venv / "bin/custom-llm-proxy"
        expect(script.exists(), "the wheel installed no custom-llm-proxy console script")
        report.ok("the wheel installs into a fresh venv with its console script")
        _serve_demo(script, work, report)


def _serve_demo(script: Path, work: Path, report: Report) -> None:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROXY_")}
    log_path = work / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,  # not the repository: the installed package must be the one that runs
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            took = wait_healthy(base_url, START_DEADLINE, lambda: _exited(process, log_path))
            answer = ask_demo(base_url)
            report.ok(f"its `serve` answered /health after {took:.1f} s and demo chat: {answer!r}")
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = process.wait(timeout=STOP_DEADLINE)
            stopped = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_DEADLINE)
    # uvicorn shuts down, then re-raises SIGTERM: -15, or 0.
    expect(code in (0, -signal.SIGTERM), f"exit {code} after SIGTERM; log:\n{_tail(log_path)}")
    report.ok(f"it stopped on SIGTERM in {stopped:.2f} s (exit status {code})")


def _exited(process: subprocess.Popen[bytes], log_path: Path) -> str | None:
    code = process.poll()
    return None if code is None else f"exit status {code}; log:\n{_tail(log_path)}"


def _tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-3000:]
