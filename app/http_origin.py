"""Where the upstream client's connections go: the origin (scheme, host, port, forward proxy,
TLS context), the key under which the pool keeps its connections, and a prepared request's
target. Plain data, shared by the pool, its tunnel and the network planning at start-up.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP forward proxy. `display` is its URL without credentials: the only form of it
    that may be shown; `authorization` is the whole Proxy-Authorization value, or None."""

    host: str
    port: int
    display: str
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go and how: the key of the pool's connections. `tls` is the Target's
    own context (compared by identity: one per distinct TLS config), None for the pool's."""

    scheme: str
    host: str
    port: int
    proxy: Proxy | None = None
    tls: ssl.SSLContext | None = None

    @property
    def authority(self) -> str:
        """host:port as CONNECT and absolute-form requests name it."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    """A prepared POST: the origin and the request head up to the per-request headers."""

    origin: Origin
    head: bytes  # request line, Host and the fixed headers, each line ending in CRLF
