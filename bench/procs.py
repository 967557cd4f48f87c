"""The processes the benchmark starts, and what /proc says about them.

Every server runs in its own session (so its process group id is its pid), pinned to CPUs with
taskset, and is stopped by signalling its whole group: SIGTERM, then SIGKILL after a deadline. Only
groups this module started are ever signalled. Waits poll a condition until a deadline; none is a
fixed sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02
STOP_DEADLINE_S = 10.0

T = TypeVar("T")


class SetupError(Exception):
    """The benchmark cannot run: a missing tool, a busy port, a server that did not come up."""


def cpu_list(cpus: Iterable[int]) -> str:
    """taskset's form of a CPU set: "0", "0,1"."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


@dataclass
class Server:
    """One started process group, its log file and when it was started."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text if len(text) <= chars else "…" + text[-chars:]

    def stop(self) -> None:
        """TERM the group, KILL what is left after STOP_DEADLINE_S, reap the leader."""
        try:
            _signal_group(self.pid, signal.SIGTERM)
            if not _wait_group_gone(self, STOP_DEADLINE_S):
                _signal_group(self.pid, signal.SIGKILL)
                _wait_group_gone(self, STOP_DEADLINE_S)
        finally:
            self._log.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(pgid, signum)


def _wait_group_gone(server: Server, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        server.process.poll()  # reaps the leader, so it no longer counts as a member
        try:
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(POLL_S)
    return False


class Servers:
    """Starts servers in their own process groups; stops all of them, newest first, on exit."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self._log_dir = log_dir
        self._cwd = cwd
        self._started: list[Server] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], cpus: Iterable[int], env: Mapping[str, str]
    ) -> Server:
        log_path = self._log_dir / f"{name}.log"
        log = log_path.open("wb")
        try:
            process = subprocess.Popen(
                ["taskset", "-c", cpu_list(cpus), *argv],  # taskset execs: the pid is argv's
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self._cwd,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        server = Server(name, process, log_path, time.monotonic(), log)
        self._started.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        self._started.remove(server)

    def pgids(self) -> list[int]:
        return [server.pid for server in self._started]

    def stop_all(self) -> None:
        while self._started:
            self.stop(self._started[-1])


def free_port(avoid: set[int]) -> int:
    """A loopback port that was free a moment ago and is not in `avoid`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[int, bytes]:
    """One POST on a fresh connection: (status, body). Raises OSError/HTTPException on failure."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request(
            "POST", "/" + path, body, {"Content-Type": "application/json", **headers}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until(
    check: Callable[[], T | None], *, deadline_s: float, what: str, server: Server | None = None
) -> T:
    """Poll `check` until it returns a value; fail early if `server` exits meanwhile."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result is not None:
            return result
        if server is not None and not server.alive():
            raise SetupError(
                f"{server.name} exited with {server.process.returncode} {what}; "
                f"its log:\n{server.log_tail()}"
            )
        if time.monotonic() > end:
            tail = f"; {server.name}'s log:\n{server.log_tail()}" if server else ""
            raise SetupError(f"timed out after {deadline_s:g} s {what}{tail}")
        time.sleep(POLL_S)


# ---------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (the name in parentheses may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _all_stats() -> dict[int, list[str]]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            stats[int(entry)] = fields
    return stats


# Indexes into _stat_fields(): man proc(5) field number minus 3.
_PPID, _PGRP, _UTIME, _STIME = 1, 2, 11, 12


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for pid, fields in _all_stats().items():
        children.setdefault(int(fields[_PPID]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the given processes."""
    ticks = 0
    for pid in pids:
        if (fields := _stat_fields(pid)) is not None:
            ticks += int(fields[_UTIME]) + int(fields[_STIME])
    return ticks / CLOCK_TICKS


def group_cpu_seconds(pgids: Iterable[int]) -> float:
    """utime + stime of every live process in the given process groups."""
    wanted = {str(pgid) for pgid in pgids}
    ticks = sum(
        int(fields[_UTIME]) + int(fields[_STIME])
        for fields in _all_stats().values()
        if fields[_PGRP] in wanted
    )
    return ticks / CLOCK_TICKS


def memory_bytes(pids: Iterable[int], key: str = "VmRSS") -> int:
    """Sum of a /proc/PID/status memory line (VmRSS, or VmHWM for the peak) over `pids`."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(key + ":"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_times(cpus: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """Per CPU from /proc/stat, in seconds: (all time, idle + iowait, user + nice + system)."""
    wanted = {f"cpu{cpu}": cpu for cpu in cpus}
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in wanted:
            ticks = [int(value) for value in values]
            times[wanted[name]] = (
                sum(ticks) / CLOCK_TICKS,
                (ticks[3] + ticks[4]) / CLOCK_TICKS,
                (ticks[0] + ticks[1] + ticks[2]) / CLOCK_TICKS,
            )
    return times
