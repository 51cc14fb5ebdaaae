"""Tokens verified recently: a client that reconnects with the same token (a browser's cookie on
every EventSource reconnect, a service's bearer token) is not verified again.

An entry is the identity a token was verified to, kept under the token's keyed digest (never
the token) until the token expires. It is dropped when the keys it was checked with change
(a JWKS refresh: `generation`), and the cache holds at most `capacity` entries, the oldest
going first. Only tokens that passed are kept: a refused one is checked in full every time.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.auth.identity import Identity

CAPACITY = 10_000


class Expired(Exception):
    """A token verified earlier has expired since (the Verifier says "token expired")."""


class VerifiedTokens:
    def __init__(self, *, leeway_s: float = 0, capacity: int = CAPACITY,
                 clock: Callable[[], float] = time.time):
        self.leeway_s = leeway_s
        self.capacity = capacity
        self.clock = clock
        self._salt = secrets.token_bytes(16)
        # Oldest first. An OrderedDict: a dict's first key, after many deletions at its front,
        # is found by walking the deleted slots (up to `capacity` of them: 10 us a new token).
        self._entries: OrderedDict[bytes, tuple[Identity, int]] = OrderedDict()
        self.hits = 0

    def get(self, token: str, generation: int) -> Identity | None:
        """The identity `token` was verified to under keys `generation`; None if unknown.
        Raises Expired once it has expired (as PyJWT decides: exp against now minus the
        leeway)."""
        return self.known(self.key(token), generation)

    def known(self, key: bytes, generation: int) -> Identity | None:
        """`get` of the token whose `key` is given."""
        found = self._entries.get(key)
        if found is None:
            return None
        identity, checked_under = found
        if checked_under != generation:
            del self._entries[key]
            return None
        if identity.expires_at <= self.clock() - self.leeway_s:
            del self._entries[key]
            raise Expired()
        self.hits += 1
        return identity

    def put(self, token: str, identity: Identity, generation: int) -> None:
        self.remember(self.key(token), identity, generation)

    def remember(self, key: bytes, identity: Identity, generation: int) -> None:
        """`put` of the token whose `key` is given."""
        entries = self._entries
        while len(entries) >= self.capacity:
            entries.popitem(last=False)
        entries[key] = (identity, generation)

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, token: str) -> bytes:
        """What a token is kept under (computed once for a `known` then a `remember`)."""
        return hashlib.blake2b(token.encode(), digest_size=32, key=self._salt).digest()
