"""Who is asking: a request's credential (bearer token, cookie or stream ticket) checked against
the configured rules, the scope it may read, and tickets issued for it.

    auth = Authenticator.from_settings(settings)     # None of this when AUTH_MODE=off
    identity = auth.identify(bearer=..., cookie=..., ticket=...)   # Identity, None or raises
    scope = auth.scope_of(identity)                  # the anonymous scope for None
    ticket, expires_at = auth.issue_ticket(identity)

No actor and no framework: the JWKS is fetched with urllib (a socket that yields under gevent)
with a time limit, so a slow key server holds only the request that needed a new key.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit
from typing import Any

from actors.auth.identity import Identity, InvalidTicket, InvalidToken
from actors.auth.jwks import JwksCache
from actors.auth.redact import redact_text
from actors.auth.scope import Scope, ScopeError
from actors.auth.shared_nonces import NONCES_FILE, SharedNonces
from actors.auth.subjects import SubjectField
from actors.auth.tickets import Checked, Redeemer, UsedNonces, instance_secret, issue
from actors.auth.tokens import TokenRules, Verifier

logger = logging.getLogger(__name__)

JWKS_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 1 << 20
CREDENTIAL_REQUIRED = "credential required"


class MissingCredential(InvalidToken):
    """The request has no credential and the mode (or an empty anonymous scope) needs one."""

    def __init__(self, reason: str = CREDENTIAL_REQUIRED):
        super().__init__(reason)


def jwks_fetcher(url: str, timeout_s: float = JWKS_TIMEOUT_S, *,
                 keys_known: Callable[[], bool] = lambda: True
                 ) -> Callable[[], Mapping[str, Any]]:
    """A fetch of the JWKS document at `url` (JwksCache calls it; a failure keeps the keys).
    A failure is logged with what it means for tokens (`keys_known`: has any fetch succeeded),
    and the first success after failures is logged too."""
    failed = 0

    def fetch() -> Mapping[str, Any]:
        nonlocal failed
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        deadline = _Deadline(timeout_s)
        try:
            with deadline, deadline.opener().open(request, timeout=timeout_s) as response:
                body = response.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            if not isinstance(document.get("keys"), list):
                raise ValueError('not a JWKS (no "keys" list)')
        except Exception as exc:
            failed += 1
            failure = (TimeoutError(f"no whole answer within {timeout_s:g} s")
                       if deadline.passed else exc)
            logger.warning("JWKS fetch from %s failed (%s: %s); %s", shown_url(url),
                           type(failure).__name__, _unquoted(str(failure)[:200], url),
                           "the keys known so far stay in use" if keys_known() else
                           "no keys yet: tokens are answered 503 with Retry-After until a fetch "
                           "succeeds (check that the issuer serves it)")
            if failure is exc:
                raise
            raise failure from None
        if failed:
            logger.warning("JWKS fetch from %s succeeded after %d failed: %d key(s)",
                           shown_url(url), failed, len(document["keys"]))
            failed = 0
        return document
    return fetch


class _Deadline:
    """The time limit of one fetch as a whole: a server sending a byte now and then, each
    within the sockets' time-out, would hold it for ever. When it passes, the fetch's sockets
    are shut down and the read under way fails at once (under gevent too)."""

    def __init__(self, seconds: float):
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True          # never what keeps a stopping process alive

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *_exc_info) -> None:
        self._timer.cancel()

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies, redirects …) whose connections this deadline watches."""
        return urllib.request.build_opener(_HttpHandler(self), _HttpsHandler(self),
                                           _NoDowngrade())

    def watched(self, kind: type[http.client.HTTPConnection]) -> type:
        """`kind` of connection, its socket watched from when it is connected."""
        deadline = self

        class Watched(kind):            # type: ignore[valid-type, misc]
            def connect(self):
                super().connect()
                deadline._watch(self.sock)
        return Watched

    def _watch(self, sock: socket.socket) -> None:
        self._sockets.append(sock)
        if self.passed:
            _shut(sock)

    def _expire(self) -> None:
        self.passed = True
        for sock in self._sockets:
            _shut(sock)


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(self.deadline.watched(http.client.HTTPConnection), req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(self.deadline.watched(http.client.HTTPSConnection), req)


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Redirects are followed, but keys asked for over https never come over plain http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.type == "https" and urlsplit(newurl).scheme.lower() != "https":
            raise urllib.error.HTTPError(
                req.full_url, code, "refused a redirect from https to plain http",
                headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _unquoted(text: str, url: str) -> str:
    """`text` without the user and password of `url` (an error's text may quote them)."""
    parts = urlsplit(url)
    return redact_text(text, (parts.username or "", parts.password or ""))


def shown_url(url: str) -> str:
    """The URL for a log line: no user, password or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class Authenticator:
    def __init__(self, mode: str, rules: TokenRules, ticket_secret: bytes, ticket_ttl_s: float,
                 anonymous: Scope, *, cookie_name: str = "",
                 clock: Callable[[], float] = time.time, shared_ticket_secret: bool = True,
                 keys_from: str = "", subject_field: SubjectField | None = None,
                 used: UsedNonces | SharedNonces | None = None,
                 other_ticket_secret: bytes | None = None):
        if mode not in ("required", "optional"):
            raise ValueError(f"an Authenticator is for AUTH_MODE required or optional, not {mode}")
        self.mode = mode
        self.rules = rules
        self.verifier = Verifier(rules)
        self.redeemer = Redeemer(ticket_secret, clock, used=used, other=other_ticket_secret)
        self.cookie_name = cookie_name
        self.ticket_ttl_s = ticket_ttl_s
        self.anonymous = anonymous
        self.jwks = rules.jwks
        self.shared_ticket_secret = shared_ticket_secret
        self.keys_from = keys_from
        self.subject_field = subject_field
        self._ticket_secret = ticket_secret
        self.clock = clock

    @classmethod
    def from_settings(cls, settings, fetch: Callable[[], Mapping[str, Any]] | None = None,
                      clock: Callable[[], float] = time.time) -> "Authenticator":
        """`fetch` stands in for the JWKS download (tests); None: urllib from AUTH_JWKS_URL."""
        jwks: JwksCache | None = None
        if settings.auth_jwks_url:
            jwks = JwksCache(fetch or jwks_fetcher(
                settings.auth_jwks_url,
                keys_known=lambda: jwks is not None and jwks.generation > 0),
                min_refresh_s=settings.auth_jwks_refresh_seconds)
        rules = TokenRules(
            algorithms=tuple(settings.auth_jwt_algorithms), secret=settings.auth_jwt_secret,
            public_key_pem=settings.auth_jwt_public_key_pem, jwks=jwks,
            audience=settings.auth_jwt_audience or None,
            issuer=settings.auth_jwt_issuer or None, leeway_s=settings.auth_jwt_leeway_seconds,
            subject_claim=settings.auth_subject_claim, scope_claim=settings.auth_scope_claim)
        shared = settings.auth_ticket_secret is not None
        secret, used = settings.auth_ticket_secret, None
        instance_dir = getattr(settings, "sse_instance_dir", "")
        if instance_dir:           # the workers of one instance: one secret, tickets used once
            used = SharedNonces(os.path.join(instance_dir, NONCES_FILE))
            secret = secret or instance_secret(os.path.join(instance_dir, "ticket-secret"))
        return cls(settings.auth_mode, rules, secret or secrets.token_bytes(32),
                   settings.auth_ticket_ttl_seconds, settings.auth_anonymous_scope,
                   cookie_name=settings.auth_cookie_name, clock=clock,
                   shared_ticket_secret=shared, keys_from=_keys_from(settings),
                   subject_field=settings.auth_subject_field, used=used,
                   other_ticket_secret=settings.auth_ticket_other_secret)

    # -- requests -----------------------------------------------------------------------------
    def identify(self, bearer: str | None = None, cookie: str | None = None,
                 ticket: str | None = None) -> Identity | None:
        """The first credential given, in this order: bearer, cookie, ticket (the others are
        not looked at; a ticket is spent). None: anonymous (optional mode only). Raises
        InvalidToken."""
        if bearer:
            return self.verifier.verify(bearer)
        if cookie:
            return self.verifier.verify(cookie)
        if ticket:
            return self.redeemer.redeem(ticket)
        if self.mode == "required" or self.allows_nothing(self.anonymous):
            raise MissingCredential()
        return None

    def check_ticket(self, ticket: str) -> Checked:
        """The ticket, checked as `redeem` would take it now, not spent; InvalidToken."""
        return self.redeemer.check(ticket)

    def redeem(self, ticket: str | Checked) -> Identity:
        """Spend `ticket` (once per instance), or the one `check_ticket` gave, without opening
        it again; InvalidToken when it was spent already."""
        return self.redeemer.redeem(ticket)

    def scope_of(self, identity: Identity | None) -> Scope:
        """The scope an identity may read. A token's was read by the rules of this instance; a
        ticket's, by those of the instance that issued it (another version, in a rolling
        deploy, may have allowed what these refuse): InvalidTicket then."""
        if identity is None:
            return self.anonymous
        try:
            return _scope(identity.scope_types, identity.scope_sources)
        except ScopeError as exc:
            raise InvalidTicket(f"ticket scope refused: {str(exc)[:200]}") from None

    def issue_ticket(self, identity: Identity) -> tuple[str, float]:
        """A ticket for `identity` and when it expires (unix seconds): after the ticket TTL or
        with the token (`ends_at`), whichever is sooner."""
        now = self.clock()
        ticket = issue(identity, self._ticket_secret, self.ticket_ttl_s, now, self.rules.leeway_s)
        return ticket, min(now + self.ticket_ttl_s, self.ends_at(identity))

    def ends_at(self, identity: Identity) -> float:
        """When what `identity` opened ends: its token's exp plus the leeway it was accepted
        with (a stream, a ticket), so a token still accepted never opens an ended stream."""
        return identity.expires_at + self.rules.leeway_s

    @staticmethod
    def allows_nothing(scope: Scope) -> bool:
        return scope.event_types == () or scope.sources == ()

    # -- start-up -----------------------------------------------------------------------------
    def keys_pending(self) -> str:
        """Why no token can be verified yet ("" when one can): AUTH_MODE=required whose keys
        all come from a JWKS that no fetch has brought yet. The instance is then not ready."""
        rules = self.rules
        if (self.mode != "required" or self.jwks is None or self.jwks.generation > 0
                or rules.secret is not None):
            return ""
        return (f"subscriber auth: the issuer's signing keys (AUTH_JWKS_URL) have not been "
                f"fetched yet ({self.jwks.fetches} attempt(s)): every stream is answered 503")

    def prefetch(self) -> threading.Thread | None:
        """Fetch the JWKS now, in the background (a greenlet under gevent), so the first
        request does not wait for it."""
        if self.jwks is None:
            return None
        thread = threading.Thread(target=self.jwks.refresh, name="jwks-prefetch", daemon=True)
        thread.start()
        return thread

    def describe(self) -> str:
        """One line for the start-up log: never a secret."""
        rules = self.rules
        anonymous = ("nothing (401 without a credential)" if self.allows_nothing(self.anonymous)
                     else self.anonymous.describe())
        parts = [f"subscriber auth {self.mode}",
                 f"algorithms {','.join(rules.algorithms)}",
                 f"keys from {self.keys_from}",
                 f"subject claim {rules.subject_claim!r}, scope claim {rules.scope_claim!r}",
                 (f"private events by {self.subject_field.describe()}" if self.subject_field
                  else "no private events (AUTH_SUBJECT_FIELD unset)"),
                 f"audience {rules.audience or '(not checked)'}",
                 f"issuer {rules.issuer or '(not checked)'}",
                 f"cookie {self.cookie_name or '(not read)'}",
                 f"tickets {self.ticket_ttl_s:g} s, "
                 f"{'shared secret' if self.shared_ticket_secret else 'this instance only'}"]
        if self.mode == "optional":
            parts.append(f"anonymous scope {anonymous}")
        return "; ".join(parts)


@lru_cache(maxsize=256)         # a Scope is immutable; the subjects of an issuer share a few
def _scope(types: tuple[str, ...], sources: tuple[str, ...]) -> Scope:
    return Scope.parse(types, sources)


def _keys_from(settings) -> str:
    sources = []
    if settings.auth_jwt_secret is not None:
        sources.append("AUTH_JWT_SECRET")
    if settings.auth_jwt_public_key_file:
        sources.append(f"public key file {settings.auth_jwt_public_key_file}")
    if settings.auth_jwks_url:
        sources.append(f"JWKS {shown_url(settings.auth_jwks_url)}")
    return " and ".join(sources) or "nowhere"


__all__ = ["Authenticator", "Identity", "InvalidToken", "MissingCredential",
           "jwks_fetcher"]
