"""Client API keys: `Authorization: Bearer <key>` checked against the configured keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from app.errors import AuthenticationFailed


class KeyChecker:
    """Holds SHA-256 digests of the keys, so lookups take the same time whatever the key.

    Comparing digests in a set leaks nothing useful: the digest of a guess says nothing about
    how close the guess is to a real key. No keys configured means the proxy is open.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = frozenset(hashlib.sha256(key.encode()).digest() for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> None:
        """Raise AuthenticationFailed unless the header carries a configured key."""
        if not self._digests:
            return
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed(
                "The Authorization header must have the form 'Bearer <key>'."
            )
        if hashlib.sha256(key.strip().encode()).digest() not in self._digests:
            raise AuthenticationFailed("Incorrect API key provided.")
