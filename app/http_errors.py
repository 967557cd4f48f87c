"""The upstream client's errors (app.http_client), drawn once:

    HTTPClientError
    ├── ConnectFailed       no connection could be made (refused, unreachable, TLS failure,
    │                       the proxy refused the tunnel)
    ├── ConnectionBroken    the connection failed or the answer was not valid HTTP
    └── ResponseTooLarge    the body passed `max_response_bytes`

`app.upstream` maps them to the proxy's own errors at one boundary.
"""

from __future__ import annotations

import ssl


class HTTPClientError(Exception):
    pass


class ConnectFailed(HTTPClientError):
    pass


class ConnectionBroken(HTTPClientError):
    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered  # whether any byte of an answer had arrived


class ResponseTooLarge(HTTPClientError):
    pass


def connect_error(exc: OSError) -> str:
    """What went wrong while connecting, in words: TLS failures say so."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the upstream's certificate was not accepted ({exc.reason}): {exc.verify_message}"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__
