"""The embedded demo upstream: the mock server on a free loopback port, in a background thread.

Used by `serve` when it has neither a config nor PROXY_API_BASE, so a bare install answers a chat
request at once. The thread has its own event loop; uvicorn skips signal handling off the main
thread, so the proxy's own server keeps SIGINT/SIGTERM.

`running_demo_upstream()` stops the server and waits for its thread before the process exits. A
thread still running its event loop while the interpreter tears itself down crashes the process
when it wakes (uvicorn's 100 ms tick, a closed connection) in the last moments of the teardown:
uvloop's callbacks from libuv enter Python through `PyGILState_Ensure`, which by then finds no
interpreter and dereferences NULL (gdb: `new_threadstate (interp=0x0)`; python/cpython#124619).
With `serve --workers N` this thread ran in the supervisor, PID 1 of the container, whose
SIGSEGV is the container's exit code 139.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.mock_upstream import create_mock_app

log = logging.getLogger("app")

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


@contextmanager
def running_demo_upstream() -> Iterator[str]:
    """Run the mock upstream; yield its URL once it accepts connections; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        # Quiet while it starts, so the proxy's "serving model 'demo'" line comes first; the
        # proxy's own logging configuration takes over when its server starts.
        uvicorn.Config(
            create_mock_app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    # A daemon all the same: should it not stop in time, the process still exits.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-upstream", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the built-in demo upstream did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/inference"
    finally:
        _stop(server, thread)
        sock.close()


def _stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    # Its clients (the proxy's workers) are gone by now: nothing waits for an answer.
    server.should_exit = server.force_exit = True
    thread.join(_STOP_TIMEOUT)
    if thread.is_alive():
        log.warning("the built-in demo upstream did not stop within %g s", _STOP_TIMEOUT)
