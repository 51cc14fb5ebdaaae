"""Who is asking, for the views: the request's credential handed to the gateway's
Authenticator, and the scope it may read.

Credentials, first found wins: `Authorization: Bearer <jwt>`, the AUTH_COOKIE_NAME cookie, then
`?ticket=` (only where `tickets=True`: /events). A long-lived token in the URL
(`?access_token=`, `?token=`, `?jwt=`) is refused with 400: URLs end up in logs and histories.
Refusals are exceptions answered by web/errors.py: InvalidToken and MissingCredential 401,
OutsideScope 403, TokenInUrl 400.
"""
from __future__ import annotations

from flask import request

from actors.auth.authenticator import Authenticator, MissingCredential
from actors.auth.tokens import Identity, InvalidToken
from web.params import present

TOKEN_PARAMETERS = ("access_token", "token", "jwt")
TOKEN_IN_URL = ("a token in the URL is not accepted (URLs are logged and kept in histories): "
                "use a ticket: POST /tickets with Authorization: Bearer <token>, then connect "
                "to /events?ticket=<ticket>")


class TokenInUrl(Exception):
    """?access_token=, ?token= or ?jwt= on the request: 400."""

    def __init__(self):
        super().__init__(TOKEN_IN_URL)


def refuse_tokens_in_url(args) -> None:
    if any(name.strip().lower() in TOKEN_PARAMETERS for name in args):
        raise TokenInUrl()


def bearer(headers) -> str | None:
    """The token of `Authorization: Bearer <token>`; InvalidToken for another scheme."""
    value = present(headers, "Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def credentials(auth: Authenticator, headers, cookies, args, *,
                tickets: bool) -> Identity | None:
    """The identity of a request given by its parts: `headers` and `args` as web/params.py
    reads them, `cookies(name)` a cookie's value or None. None: anonymous (optional mode
    only); or InvalidToken / MissingCredential."""
    token, cookie = bearer(headers), _cookie(auth, cookies)
    ticket = present(args, "ticket") if tickets else None
    return auth.identify(bearer=token, cookie=cookie, ticket=ticket)


def stream_credentials(auth: Authenticator, headers, cookies,
                       args) -> tuple[Identity | None, str | None]:
    """/events: the identity (as `credentials`), and the ticket it came from, or None. The
    ticket is checked, not spent: only a stream that opens spends it (`auth.redeem`), so a
    HEAD or a refused request (429, 503) leaves it to the retry."""
    token, cookie = bearer(headers), _cookie(auth, cookies)
    ticket = None if token or cookie else present(args, "ticket")
    return auth.identify(bearer=token, cookie=cookie, ticket=ticket, redeem=False), ticket


def _cookie(auth: Authenticator, cookies) -> str | None:
    return cookies(auth.cookie_name) if auth.cookie_name else None


def identify(auth: Authenticator, *, tickets: bool) -> Identity | None:
    """The Flask request's identity (see `credentials`)."""
    return credentials(auth, request.headers, request.cookies.get, request.args,
                       tickets=tickets)


def identify_for_ticket(auth: Authenticator) -> Identity:
    """POST /tickets: a token (bearer or cookie) is needed, whatever the mode."""
    identity = identify(auth, tickets=False)
    if identity is None:
        raise MissingCredential()
    return identity


__all__ = ["InvalidToken", "MissingCredential", "TokenInUrl", "bearer", "credentials",
           "identify", "identify_for_ticket", "refuse_tokens_in_url", "stream_credentials"]
