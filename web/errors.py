"""JSON errors for every HTTP failure: a status, a code, and a sentence that says what to do.

    Exception
    ├── actors.gateway.Unavailable   503  the core is starting, stopping or overloaded
    ├── KeysUnavailable              503  unavailable: no JWKS fetched yet, with Retry-After
    ├── actors.gateway.Refused       429  rate_limited, too_many_streams_per_ip,
    │                                     too_many_streams_per_subject
    │                                503  too_many_streams (the instance is full)
    ├── web.auth.TokenInUrl          400  bad_request: use a ticket
    ├── web.auth.CrossOriginCookie   403  origin_not_allowed: the cookie from another origin
    ├── InvalidToken                 401  unauthorized, WWW-Authenticate: Bearer
    │                                     error="invalid_token"
    │   └── MissingCredential        401  unauthorized, WWW-Authenticate: Bearer
    └── OutsideScope                 403  forbidden: names what the scope refuses
Werkzeug's HTTPExceptions (400, 404, 405 ...) get the same JSON shape, and so does its
redirect from a path with `//` to the path without (308), which Flask would send as HTML.
A message never holds a token, cookie or ticket.
"""
from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from actors.auth.authenticator import MissingCredential
from actors.auth.redact import mask_credentials
from actors.auth.scope import OutsideScope
from actors.auth.tickets import InvalidTicket
from actors.auth.identity import InvalidToken
from actors.auth.jwks import KeysUnavailable
from actors.gateway import Refused, Unavailable
from actors.logs import LogBudget, more_since
from web.address import request_address
from web.auth import CrossOriginCookie, TokenInUrl

logger = logging.getLogger(__name__)

# Refused.reason -> (HTTP status, message with the seconds to wait)
REFUSALS = {
    "rate_limited": (429, "too many requests from your address; retry after {} s"),
    "too_many_streams_per_ip": (429, "your address holds as many streams as it may "
                                     "(SSE_MAX_CLIENTS_PER_IP); close one or retry after {} s"),
    "too_many_streams_per_subject": (429, "your subject holds as many streams as it may "
                                          "(SSE_MAX_CLIENTS_PER_SUBJECT); close one or retry "
                                          "after {} s"),
    "too_many_streams": (503, "this instance serves as many streams as it may "
                              "(SSE_MAX_CLIENTS); retry after {} s or use another instance"),
}


def json_error(status: int, code: str, message: str, headers=None):
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


OR_TICKET = ", or connect with ?ticket= from POST /tickets"
REFUSALS_KEY = "sse_refusal_log"
REFUSALS_LOGGED = 20        # lines a minute at most


def unauthorized(exc: InvalidToken):
    """401: no credential (`WWW-Authenticate: Bearer`) or a refused one, named by its reason.
    POST /tickets takes a token only: its answer does not point to a ticket."""
    if isinstance(exc, MissingCredential):
        cookie_name = current_app.config["SETTINGS"].auth_cookie_name
        sends = " or ".join(["Authorization: Bearer <token>",
                             *([f"the {cookie_name} cookie"] if cookie_name else [])])
        message = f"credential required: send {sends}" + (
            "" if request.endpoint == "tickets.create" else OR_TICKET)
        return json_error(401, "unauthorized", message,
                          {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"})
    _log_refused(exc.reason)
    reason = _description(exc.reason)
    advice = ("get a new ticket from POST /tickets" if isinstance(exc, InvalidTicket)
              else "send a valid token")
    return json_error(401, "unauthorized", f"{exc.reason}; {advice}",
                      {"WWW-Authenticate": f'Bearer error="invalid_token", '
                                           f'error_description="{reason}"',
                       "Cache-Control": "no-store"})


def _log_refused(reason: str) -> None:
    """One line per refused credential (none for a missing one: browsers without any), at
    most REFUSALS_LOGGED a minute: anyone can send bad tokens."""
    if not logger.isEnabledFor(logging.INFO):
        return
    dropped = current_app.extensions[REFUSALS_KEY].take(time.monotonic())
    if dropped is None:
        return
    address = g.get("client_address") or request_address(    # /events: no hooks ran
        current_app.config["SETTINGS"].trusted_proxies)
    shown = mask_credentials(reason)
    logger.info("credential refused for %s on %s %s: %s%s", address, request.method,
                mask_credentials(request.path), shown, more_since(dropped),
                extra={"client_address": address, "reason": shown})


def _description(reason: str) -> str:
    """The reason as an error_description may hold it (RFC 6750 3: printable ASCII but `"` and
    `\\`); a character past U+00FF in a header makes gunicorn answer a bare 500."""
    return "".join(_QUOTED.get(c, c) if " " <= c <= "~" else "?" for c in reason)


_QUOTED = {'"': "'", "\\": "/"}


def redirected():
    """werkzeug's redirect (a path with `//`) as JSON, before any other hook. Its Location is
    made relative: the absolute one is built from the Host header, and reads http:// behind a
    proxy that ends TLS."""
    exc = request.routing_exception
    if not isinstance(exc, RequestRedirect):
        return None
    target = urlsplit(exc.new_url)
    location = "/" + target._replace(scheme="", netloc="").geturl().lstrip("/")
    return json_error(308, "permanent_redirect", f"this resource is at {location}",
                      {"Location": location})


def _what_to_do(exc: HTTPException) -> str:
    methods = getattr(exc, "valid_methods", None)
    if exc.code == 405 and methods:         # werkzeug's text names none
        *first, last = sorted(methods)
        return f"this path takes {', '.join(first)} and {last} only" if first else \
            f"this path takes {last} only"
    return exc.description or exc.name


def register(app) -> None:
    app.extensions[REFUSALS_KEY] = LogBudget(REFUSALS_LOGGED, 60.0, unlogged=lambda count: (
        logger.info("%d more credential(s) refused in the last minutes, not logged (%d lines a "
                    "minute at most)", count, REFUSALS_LOGGED)))
    app.before_request(redirected)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Its own headers kept (Allow, Content-Range, Retry-After), its HTML body not. A 500
        (Flask's last resort, when a handler failed too) is named as the README names it."""
        code = ("internal_error" if exc.code == 500
                else (exc.name or "error").lower().replace(" ", "_"))
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_error(exc.code or 500, code, _what_to_do(exc), headers)

    @app.errorhandler(Unavailable)
    def unavailable(exc):
        return json_error(503, "unavailable", str(exc), {"Retry-After": "5"})

    @app.errorhandler(KeysUnavailable)
    def keys_unavailable(exc: KeysUnavailable):
        return json_error(503, "unavailable", str(exc),
                          {"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"})

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        status, template = REFUSALS[exc.reason]
        return json_error(status, exc.reason, template.format(exc.retry_after),
                          {"Retry-After": str(exc.retry_after)})

    @app.errorhandler(CrossOriginCookie)
    def cross_origin_cookie(exc: CrossOriginCookie):
        return json_error(403, "origin_not_allowed", str(exc))

    @app.errorhandler(TokenInUrl)
    def token_in_url(exc: TokenInUrl):
        return json_error(400, "bad_request", str(exc))

    app.register_error_handler(InvalidToken, unauthorized)

    @app.errorhandler(OutsideScope)
    def outside_scope(exc: OutsideScope):
        return json_error(403, "forbidden", str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc):
        current_app.logger.exception("unhandled error: %s", exc)
        return json_error(500, "internal_error", "the server failed to answer; see its log")
