"""A private redis-server for tests: its own process on a free loopback port, never a system one.

    with RedisServer.start(log_dir) as server:   # waits until it answers PING
        server.url                                # redis://127.0.0.1:<port>/0
        server.kill()                             # SIGKILL, as a crash would
        server.restart()                          # same port, empty (no persistence)

Every wait polls a condition with a deadline. Tests that need it are skipped where no
redis-server is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest
import redis

from tests.e2e.servers import POLL_INTERVAL, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_DEADLINE = 10.0


def require_redis_server() -> str:
    """The redis-server binary, or skip the test saying why."""
    if not Path(REDIS_SERVER).is_file():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return REDIS_SERVER


class RedisServer:
    """One redis-server process: no persistence, loopback only, logging to a file."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @classmethod
    def start(cls, log_dir: Path, name: str = "redis") -> RedisServer:
        server = cls(free_port(), log_dir / f"{name}.log")
        server.launch()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def launch(self) -> None:
        """Start the process on `self.port` and wait until it answers PING."""
        binary = require_redis_server()
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if not self.running:
                    raise RuntimeError(f"redis-server exited while starting:\n{self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not ready in time:\n{self.log_tail()}")
                time.sleep(POLL_INTERVAL)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A synchronous client, to look at what the proxy stored."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def kill(self) -> None:
        """SIGKILL and reap: gone at once, as in a crash."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        """Start again on the same port (empty: nothing was persisted)."""
        self.kill()
        self.launch()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after a deadline), then close the log."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-chars:]

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
