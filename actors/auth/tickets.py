"""Stream tickets: a short-lived, single-use stand-in for a token in `?ticket=`.

A ticket is `body.base64url(mac)` with body `base64url(payload)`; the payload holds the
version, the subject, the scope, the token's expiry, the ticket's own (earlier) expiry and a
random nonce. Version 2's MAC is a 24-byte keyed BLAKE2b of the body (personalized
"sse-ticket"), 32 characters: half the instructions of version 1's HMAC-SHA256 over
"sse-ticket." + body (43 characters), which is still taken from older releases in a rolling
deploy. A MAC is compared as the text it was issued as: no other spelling of it is taken.

A payload that would make a ticket longer than PLAIN_TICKET_CHARS (a scope of dozens of event
types) is deflated when that is shorter: `z` + base64url(deflate(payload)), which no plain one
starts with (a JSON list's `[` encodes as `W`); one still longer than MAX_URL_TICKET_CHARS,
which no request line could carry, is not issued. Any instance holding the secret accepts a
fresh ticket; each instance accepts it once (its workers share the used nonces through
SharedNonces, a file in the instance directory).
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import heapq
import hmac
import json
import math
import os
import secrets
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

from actors.auth.identity import Identity, InvalidTicket
from actors.auth.mac import PreparedMAC
from actors.auth.shared_nonces import Full, SharedNonces
from actors.auth.tokens import json_value

VERSION = 2                  # issued; version 1 is still taken
MIN_SECRET_BYTES = 32
MAX_TICKET_CHARS = 8192
PLAIN_TICKET_CHARS = 1024    # longer: deflated, when that is shorter
# What gunicorn's default request line (4,094) leaves after `GET /events?ticket=` and the
# protocol: about half the line taken (web/serve.py LIMIT_REQUEST_LINE, 8,190), the rest for
# the filter and the resume id.
MAX_URL_TICKET_CHARS = 4094 - len("GET /events?ticket= HTTP/1.1")
MAC_BYTES = 24               # version 2's keyed BLAKE2b
MAC_CHARS = 32               # and its base64url: no padding (24 bytes, a multiple of 3)
VERSION_OF_MAC = {MAC_CHARS: VERSION, 43: 1}    # 43: version 1's HMAC-SHA256, base64url
MAX_REMEMBERED = 100_000     # used nonces kept until their tickets expire
_PERSON = b"sse-ticket"      # a ticket's MAC is no other MAC (version 1: this + "." before it)
MALFORMED = "malformed ticket"
BAD_MAC = "bad ticket signature"
USED = "ticket already used"
TOO_MANY = "too many tickets in flight; try again in a few seconds"
EXPIRED = "ticket expired"


def issue(identity: Identity, secret: bytes, ttl_s: float, now: float,
          leeway_s: float = 0.0) -> str:
    """A ticket valid `ttl_s`, or until the token expires (plus the leeway it was accepted
    with), whichever is sooner."""
    _check_secret(secret)
    if ttl_s <= 0:
        raise ValueError("a ticket's lifetime must be more than zero seconds")
    # to the millisecond, rounded down: a number of 13 digits is read at once, one of 17
    # (time.time()'s) takes the slow path of every float parser, on each stream open
    expires = math.floor(min(now + ttl_s, identity.expires_at + leeway_s) * 1000) / 1000
    payload = [VERSION, identity.subject, list(identity.scope_types),
               list(identity.scope_sources), identity.expires_at, expires,
               secrets.token_urlsafe(16)]
    text = json.dumps(payload, separators=(",", ":")).encode()
    body = _b64(text)
    if len(body) > PLAIN_TICKET_CHARS:
        body = min(body, "z" + _b64(zlib.compress(text, 9)), key=len)
    if len(body) + 1 + MAC_CHARS > MAX_URL_TICKET_CHARS:
        raise TicketTooLarge(
            f"this token's scope ({len(identity.scope_types)} event type(s), "
            f"{len(identity.scope_sources)} source(s)) makes a ticket of "
            f"{len(body) + 1 + MAC_CHARS} "
            f"characters, more than the {MAX_URL_TICKET_CHARS} a URL leaves it: send the "
            f"token as Authorization: Bearer (or the cookie) instead, or give it a shorter "
            f"scope (wildcards such as orders.*)")
    mac = _keys(secret).mac(VERSION, body.encode("ascii"))
    return f"{body}.{mac.decode('ascii')}"


class TicketTooLarge(ValueError):
    """No ticket fits in a URL for this identity; the message says what to do instead."""


class UsedNonces:
    """The nonces of redeemed tickets in this process, each until its ticket expires; at most
    `max_remembered` at once."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED):
        self._max = max_remembered
        self._used: set[str] = set()
        self._expiries: list[tuple[float, str]] = []      # a heap: the soonest first

    def used(self, nonce: str, expires: float, now: float) -> bool:
        """Claimed already (nothing is claimed)."""
        self._forget(now)
        return nonce in self._used

    def claim(self, nonce: str, expires: float, now: float) -> bool:
        """True the first time a nonce is claimed (until its expiry), False after."""
        self._forget(now)
        if nonce in self._used:
            return False
        if len(self._used) >= self._max:
            raise Full()
        self._used.add(nonce)
        heapq.heappush(self._expiries, (expires, nonce))
        return True

    def _forget(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            self._used.discard(heapq.heappop(self._expiries)[1])

    def __len__(self) -> int:
        return len(self._used)


def instance_secret(path: str) -> bytes:
    """A random ticket secret shared by the workers of one instance: the first to ask writes
    it (atomically, mode 0600), the others read it."""
    try:
        with open(path, "rb") as existing:
            return existing.read()
    except FileNotFoundError:
        pass
    draft = f"{path}.{os.getpid()}"
    with open(os.open(draft, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as out:
        out.write(secrets.token_bytes(32))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass                                    # another worker was first: use its secret
    finally:
        os.unlink(draft)
    with open(path, "rb") as final:
        return final.read()


class Checked(NamedTuple):
    """An opened ticket whose signature is good: its identity, expiry and nonce. One that
    `Redeemer.check` returned is what `redeem` spends without opening the ticket again."""
    identity: Identity
    expires: float
    nonce: str


class Redeemer:
    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time, *,
                 max_remembered: int = MAX_REMEMBERED,
                 used: UsedNonces | SharedNonces | None = None, other: bytes | None = None):
        """`other`: a second secret whose tickets are taken too (AUTH_TICKET_OTHER_SECRET), so
        that instances signing with the old and the new one can run side by side."""
        _check_secret(secret)
        if other is not None:
            _check_secret(other)
        keys = (secret,) if other is None or other == secret else (secret, other)
        self._keys = tuple(_keys(key) for key in keys)
        self._clock = clock
        self._used = used if used is not None else UsedNonces(max_remembered)

    def check(self, ticket: str) -> Checked:
        """The ticket if `redeem` would take it now, not spent."""
        checked = self._open(ticket)
        now = self._fresh(checked)
        if self._used.used(checked.nonce, checked.expires, now):
            raise InvalidTicket(USED)
        return checked

    def redeem(self, ticket: str | Checked) -> Identity:
        """The ticket's identity, once: the ticket is spent (one `check` gave is not opened
        again)."""
        checked = ticket if isinstance(ticket, Checked) else self._open(ticket)
        now = self._fresh(checked)
        try:
            claimed = self._used.claim(checked.nonce, checked.expires, now)
        except Full:
            raise InvalidTicket(TOO_MANY) from None
        if not claimed:
            raise InvalidTicket(USED)
        return checked.identity

    def _fresh(self, checked: Checked) -> float:
        """Now, while the ticket has not expired."""
        now = self._clock()
        if checked.expires <= now:
            raise InvalidTicket(EXPIRED)
        return now

    def remembered(self) -> int:
        return len(self._used)

    def _open(self, ticket: str) -> Checked:
        if not isinstance(ticket, str) or len(ticket) > MAX_TICKET_CHARS or not ticket.isascii():
            raise InvalidTicket(MALFORMED)
        try:
            body, mac = ticket.encode("ascii").split(b".")
        except ValueError:
            raise InvalidTicket(MALFORMED) from None
        version = VERSION_OF_MAC.get(len(mac))
        if version is None or not body:
            raise InvalidTicket(MALFORMED)
        for keys in self._keys:
            if hmac.compare_digest(mac, keys.mac(version, body)):
                break
        else:
            raise InvalidTicket(BAD_MAC)
        try:        # signed: made by `issue` here or on an instance sharing the secret
            raw = _unb64(body) if body[:1] != b"z" else zlib.decompress(_unb64(body[1:]))
            fields = json_value(raw.decode())
            given, subject, types, sources, token_expiry, expires, nonce = fields
            if given != version or not math.isfinite(float(expires)):
                raise ValueError(given)
            identity = Identity(subject, tuple(types), tuple(sources), float(token_expiry))
            return Checked(identity, float(expires), nonce)
        except (binascii.Error, ValueError, TypeError, zlib.error):
            raise InvalidTicket(MALFORMED) from None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the ticket secret must be at least {MIN_SECRET_BYTES} bytes")


class _Keys:
    """The MACs of tickets under one secret, keyed once: version 2's (and version 1's)."""

    def __init__(self, secret: bytes):
        key = secret if len(secret) <= hashlib.blake2b.MAX_KEY_SIZE else hashlib.blake2b(
            secret, person=_PERSON).digest()
        self._blake = hashlib.blake2b(key=key, digest_size=MAC_BYTES, person=_PERSON)
        self._hmac = PreparedMAC(secret, prefix=_PERSON + b".")

    def mac(self, version: int, body: bytes) -> bytes:
        """The MAC of `body` as a ticket of `version` carries it: base64url, unpadded."""
        if version == 1:
            return _b64(self._hmac.digest(body)).encode("ascii")
        keyed = self._blake.copy()
        keyed.update(body)
        return binascii.b2a_base64(keyed.digest(), newline=False).translate(_URLSAFE)


@functools.lru_cache(maxsize=8)
def _keys(secret: bytes) -> _Keys:
    """Keyed once per secret (an instance has one or two), not on every ticket issued."""
    return _Keys(secret)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: bytes) -> bytes:
    """`text` (a body its MAC vouched for: base64url, unpadded), decoded."""
    return binascii.a2b_base64((text + b"=" * (-len(text) % 4)).translate(_STANDARD))


_STANDARD = bytes.maketrans(b"-_", b"+/")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
