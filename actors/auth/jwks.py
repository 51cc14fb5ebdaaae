"""Public keys by `kid` from an issuer's JWKS (AUTH_JWKS_URL): fetched when a token names a key
not known yet, refreshed when old, and never fetched faster than the rules below allow. The
fetch itself is injected (actors/auth/authenticator.py makes it with urllib)."""
from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from actors.auth.identity import InvalidToken

logger = logging.getLogger(__name__)

FETCH_WAIT_S = 6.0        # a JWKS fetch is given 5 s (actors/auth/authenticator.py)
RETRY_FIRST_S = 1.0       # a failed JWKS fetch may be tried again after this, then 2, 4 … s
NEW_KID_FETCHES = 3       # fetches new kids may cause within AUTH_JWKS_REFRESH_SECONDS
KEYS_MAX_AGE_S = 300.0    # keys older (or older than AUTH_JWKS_REFRESH_SECONDS) are fetched again
MAX_MISSING_KIDS = 1024   # unknown kids remembered between fetches
MAX_MISSING_KID_CHARS = 128


class KeysUnavailable(Exception):
    """A token's key id is unknown and no key set could be fetched yet (the key server is
    down or slow): not the token's fault, so 503 with Retry-After, never 401."""

    def __init__(self, retry_after: int):
        super().__init__(f"the issuer's signing keys (AUTH_JWKS_URL) could not be fetched "
                         f"yet; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class JwksKey:
    alg: str | None         # the key's own "alg", when the JWKS names one
    key: Any                # a cryptography public key


class JwksCache:
    """Public keys by `kid` from a JWKS document. An unknown kid triggers `fetch()` (which
    returns the parsed document): an issuer may sign with a key the moment it publishes it, so
    a kid not looked for yet may fetch even just after another fetch, up to NEW_KID_FETCHES
    times within `min_refresh_s` of `clock()`; a kid a fetch did not find, or withdrew, fetches
    again only `min_refresh_s` after that fetch. A failed fetch keeps
    the keys already known and is tried again sooner, after RETRY_FIRST_S, then twice as long
    each time up to `min_refresh_s` (less a random part of up to a half, so instances do not
    retry in step). An unknown kid asked while a fetch is under way (the
    start-up one, another request's) waits for it, up to FETCH_WAIT_S. While no key set has
    been fetched at all, an unknown kid is KeysUnavailable (503), not InvalidToken (401).
    A known kid asked once the keys are older than KEYS_MAX_AGE_S (or `min_refresh_s`, if
    longer) fetches them again first, so a key the issuer withdrew (one that leaked) stops
    being accepted; a fetch that fails keeps them and is tried again as above."""

    def __init__(self, fetch: Callable[[], Mapping[str, Any]], *, min_refresh_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random):
        self._fetch = fetch
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._jitter = jitter
        self._keys: dict[str, tuple[JwksKey, ...]] = {}
        self._last_fetch: float | None = None
        self._fetched: deque[float] = deque(maxlen=NEW_KID_FETCHES)   # the latest good ones
        self._missing: dict[str, float] = {}    # kid -> the fetch it was not found after
        self._failures = 0          # fetches failed in a row
        self._retry_at = 0.0        # after a failure: when another fetch may start
        self.fetches = 0
        self.generation = 0     # key sets that withdrew or replaced a key: tokens checked again
        self._published: dict[str, tuple[str, ...]] = {}    # kid -> its entries, as fetched
        self._fetching: threading.Event | None = None       # set when the fetch under way ends
        self._said = False                                  # the key set was logged

    def keys(self, kid: str) -> tuple[JwksKey, ...]:
        """The keys published under `kid` (one, mostly)."""
        if kid not in self._keys:
            if self._may_refresh(kid):
                self.refresh()
            elif (fetching := self._fetching) is not None:
                fetching.wait(FETCH_WAIT_S)
        elif self._old():
            self.refresh()
        found = self._keys.get(kid)
        if found is None:
            if self.generation == 0:
                raise KeysUnavailable(self._retry_after())
            self._remember_missing(kid, self._last_fetch or 0.0)
            raise InvalidToken("unknown key id")
        return found

    def freshen(self) -> None:
        """Fetch the keys again when they are old, as `keys` does for a known kid: a token
        remembered as checked is answered from memory only while its keys are current."""
        if self._old():
            self.refresh()

    def refresh(self) -> None:
        started = self._last_fetch = self._clock()
        self.fetches += 1
        done = self._fetching = threading.Event()
        try:
            if self._take(self._fetch, started):
                self._fetched.append(started)
        finally:
            self._fetching = None
            done.set()

    def _take(self, fetch: Callable[[], Mapping[str, Any]], started: float) -> bool:
        try:
            document = fetch()      # which logs its own failures
        except Exception:  # noqa: BLE001 - whatever fails, the keys known are kept
            self._failed()
            return False
        try:
            keys, published, skipped = _keys_by_kid(document)
        except Exception:  # noqa: BLE001 - a bug here must not fail every token
            logger.exception("the JWKS fetched could not be read; the keys known so far stay "
                             "in use (a bug: please report it)")
            self._failed()
            return False
        for kid in set(self._keys).difference(keys):        # withdrawn: no fetch for them
            self._remember_missing(kid, started)
        if self.generation == 0 or any(published.get(kid) != entries
                                       for kid, entries in self._published.items()):
            self.generation += 1        # a key withdrawn or replaced: tokens checked again
        if not self._said or published != self._published:
            _say_keys(keys, skipped)
            self._said = True
        self._keys, self._published = keys, published
        self._failures = 0
        return True

    def _remember_missing(self, kid: str, since: float) -> None:
        missing = self._missing
        if len(missing) >= MAX_MISSING_KIDS:
            now = self._clock()
            for old in [k for k, t in missing.items() if now - t >= self._min_refresh_s]:
                del missing[old]
        if len(missing) < MAX_MISSING_KIDS and len(kid) <= MAX_MISSING_KID_CHARS:
            missing[kid] = since

    def _failed(self) -> None:
        self._failures += 1
        wait = min(self._min_refresh_s, RETRY_FIRST_S * 2 ** (self._failures - 1))
        self._retry_at = self._clock() + wait * (1 - self._jitter() / 2)

    def _old(self) -> bool:
        """Are the keys due to be fetched again (no fetch under way)?"""
        if self._fetching is not None or not self._fetched:
            return False
        now = self._clock()
        if now - self._fetched[-1] < max(KEYS_MAX_AGE_S, self._min_refresh_s):
            return False
        return not self._failures or now >= self._retry_at

    def _may_refresh(self, kid: str) -> bool:
        if self._fetching is not None:
            return False
        now = self._clock()
        if self._failures:
            return now >= self._retry_at
        if self._last_fetch is None or now - self._last_fetch >= self._min_refresh_s:
            return True
        looked = self._missing.get(kid)
        if looked is not None and now - looked < self._min_refresh_s:
            return False
        fetched = self._fetched
        return len(fetched) < NEW_KID_FETCHES or now - fetched[0] >= self._min_refresh_s

    def _retry_after(self) -> int:
        """Whole seconds until a fetch may be tried again (a fetch under way: its time)."""
        if self._fetching is not None or not self._failures:
            return math.ceil(FETCH_WAIT_S)
        return max(1, math.ceil(self._retry_at - self._clock()))


def _keys_by_kid(document: Mapping[str, Any]
                 ) -> tuple[dict[str, tuple[JwksKey, ...]], dict[str, tuple[str, ...]], list]:
    """The usable keys by kid (several under one kid are alternatives, RFC 7517 4.5), each
    kid's entries as published (canonical JSON), to tell a key set that changed, and why the
    other entries are not used."""
    keys: dict[str, tuple[JwksKey, ...]] = {}
    published: dict[str, tuple[str, ...]] = {}
    skipped = []
    entries = document.get("keys") if isinstance(document, Mapping) else None
    for number, entry in enumerate(entries if isinstance(entries, list) else (), 1):
        why = _unusable(entry)
        if why is None:
            try:
                found = JwksKey(entry.get("alg"), jwt.PyJWK(entry).key)
            except Exception as exc:  # noqa: BLE001 - PyJWK raises more than PyJWTError
                why = f"not a key PyJWT can use ({str(exc)[:80]})"    # the others still serve
        if why is not None:
            kid = entry.get("kid") if isinstance(entry, dict) else None
            named = f" (kid {kid[:40]!r})" if isinstance(kid, str) else ""
            skipped.append(f"entry {number}{named}: {why}")
            continue
        keys[entry["kid"]] = keys.get(entry["kid"], ()) + (found,)
        published[entry["kid"]] = published.get(entry["kid"], ()) + (
            json.dumps(entry, sort_keys=True),)
    return keys, published, skipped


def _unusable(entry) -> str | None:
    """Why a JWKS entry cannot check tokens here, or None."""
    if not isinstance(entry, dict):
        return "not an object"
    if not isinstance(entry.get("kid"), str):
        return "no kid (tokens name their key by kid)"
    if entry.get("use", "sig") != "sig":        # encryption keys have no place here
        return f"use {entry.get('use')!r}, not 'sig'"
    if entry.get("kty") == "oct":               # nor shared secrets
        return "a shared secret (kty 'oct'), never taken from a JWKS"
    if not isinstance(entry.get("alg", ""), str):
        return "alg is not text"
    return None


def _algs(found: tuple) -> str:
    """The algorithms a kid's keys declare: AUTH_JWT_ALGORITHMS must accept them."""
    return ", ".join(sorted({key.alg or "alg not declared" for key in found}))


def _say_keys(keys: dict, skipped: list) -> None:
    """A key set that changed: the keys in use, or a warning when none is."""
    if not keys:
        logger.warning("JWKS (AUTH_JWKS_URL) has no key this gateway can use: every token "
                       "checked against it is refused (401 unknown key id) until it publishes "
                       "one with a kid, for signing; %s",
                       "; ".join(skipped[:8]) or "its key list is empty")
        return
    kids = sorted(keys)
    logger.info("JWKS: %d key(s) in use: %s%s%s", sum(map(len, keys.values())),
                ", ".join(f"kid {kid[:40]!r} ({_algs(keys[kid])})" for kid in kids[:8]),
                f" and {len(kids) - 8} more" if len(kids) > 8 else "",
                f"; not used: {'; '.join(skipped[:8])}" if skipped else "")
