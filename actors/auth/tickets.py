"""Stream tickets: a short-lived, single-use stand-in for a token in `?ticket=` (pure).

A ticket is `base64url(payload).base64url(hmac_sha256(secret, payload))`; the payload holds
the subject, the scope, the token's expiry, the ticket's own (earlier) expiry and a random
nonce. Any instance holding the secret accepts a fresh ticket; each instance accepts it once.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable

from actors.auth.tokens import Identity, InvalidToken

VERSION = 1
MIN_SECRET_BYTES = 32
MAX_TICKET_CHARS = 8192
MAX_REMEMBERED = 100_000     # used nonces kept until their tickets expire
_CONTEXT = b"sse-ticket."    # the MAC covers this prefix too: a ticket MAC is no other MAC
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class InvalidTicket(InvalidToken):
    """The ticket is refused; `reason` is short and never holds the ticket."""


def issue(identity: Identity, secret: bytes, ttl_s: float, now: float) -> str:
    _check_secret(secret)
    if ttl_s <= 0:
        raise ValueError("a ticket's lifetime must be more than zero seconds")
    expires = min(now + ttl_s, identity.expires_at)
    payload = [VERSION, identity.subject, list(identity.scope_types),
               list(identity.scope_sources), identity.expires_at, expires,
               secrets.token_urlsafe(16)]
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(_mac(secret, body))}"


class Redeemer:
    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time, *,
                 max_remembered: int = MAX_REMEMBERED):
        _check_secret(secret)
        self._secret = secret
        self._clock = clock
        self._max = max_remembered
        self._used: set[str] = set()
        self._expiries: list[tuple[float, str]] = []      # a heap: the soonest first

    def redeem(self, ticket: str) -> Identity:
        identity, expires, nonce = self._open(ticket)
        now = self._clock()
        if expires <= now:
            raise InvalidTicket("ticket expired")
        self._forget_expired(now)
        if nonce in self._used:
            raise InvalidTicket("ticket already used")
        if len(self._used) >= self._max:
            raise InvalidTicket("too many tickets in flight; try again in a few seconds")
        self._used.add(nonce)
        heapq.heappush(self._expiries, (expires, nonce))
        return identity

    def remembered(self) -> int:
        return len(self._used)

    def _forget_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            self._used.discard(heapq.heappop(self._expiries)[1])

    def _open(self, ticket: str) -> tuple[Identity, float, str]:
        if (not isinstance(ticket, str) or len(ticket) > MAX_TICKET_CHARS
                or not _SHAPE.fullmatch(ticket)):
            raise InvalidTicket("malformed ticket")
        body, mac = ticket.split(".")
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidTicket("malformed ticket") from None
        if not hmac.compare_digest(given, _mac(self._secret, body)):
            raise InvalidTicket("bad ticket signature")
        try:
            version, subject, types, sources, token_expiry, expires, nonce = json.loads(
                _unb64(body))
            if version != VERSION or not math.isfinite(float(expires)):
                raise ValueError(version)
            identity = Identity(str(subject), tuple(map(str, types)), tuple(map(str, sources)),
                                float(token_expiry))
            return identity, float(expires), str(nonce)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidTicket("malformed ticket") from None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the ticket secret must be at least {MIN_SECRET_BYTES} bytes")


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, _CONTEXT + body.encode("ascii"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
