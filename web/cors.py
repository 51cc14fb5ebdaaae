"""What browsers may do (CORS): `cors_headers` decides; `register(app)` answers preflights
and adds the headers to every answer. A plain OPTIONS (no Access-Control-Request-Method) gets
204 with `Allow`, no body and no type, rather than Flask's empty text/html 200.

Credentials (the AUTH_COOKIE_NAME cookie, EventSource's withCredentials) are allowed only to a
listed origin, echoed: never with `*` (and web/auth.py refuses the cookie of another origin).
With auth on, a page may POST /tickets with an Authorization header, so preflights allow POST
and Authorization.
"""
from __future__ import annotations

from flask import current_app, request

from web.auth import origin_listed
from web.errors import json_error

PREFLIGHT_MAX_AGE = "600"
CORS_METHODS = "GET, HEAD"
AUTH_CORS_METHODS = "GET, HEAD, POST"


def cors_headers(origin: str | None, allowed) -> dict:
    """Allow headers for a request from `origin`: `*` (never with credentials), the origin
    echoed (with credentials) when listed, nothing otherwise."""
    if "*" in allowed:
        headers = {"Access-Control-Allow-Origin": "*"}
    elif origin and origin_listed(origin, allowed):
        headers = {"Access-Control-Allow-Origin": origin,
                   "Access-Control-Allow-Credentials": "true"}
    else:
        return {}
    headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def allowed_headers(settings) -> str:
    headers = list(settings.cors_allowed_headers)
    if settings.auth_mode != "off" and "authorization" not in {h.lower() for h in headers}:
        headers.append("Authorization")
    return ", ".join(headers)


def _preflight(settings):
    origin = request.headers.get("Origin")
    allow = cors_headers(origin, settings.cors_allowed_origins)
    if not allow:
        return json_error(403, "origin_not_allowed",
                          "this origin may not call the gateway (see CORS_ALLOWED_ORIGINS)")
    response = _no_content()
    response.headers.update(allow)
    response.headers["Access-Control-Allow-Methods"] = (
        CORS_METHODS if settings.auth_mode == "off" else AUTH_CORS_METHODS)
    response.headers["Access-Control-Allow-Headers"] = allowed_headers(settings)
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def _no_content():
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


def _options():
    """The methods of the URL, as Flask's automatic OPTIONS answer names them."""
    response = _no_content()
    response.headers["Allow"] = current_app.make_default_options_response().headers["Allow"]
    return response


def register(app) -> None:
    settings = app.config["SETTINGS"]

    @app.before_request
    def preflight():
        if request.method != "OPTIONS" or request.url_rule is None:
            return None
        if "Access-Control-Request-Method" in request.headers:
            return _preflight(settings)
        return _options()

    @app.after_request
    def cors(response):
        response.headers.update(cors_headers(request.headers.get("Origin"),
                                             settings.cors_allowed_origins))
        if "*" not in settings.cors_allowed_origins:
            response.vary.add("Origin")
        return response
