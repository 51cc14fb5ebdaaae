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
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from actors.auth import segments
from actors.auth.identity import Identity, InvalidToken
from actors.auth.jwks import JwksCache
from actors.auth.mac import PreparedMAC
from actors.auth.subjects import MAX_SUBJECT_LENGTH
from actors.auth.verified import Expired, VerifiedTokens
from actors.filters import Filter, FilterError
from actors.settings.variables import (
    ASYMMETRIC_ALGORITHMS, HASH_BYTES, MIN_AUTH_SECRET_BYTES, SYMMETRIC_ALGORITHMS,
)

if TYPE_CHECKING:
    from jwt.types import Options


ASYMMETRIC = frozenset(ASYMMETRIC_ALGORITHMS)
SYMMETRIC = frozenset(SYMMETRIC_ALGORITHMS)
MIN_SECRET_BYTES = MIN_AUTH_SECRET_BYTES     # RFC 7518 3.2: an HS256 key of at least 256 bits
MAX_TOKEN_CHARS = 16384
MAX_SUBJECT_CHARS = MAX_SUBJECT_LENGTH     # a subject owns the events its owner field names


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
