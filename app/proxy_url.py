"""A forward proxy's URL, read once: `http://[user:password@]host:port` -> `Proxy`.

Shared by the config's check of `proxy:` and by the choice of each deployment's proxy
(app.upstream_network), so both accept exactly the same URLs.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

from app.http_origin import Proxy


def parse_proxy(url: str) -> Proxy:
    """A Proxy from `http://[user:password@]host:port`; ValueError (never repeating the URL,
    which may hold a password) when it is not one."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid proxy URL (http://[user:password@]host:port)") from None
    if parts.scheme != "http":
        raise ValueError("only http:// proxies are supported (the CONNECT tunnel carries TLS)")
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise ValueError("a proxy URL is http://[user:password@]host:port, nothing more")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    authorization = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return Proxy(parts.hostname, port, f"http://{host}:{port}", authorization)
