"""Client API keys: who is calling, and may they use this model.

A key travels in `Authorization: Bearer <key>`, or in `api-key` / `x-api-key` (as Azure's and
other OpenAI-compatible servers' clients send it), never in the URL: a request with a key-like
query parameter is refused even when the proxy is open, because URLs end up in logs.

The authenticated key's label (its `name`, or `key-<8 hex digits of its SHA-256>`) is put in
`scope["key_name"]` for logs and metrics; the key itself is never kept, logged or echoed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from starlette.types import Scope

from app.config import ApiKeyConfig
from app.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

# Query parameters that carry keys in other APIs; seeing one means a key is in a URL.
QUERY_KEY_PARAMS = frozenset({"api_key", "api-key", "key", "access_token"})
_KEY_HEADERS = (b"authorization", b"api-key", b"x-api-key")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key as the proxy keeps it: its label, what it may use, its limits."""

    label: str
    models: frozenset[str] | None  # None: every model
    rpm: int | None
    tpm: int | None
    expires: datetime | None

    def check_model(self, model: str) -> None:
        """Raise PermissionDenied unless this key may use `model`."""
        if self.models is not None and model not in self.models:
            raise PermissionDenied(
                f"The API key '{self.label}' may not use the model '{model}'.", param="model"
            )


class KeyChecker:
    """Finds the caller's key by the SHA-256 digest of what the client sent.

    Lookup by digest rather than comparing keys: the time a dict lookup takes depends on the
    digest of the guess, which says nothing about how close the guess is to a real key, so it
    leaks nothing an attacker can use — as `hmac.compare_digest` against each stored key would
    guarantee, but in one step however many keys there are. The proxy holds only digests, so
    keys may be configured as `sha256:<hex>` and never appear in the config at all.

    No keys configured means the proxy is open: every request passes as nobody (`None`).
    """

    def __init__(
        self, keys: Iterable[ApiKeyConfig], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = {
            key.digest: ApiKey(
                label=key.label,
                models=None if key.models is None else frozenset(key.models),
                rpm=key.rpm,
                tpm=key.tpm,
                expires=key.expires,
            )
            for key in keys
        }
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def keys(self) -> list[ApiKey]:
        return list(self._keys.values())

    def authenticate(self, scope: Scope) -> ApiKey | None:
        """The caller's key (None when the proxy is open), its label put in `scope["key_name"]`.

        Raises InvalidRequest for a key in the query string, AuthenticationFailed for a missing,
        malformed, unknown or expired key.
        """
        if scope["query_string"]:
            refuse_query_key(scope["query_string"])
        if not self._keys:
            return None
        digest = hashlib.sha256(_presented_key(scope).encode()).digest()
        key = self._keys.get(digest)
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.expires is not None and self._clock() >= key.expires.timestamp():
            raise AuthenticationFailed(
                f"The API key '{key.label}' expired at {key.expires.isoformat()}.",
                code="expired_api_key",
            )
        scope["key_name"] = key.label
        return key


def refuse_query_key(query_string: bytes) -> None:
    """Raise InvalidRequest when the query string carries something named like a key."""
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name.lower() in QUERY_KEY_PARAMS:
            raise InvalidRequest(
                f"API keys are not accepted in the URL (query parameter '{name}'), where logs "
                "and proxies keep them. Send the key as 'Authorization: Bearer <key>'.",
                param=name,
                code="api_key_in_query",
            )


def presented_key(scope: Scope) -> str | None:
    """The key the client sent, if any (for `forward_client_auth`), whether or not the proxy
    checks keys; None when there is none or it is malformed."""
    try:
        return _presented_key(scope)
    except AuthenticationFailed:
        return None


def _presented_key(scope: Scope) -> str:
    """The key from the first of Authorization (Bearer), api-key, x-api-key the request has."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS and name not in found:
            found[name] = value
    authorization = found.get(b"authorization")
    if authorization is not None:
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed(
                "The Authorization header must have the form 'Bearer <key>'."
            )
        return key.strip()
    for name in (b"api-key", b"x-api-key"):
        value = found.get(name)
        if value is not None and value.strip():
            return value.decode("latin-1").strip()
    raise AuthenticationFailed(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
        "(or as 'x-api-key: <key>')."
    )
