"""Real pieces of a corporate network for tests: a throwaway CA and a forward proxy.

- `Certificates`: a CA made by `trustme` for this test run, a server certificate it issued for
  127.0.0.1 and localhost, a client certificate it issued (for mutual TLS), and a second CA
  that issued nothing the servers use, all as PEM files.
- `Tinyproxy`: tinyproxy (apt) on a free loopback port with a generated config, optionally
  with basic auth; its log shows which requests went through it (`requests()`).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.e2e.servers import free_port, wait_until

PROXY_USER = "proxyuser"
PROXY_PASSWORD = "S3cretProxyPw"  # tinyproxy's BasicAuth takes letters and digits


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that issued the server's and the client's certificates
    other_ca: Path  # a CA that issued nothing here
    server_cert: Path  # chain, for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """What a TLS upstream serves with; it asks for a client certificate from `ca` when
        `require_client_cert`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def make_certificates(directory: Path) -> Certificates:
    """A fresh CA and the certificates it issued, written to `directory`."""
    ca = trustme.CA()
    other = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@proxy.test")
    paths = Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    other.cert_pem.write_to_path(str(paths.other_ca))
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths.server_cert), append=index > 0)
    server.private_key_pem.write_to_path(str(paths.server_key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    return paths


class Tinyproxy:
    """A running tinyproxy; `url` carries the credentials when it asks for them."""

    def __init__(self, port: int, log_path: Path, auth: bool) -> None:
        self.port = port
        self.log_path = log_path
        self.auth = auth

    @property
    def url(self) -> str:
        credentials = f"{PROXY_USER}:{PROXY_PASSWORD}@" if self.auth else ""
        return f"http://{credentials}127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def requests(self) -> list[str]:
        """The request lines tinyproxy read, in order: `CONNECT host:port HTTP/1.1`, or
        `POST http://host:port/path HTTP/1.1` (logged as soon as read, before forwarding)."""
        marker = "]: Request (file descriptor "
        return [
            line.split("): ", 1)[1]
            for line in self.log_text().splitlines()
            if marker in line and "): " in line
        ]


@contextmanager
def running_tinyproxy(directory: Path, *, auth: bool = False) -> Iterator[Tinyproxy]:
    """tinyproxy in the foreground on a free port until the block ends; skipped when absent
    (.ci/run installs it)."""
    program = shutil.which("tinyproxy")
    if program is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    port = free_port()
    log_path = directory / f"tinyproxy-{port}.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        f'LogFile "{log_path}"',
        "LogLevel Info",
        "MaxClients 100",
        "Allow 127.0.0.1",
        "DisableViaHeader Yes",
    ]
    if auth:
        lines.append(f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}")
    config = directory / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = (directory / f"tinyproxy-{port}.out").open("wb")
    process = subprocess.Popen(
        [program, "-d", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: process.poll() is not None or _answers(port), seconds=10)
        assert process.poll() is None, f"tinyproxy exited: {config.read_text()}"
        yield Tinyproxy(port, log_path, auth)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
