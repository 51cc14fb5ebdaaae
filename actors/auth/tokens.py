"""Subscriber JWTs: verify a token against explicit rules and read who it names and what it
may read (pure; the JWKS fetch is injected).

HS* tokens are checked only with the shared secret, every other algorithm only with the public
key or the JWKS, so an HS token signed with the public key's text never meets that key. A
reason in InvalidToken is short and never holds the token.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from actors.auth import segments
from actors.auth.mac import PreparedMAC
from actors.auth.subjects import MAX_SUBJECT_LENGTH
from actors.auth.verified import Expired, VerifiedTokens
from actors.filters import Filter, FilterError
from actors.settings.variables import (
    ASYMMETRIC_ALGORITHMS, HASH_BYTES, MIN_AUTH_SECRET_BYTES, SYMMETRIC_ALGORITHMS,
)

if TYPE_CHECKING:
    from jwt.types import Options

logger = logging.getLogger(__name__)

ASYMMETRIC = frozenset(ASYMMETRIC_ALGORITHMS)
SYMMETRIC = frozenset(SYMMETRIC_ALGORITHMS)
MIN_SECRET_BYTES = MIN_AUTH_SECRET_BYTES     # RFC 7518 3.2: an HS256 key of at least 256 bits
MAX_TOKEN_CHARS = 16384
MAX_SUBJECT_CHARS = MAX_SUBJECT_LENGTH     # a subject owns the events its owner field names
FETCH_WAIT_S = 6.0        # a JWKS fetch is given 5 s (actors/auth/authenticator.py)
RETRY_FIRST_S = 1.0       # a failed JWKS fetch may be tried again after this, then 2, 4 … s
NEW_KID_FETCHES = 3       # fetches new kids may cause within AUTH_JWKS_REFRESH_SECONDS
KEYS_MAX_AGE_S = 300.0    # keys older (or older than AUTH_JWKS_REFRESH_SECONDS) are fetched again
MAX_MISSING_KIDS = 1024   # unknown kids remembered between fetches
MAX_MISSING_KID_CHARS = 128


class InvalidToken(Exception):
    """The token is refused; `reason` is short, safe to log and to show the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidTicket(InvalidToken):
    """The ticket is refused; `reason` is short and never holds the ticket."""


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


class Identity(NamedTuple):
    """Who a credential names and what it may read. A tuple: immutable (one is shared by
    every stream its cached token opens) and made in a third of a frozen dataclass's time, once
    per ticket or new token."""
    subject: str
    scope_types: tuple[str, ...]      # patterns in the filter syntax; ("*",) is everything
    scope_sources: tuple[str, ...]
    expires_at: float                 # unix seconds


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


@dataclass(frozen=True)
class TokenRules:
    algorithms: tuple[str, ...]
    secret: bytes | None = None
    public_key_pem: bytes | None = None
    jwks: JwksCache | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_s: int = 0
    subject_claim: str = "sub"
    scope_claim: str = "sse"


class Verifier:
    """Checks a token with PyJWT. The header is read once here (PyJWT reads it again, with its
    own checks, inside `decode`), and the HS secret is prepared once: PyJWT's per-token
    preparation (is it a PEM, DER or JWK in disguise?) is done when the verifier is built.
    A token that passed is answered from `verified` until it expires or the JWKS changes."""

    def __init__(self, rules: TokenRules):
        _check(rules)
        self._rules = rules
        self._jwt = _decoder(rules)
        # `sub` and `jti` of any type: the subject claim is checked by _subject
        self._options: Options = {"require": ["exp"], "verify_aud": rules.audience is not None,
                                  "verify_sub": False, "verify_jti": False,
                                  "enforce_minimum_key_length": True}
        self.verified = VerifiedTokens(leeway_s=rules.leeway_s)
        self._pem_keys: dict[str, Any] = {}
        if rules.public_key_pem is not None:
            for alg in ASYMMETRIC.intersection(rules.algorithms):
                try:
                    self._pem_keys[alg] = _algorithm(alg).prepare_key(rules.public_key_pem)
                except (jwt.PyJWTError, ValueError, TypeError) as exc:
                    raise ValueError(f"the public key does not fit {alg}: {exc}; configure "
                                     "only the algorithms of that key") from None
                short = _algorithm(alg).check_key_length(self._pem_keys[alg])
                if short:       # PyJWT would refuse every token checked with it
                    raise ValueError(f"the public key is too short for {alg}: {short}")

    def verify(self, token: str) -> Identity:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed token")
        if self._rules.jwks is not None:
            self._rules.jwks.freshen()      # a key withdrawn since: its tokens checked again
        key = self.verified.key(token)
        try:
            known = self.verified.known(key, self._generation())
        except Expired:
            raise InvalidToken("token expired") from None
        if known is not None:
            return known
        header = _header(token)
        alg = header.get("alg")
        if alg not in self._rules.algorithms:
            raise InvalidToken("algorithm not accepted")
        payload = self._decode_with(token, alg, self._keys(alg, header.get("kid")))
        identity = Identity(self._subject(payload), *self._scope(payload), _expiry(payload))
        self.verified.remember(key, identity, self._generation())   # the keys it was checked with
        return identity

    def _generation(self) -> int:
        return self._rules.jwks.generation if self._rules.jwks is not None else 0

    def _keys(self, alg: str, kid: Any) -> list[Any]:
        """The keys a token may be signed with: the secret, the PEM key, or each JWKS key
        published under its kid that fits `alg` (an issuer may publish the old and the new one
        under one kid while it rotates)."""
        if alg in SYMMETRIC:
            return [self._rules.secret]
        if self._rules.jwks is None:
            return [self._pem_keys[alg]]
        if not isinstance(kid, str):
            raise InvalidToken("token has no key id")
        keys = []
        for jwk in self._rules.jwks.keys(kid):
            if jwk.alg not in (None, alg):
                continue
            try:
                keys.append(_algorithm(alg).prepare_key(jwk.key))
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
        if not keys:
            raise InvalidToken("key does not fit the algorithm")
        return keys

    def _decode_with(self, token: str, alg: str, keys: list[Any]) -> dict[str, Any]:
        """The payload checked with the first of `keys` whose signature matches."""
        for key in keys[:-1]:
            try:
                return self._decode(token, alg, key)
            except InvalidToken as exc:
                if exc.reason != "bad signature":
                    raise
        return self._decode(token, alg, keys[-1])

    def _decode(self, token: str, alg: str, key: Any) -> dict[str, Any]:
        rules = self._rules
        try:
            return self._jwt.decode_complete(
                token, key, algorithms=[alg], audience=rules.audience, issuer=rules.issuer,
                leeway=rules.leeway_s, options=self._options)["payload"]
        except jwt.PyJWTError as exc:
            raise InvalidToken(_reason(exc)) from None

    def _subject(self, payload: dict[str, Any]) -> str:
        subject = payload.get(self._rules.subject_claim)
        if (not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS
                or not subject.isprintable() and _has_surrogate(subject)):
            raise InvalidToken(f"claim {self._rules.subject_claim!r} must name the subject")
        return subject

    def _scope(self, payload: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        name = self._rules.scope_claim
        scope = payload.get(name)
        if not isinstance(scope, dict):
            raise InvalidToken(f"claim {name!r} must hold event_types and sources")
        types, sources = scope.get("event_types"), scope.get("sources")
        try:
            if type(types) is list and type(sources) is list:
                try:        # the tokens of one issuer mostly carry the same few scopes
                    return _listed_scope(tuple(types), tuple(sources))
                except TypeError:       # an entry that cannot be hashed: refused below
                    pass
            return _parsed_scope(_patterns(types, "event_types"), _patterns(sources, "sources"))
        except FilterError as exc:
            raise InvalidToken(f"claim {name!r}: {exc}") from None


def _has_surrogate(text: str) -> bool:
    """A lone surrogate: JSON may name one, but it is not text (UTF-8 cannot carry it, so a
    subject holding one could never be named to DisconnectSubject)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _expiry(payload: dict[str, Any]) -> float:
    """`exp` in unix seconds. PyJWT accepts any integer, as text too: one past what a float
    holds is refused rather than taken as never (or raising OverflowError)."""
    try:
        expires_at = float(payload["exp"])
    except (OverflowError, ValueError, TypeError):
        expires_at = math.inf
    if not math.isfinite(expires_at):
        raise InvalidToken("claim 'exp' is out of range")
    return expires_at


@lru_cache(maxsize=256)
def _listed_scope(types: tuple, sources: tuple) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The scope of two lists of patterns, checked once for all the tokens that carry them (a
    tuple equal to one of text holds only text)."""
    return _parsed_scope(_patterns(list(types), "event_types"), _patterns(list(sources), "sources"))


@lru_cache(maxsize=256)         # the tokens of one issuer mostly carry the same few scopes
def _parsed_scope(types: str, sources: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    parsed = Filter.parse(types, sources)
    return parsed.event_types, parsed.sources


def _header(token: str) -> Mapping[str, Any]:
    """The token's header, read once to choose the key (PyJWT's decode reads it again and
    refuses what it would refuse); InvalidToken("malformed token") when it is not a JSON
    object in a three-part token, or names a key id that is not text."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    header = _read_header(parts[0])
    if "crit" in header:        # rare: PyJWT's own reading checks the critical extensions
        try:
            return jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
    return header


@lru_cache(maxsize=64)          # the tokens of one issuer and key share one header segment
def _read_header(segment: str) -> Mapping[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise InvalidToken("malformed token")
    return MappingProxyType(header)     # shared by every token with this segment: read-only


class _PreparedHMAC(HMACAlgorithm):
    """HMAC whose configured secret is checked and prepared once, not for every token: any
    other key still goes through PyJWT's preparation."""

    def __init__(self, hash_alg, secret: bytes):
        super().__init__(hash_alg)
        self._secret = secret
        self._prepared = super().prepare_key(secret)
        self._length_note = super().check_key_length(self._prepared)
        self._mac = PreparedMAC(self._prepared, hash_alg)

    def prepare_key(self, key):
        return self._prepared if key is self._secret else super().prepare_key(key)

    def check_key_length(self, key):
        return self._length_note if key is self._prepared else super().check_key_length(key)

    def sign(self, msg: bytes, key: bytes) -> bytes:
        """hmac.new(key, msg, hash_alg).digest(), the configured secret's prepared once."""
        if key is self._prepared:
            return self._mac.digest(msg)
        return hmac.digest(key, msg, self.hash_alg)


class _PyJWT(jwt.PyJWT):
    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        """PyJWT's, which its docs offer to subclasses: a JSON object in UTF-8 (what issuers
        send) read by the C scanner without json.loads's Python steps; anything else, and any
        doubt, by PyJWT itself, with its answers."""
        raw = decoded["payload"]
        if raw[:1] == b"{":
            try:
                payload = json_value(raw.decode())
            except (ValueError, RecursionError):
                pass
            else:
                if type(payload) is dict:
                    return payload
        return super()._decode_payload(decoded)


_scan = json.JSONDecoder().scan_once     # type: ignore[attr-defined]  # set in __init__


def json_value(text: str) -> Any:
    """`text` as one JSON value (ValueError when it is not exactly that)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("more than one JSON value")
    return value


def _decoder(rules: TokenRules) -> jwt.PyJWT:
    """A PyJWT of our own: its payload read as `_PyJWT` does, its segments checked by
    actors.auth.segments, and its HS* algorithms hold the prepared secret."""
    decoder = _PyJWT()
    jws = getattr(decoder, "_jws", None)
    if jws is None:
        return decoder
    segments.install(jws)
    if rules.secret is None:
        return decoder
    for alg in SYMMETRIC.intersection(rules.algorithms):
        try:
            prepared = _PreparedHMAC(_algorithm(alg).hash_alg, rules.secret)
        except jwt.PyJWTError as exc:
            raise ValueError(f"the secret does not fit {alg}: {exc}") from None
        jws.unregister_algorithm(alg)
        jws.register_algorithm(alg, prepared)
    return decoder


def _patterns(items: Any, key: str) -> str:
    if (not isinstance(items, list) or not items
            or not all(isinstance(i, str) and i.strip() and "," not in i for i in items)):
        raise FilterError(f"{key}: a non-empty list of patterns is required (\"*\" for all)")
    return ",".join(items)


def _algorithm(alg: str) -> Any:
    return get_default_algorithms()[alg]


def _check(rules: TokenRules) -> None:
    algorithms = set(rules.algorithms)
    unknown = algorithms - SYMMETRIC - ASYMMETRIC
    if not algorithms or unknown:
        raise ValueError(f"accepted algorithms must be chosen from "
                         f"{', '.join(sorted(SYMMETRIC | ASYMMETRIC))}; got "
                         f"{', '.join(sorted(unknown)) or 'none at all'}")
    if algorithms & SYMMETRIC and (rules.secret is None or len(rules.secret) < MIN_SECRET_BYTES):
        raise ValueError(f"HS* algorithms need a secret of at least {MIN_SECRET_BYTES} bytes")
    for alg in sorted(algorithms & SYMMETRIC):
        needed = HASH_BYTES[alg]
        if rules.secret is not None and len(rules.secret) < needed:
            raise ValueError(f"{alg} needs a secret of at least {needed} bytes, as long as its "
                             f"hash (RFC 7518 3.2); this one has {len(rules.secret)}")
    if not algorithms & SYMMETRIC and rules.secret is not None:
        raise ValueError("a secret is set but no HS* algorithm is accepted; drop one or the other")
    asymmetric = algorithms & ASYMMETRIC
    sources = (rules.public_key_pem is not None) + (rules.jwks is not None)
    if asymmetric and sources != 1:
        raise ValueError(f"{', '.join(sorted(asymmetric))} need exactly one of a public key "
                         "or a JWKS")
    if not asymmetric and sources:
        raise ValueError("a public key or JWKS is set but no RS/PS/ES/EdDSA algorithm is accepted")
    if rules.leeway_s < 0:
        raise ValueError("the leeway must be zero or more seconds")


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidKeyError, "key does not fit the algorithm"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.InvalidKeyError) and "below the minimum" in str(exc):
        return "key too short for its algorithm"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim!r}"[:60]
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "invalid token"
