"""Real server processes for the end-to-end tests: start, wait until ready, read logs, stop.

Every wait is a poll of a condition with a deadline, never a fixed sleep. Each process writes
stdout and stderr to one log file, shown in the report of a failing test (see conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
POLL_INTERVAL = 0.02
LOG_TAIL_CHARS = 6000


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without any PROXY_* variable, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROXY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Server:
    """One `python -m app ...` process listening on 127.0.0.1:port."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self) -> str:
        text = self.log_text()
        return text if len(text) <= LOG_TAIL_CHARS else "…" + text[-LOG_TAIL_CHARS:]

    def wait_ready(self, path: str | None) -> None:
        """Poll until the server answers HTTP (any status, or 200 on `path` when given)."""
        deadline = time.monotonic() + START_DEADLINE
        with httpx.Client(timeout=1.0) as client:
            while True:
                self._check_alive("while starting")
                try:
                    response = client.get(self.url + (path or "/"))
                except httpx.TransportError:
                    pass
                else:
                    if path is None or response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready after {START_DEADLINE:g} s; log:\n{self.log_tail()}"
                    )
                time.sleep(POLL_INTERVAL)

    def wait_for_log(self, text: str, deadline_seconds: float = 10.0) -> str:
        """Poll the log file until a line contains `text`; return that line."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            for line in self.log_text().splitlines():
                if text in line:
                    return line
            self._check_alive(f"while waiting for log text {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not log {text!r} within {deadline_seconds:g} s; "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def _check_alive(self, doing: str) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code} {doing}; log:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited by the deadline."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_DEADLINE)
        finally:
            self._log_file.close()


def start_server(
    name: str,
    args: list[str],
    *,
    port: int,
    log_dir: Path,
    env: dict[str, str],
    program: Sequence[str] = (sys.executable, "-m", "app"),
) -> Server:
    """Launch `python -m app <args>` (or `program <args>`) with its output going to
    `<log_dir>/<name>.log`."""
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    try:
        process = subprocess.Popen(
            [*program, *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_dir,
        )
    except BaseException:
        log_file.close()
        raise
    return Server(name=name, port=port, log_path=log_path, process=process, _log_file=log_file)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll a condition with a deadline (never a fixed sleep as the wait itself)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(POLL_INTERVAL)


def access_line(server: Server, request_id: str) -> dict[str, Any]:
    """The server's access line for a request (JSON logs), once it has been written."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        for line in server.log_text().splitlines():
            if request_id in line and '"app.access"' in line:
                found.append(orjson.loads(line))
                return True
        return False

    wait_until(written, seconds=10)
    return found[0]


def scrape(server: Server) -> list[Sample]:
    """Every sample the server's /metrics shows now."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def mock_stats(server: Server) -> dict[str, int]:
    """A mock upstream's counters: requests, faults, in_flight."""
    response = httpx.get(f"{server.url}/_mock/stats", timeout=5)
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()
    return result


def serve_config(
    log_dir: Path, name: str, config: dict[str, Any], env: dict[str, str] | None = None
) -> Server:
    """`serve` a config (written as `<log_dir>/<name>.yaml`) on a free port, once it answers."""
    path = log_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    argv = ["serve", "--config", str(path), "--port", str(port)]
    server = start_server(name, argv, port=port, log_dir=log_dir, env=env or clean_env())
    try:
        server.wait_ready("/health")
    except BaseException:
        server.stop()
        raise
    return server


def launch_mock(
    log_dir: Path, name: str, args: Sequence[str] = (), port: int | None = None
) -> Server:
    """Start `mock-upstream` with `args` (on a free port unless given); not yet waited for,
    so that several can start at once. Ready when `wait_ready(MOCK_READY)` returns."""
    port = free_port() if port is None else port
    argv = ["mock-upstream", "--port", str(port), *args]
    return start_server(name, argv, port=port, log_dir=log_dir, env=clean_env())


MOCK_READY = "/_mock/stats"


@contextmanager
def running_mock(log_dir: Path, name: str, args: Sequence[str] = ()) -> Iterator[Server]:
    """A ready `mock-upstream` for the block, stopped after it."""
    server = launch_mock(log_dir, name, args)
    try:
        server.wait_ready(MOCK_READY)
        yield server
    finally:
        server.stop()
