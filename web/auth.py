"""Who is asking, for the views: the request's credential handed to the gateway's
Authenticator, and the scope it may read.

Credentials, first found wins: `Authorization: Bearer <jwt>`, the AUTH_COOKIE_NAME cookie, then
`?ticket=` (only where `tickets=True`: /events). A long-lived token in the URL
(`?access_token=`, `?token=`, `?jwt=`) is refused with 400: URLs end up in logs and histories.
The cookie is the browser's, not the page's: it is taken only from a request of the gateway's
own origin, of an origin CORS_ALLOWED_ORIGINS lists, or without an Origin (not a browser's
cross-origin request). Refusals are exceptions answered by web/errors.py: InvalidToken and
MissingCredential 401, OutsideScope and CrossOriginCookie 403, TokenInUrl 400.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request

from actors.auth.authenticator import Authenticator, MissingCredential
from actors.auth.tickets import Checked
from actors.auth.identity import Identity, InvalidToken
from web.params import present

TOKEN_PARAMETERS = ("access_token", "token", "jwt")
CROSS_ORIGIN_COOKIE = ("a page of this origin may not use the gateway's cookie (see "
                       "CORS_ALLOWED_ORIGINS): list the origin, or send Authorization: Bearer "
                       "<token> or a ticket instead")
TOKEN_IN_URL_AUTH_OFF = ("a token in the URL is not accepted (URLs are logged and kept in "
                         "histories); this gateway reads no credential (AUTH_MODE=off): "
                         "connect without it")
NOT_BEARER = "the Authorization header must be 'Bearer <token>'"
TOKEN_IN_URL = ("a token in the URL is not accepted (URLs are logged and kept in histories): "
                "use a ticket: POST /tickets with Authorization: Bearer <token>, then connect "
                "to /events?ticket=<ticket>")


class TokenInUrl(Exception):
    """?access_token=, ?token= or ?jwt= on the request: 400."""

    def __init__(self, auth_on: bool = True):
        super().__init__(TOKEN_IN_URL if auth_on else TOKEN_IN_URL_AUTH_OFF)


class CrossOriginCookie(Exception):
    """The cookie sent by a page of an origin CORS_ALLOWED_ORIGINS does not list: 403."""

    def __init__(self):
        super().__init__(CROSS_ORIGIN_COOKIE)


def origin_listed(origin: str, allowed) -> bool:
    wanted = origin.lower().rstrip("/")
    return any(wanted == entry.lower().rstrip("/") for entry in allowed)


def cookie_allowed(headers, allowed) -> bool:
    """May a request with these headers use the cookie? From the gateway's own origin (as the
    browser says in Sec-Fetch-Site, or Origin's host is the Host), from a listed origin (never
    by `*`), or without Origin and Sec-Fetch-Site (a client that is not a browser, an older
    browser's same-origin GET); not a navigation or frame of another site (no Origin, but
    Sec-Fetch-Site cross-site or same-site)."""
    site, origin = headers.get("Sec-Fetch-Site"), headers.get("Origin")
    if site in ("same-origin", "none"):         # "none": the user's own address bar
        return True
    if origin is None:
        return site is None
    if "*" not in allowed and origin_listed(origin, allowed):
        return True
    return site is None and _own_origin(origin, headers.get("Host"))


def _own_origin(origin: str, host: str | None) -> bool:
    if not host:
        return False
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:          # not a URL ("http://[")
        return False


def refuse_tokens_in_url(args, auth_on: bool = True) -> None:
    if any(name.strip().lower() in TOKEN_PARAMETERS for name in args):
        raise TokenInUrl(auth_on)


def bearer(headers) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None. Another scheme is not ours (a
    site behind Basic auth has the browser send it with every request): the cookie or ticket
    is looked for, and only a request with neither is told that the header must be Bearer."""
    value = present(headers, "Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    if not token.strip():
        raise InvalidToken(NOT_BEARER)
    return token.strip()


def _identify(auth: Authenticator, headers, **given) -> Identity | None:
    try:
        return auth.identify(**given)
    except MissingCredential:
        if present(headers, "Authorization") is not None:
            raise InvalidToken(NOT_BEARER) from None
        raise


def credentials(auth: Authenticator, headers, cookies, args, *, tickets: bool,
                origins=()) -> Identity | None:
    """The identity of a request given by its parts: `headers` and `args` as web/params.py
    reads them, `cookies(name)` a cookie's value or None, `origins` CORS_ALLOWED_ORIGINS.
    None: anonymous (optional mode only); or InvalidToken / MissingCredential /
    CrossOriginCookie."""
    token = bearer(headers)
    cookie = None if token else _cookie(auth, cookies, headers, origins)
    ticket = present(args, "ticket") if tickets else None
    return _identify(auth, headers, bearer=token, cookie=cookie, ticket=ticket)


def stream_credentials(auth: Authenticator, headers, cookies, args, origins=()
                       ) -> tuple[Identity | None, Checked | None]:
    """/events: the identity (as `credentials`), and the ticket it came from, or None. The
    ticket is checked, not spent: only a stream that opens spends it (`auth.redeem`), so a
    HEAD or a refused request (429, 503) leaves it to the retry."""
    token = bearer(headers)
    cookie = None if token else _cookie(auth, cookies, headers, origins)
    ticket = None if token or cookie else present(args, "ticket")
    if ticket:
        checked = auth.check_ticket(ticket)
        return checked.identity, checked
    return _identify(auth, headers, bearer=token, cookie=cookie), None


def _cookie(auth: Authenticator, cookies, headers, origins) -> str | None:
    cookie = cookies(auth.cookie_name) if auth.cookie_name else None
    if cookie and not cookie_allowed(headers, origins):
        raise CrossOriginCookie()
    return cookie


def identify(auth: Authenticator, *, tickets: bool) -> Identity | None:
    """The Flask request's identity (see `credentials`)."""
    return credentials(auth, request.headers, request.cookies.get, request.args,
                       tickets=tickets,
                       origins=current_app.config["SETTINGS"].cors_allowed_origins)


def identify_for_ticket(auth: Authenticator) -> Identity:
    """POST /tickets: a token (bearer or cookie) is needed, whatever the mode."""
    identity = identify(auth, tickets=False)
    if identity is None:
        raise MissingCredential()
    return identity


__all__ = ["CrossOriginCookie", "InvalidToken", "MissingCredential", "TokenInUrl", "bearer",
           "cookie_allowed", "credentials", "origin_listed",
           "identify", "identify_for_ticket", "refuse_tokens_in_url", "stream_credentials"]
