"""The embedded demo upstream: the mock server on a free loopback port, in a background thread.

Used by `serve` when it has neither a config nor PROXY_API_BASE, so a bare install answers a chat
request at once. The thread has its own event loop; uvicorn skips signal handling off the main
thread, so the proxy's own server keeps SIGINT/SIGTERM.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from app.mock_upstream import create_mock_app

_START_TIMEOUT = 10.0


def start_demo_upstream() -> str:
    """Start the mock upstream and return its URL once it accepts connections."""
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
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-upstream", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the built-in demo upstream did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}/inference"
