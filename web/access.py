"""The access log (ACCESS_LOG=true): one line per request when its response ends.

A WSGI middleware around the Flask app, so a stream is logged when it closes, with its whole
duration. Fields (keys of their own in JSON logs): method, path (query secrets and any token
or ticket redacted), status, duration (seconds) and client_address (after TRUSTED_PROXIES, as
web/address.py resolves it).
"""
from __future__ import annotations

import logging
import time

from actors.auth.redact import SECRET_PARAMETERS, mask_credentials, redact_query
from actors.logs import CONTROLS
from web.address import client_address

logger = logging.getLogger("web.access")

SECRET_PARAMS = frozenset(SECRET_PARAMETERS | {"auth", "key", "password", "secret"})
REDACTED = "REDACTED"


def redact(query: str) -> str:
    """`a=1&token=abc` -> `a=1&token=REDACTED` (names in any case, percent-encoded or not, as
    the app decodes them)."""
    return redact_query("?" + query, SECRET_PARAMS, REDACTED)[1:]


def register(app) -> None:
    settings = app.config["SETTINGS"]
    if settings.access_log:
        app.wsgi_app = AccessLog(app.wsgi_app, settings.trusted_proxies)


class AccessLog:
    def __init__(self, wsgi_app, trusted_proxies):
        self.wsgi_app, self.trusted = wsgi_app, trusted_proxies

    def __call__(self, environ, start_response):
        started = time.monotonic()
        seen = {}

        def record_status(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, record_status)
        except BaseException:
            self._log(environ, "500", started)
            raise
        return _Logged(body, lambda: self._log(environ, seen.get("status", "500"), started))

    def _log(self, environ, status: str, started: float) -> None:
        path = mask_credentials(environ.get("PATH_INFO", "")).translate(CONTROLS)
        query = environ.get("QUERY_STRING", "")
        if query:
            path += "?" + redact(query)
        address = client_address(environ.get("REMOTE_ADDR", ""),
                                 environ.get("HTTP_X_FORWARDED_FOR"), self.trusted)
        method, code = environ.get("REQUEST_METHOD", ""), int(status.split(" ", 1)[0])
        duration = round(time.monotonic() - started, 3)
        logger.info("%s %s %d %.3fs from %s", method, path, code, duration, address,
                    extra={"method": method, "path": path, "status": code,
                           "duration": duration, "client_address": address})


class _Logged:
    """The response body as it was (iterated directly, no cost per chunk); logs on close()."""

    def __init__(self, body, done):
        self.body, self.done = body, done

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            done, self.done = self.done, None
            if done is not None:
                done()
