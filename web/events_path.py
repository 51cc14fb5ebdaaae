"""GET /events served ahead of Flask: the one request that comes in storms (every browser
reconnecting at once) skips Flask's request context, routing, hooks and werkzeug's request
and response objects. Everything else goes to the Flask app unchanged.

What the app's hooks do for /events is done here the same way: the client's address
(web/address.py), CORS headers and `Vary: Origin` (web/cors.py); the admin listener's requests
and HEAD are the app's. Every refusal (400, 401, 403, 429, 503, 500) is answered by the app's
own error handlers and after-request hooks, so its status, JSON body and headers are the ones
the app gives. The access log (web/access.py) wraps this dispatcher: /events is logged too.
Under gunicorn the response head and the stream's first chunk (retry, greeting) go out in one
send instead of two.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from gunicorn.http.wsgi import Response as GunicornResponse
from werkzeug.sansio.http import parse_cookie

from actors.filters import FilterError
from actors.gateway import Unavailable
from web.address import environ_address
from web.core import CHECKER_KEY, GATEWAY_KEY
from web.cors import cors_headers
from web.errors import json_error
from web.stream import STREAM_HEADERS, open_events

PATH = "/events"
CONTENT_TYPE = "text/event-stream; charset=utf-8"     # what werkzeug makes of the mimetype


class Query:
    """The query string read as werkzeug reads `request.args` (split on `&`, `+` is a space,
    blank values kept, invalid bytes left percent-encoded), without its MultiDict."""

    __slots__ = ("_values",)

    def __init__(self, query_string: str):
        values: dict[str, list[str]] = {}
        if query_string.isascii() and "%" not in query_string and "+" not in query_string:
            pairs: list = [field.partition("=")[::2] for field in query_string.split("&")
                           if field]
        else:       # above, nothing to decode: the same pairs in a third of the time
            pairs = parse_qsl(query_string.encode("latin-1").decode(), keep_blank_values=True,
                              errors="werkzeug.url_quote")
        for name, value in pairs:
            values.setdefault(name, []).append(value)
        self._values = values

    def __contains__(self, name) -> bool:
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def get(self, name: str, default=None):
        found = self._values.get(name)
        return found[0] if found else default

    def getlist(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))


class Headers:
    """A request's headers read from its WSGI environ, by name in any case."""

    __slots__ = ("_environ",)
    _keys: dict[str, str] = {}

    def __init__(self, environ):
        self._environ = environ

    def _key(self, name: str) -> str:
        key = self._keys.get(name)
        if key is None:
            key = self._keys.setdefault(name, "HTTP_" + name.upper().replace("-", "_"))
        return key

    def __contains__(self, name) -> bool:
        return self._key(name) in self._environ

    def get(self, name: str, default=None):
        return self._environ.get(self._key(name), default)


class EventsPath:
    """The WSGI app gunicorn calls: GET /events here, everything else to `fallback` (the
    Flask app's own wsgi_app)."""

    def __init__(self, app, fallback):
        self.app, self.fallback = app, fallback
        settings = app.config["SETTINGS"]
        self.settings = settings
        self.trusted = settings.trusted_proxies
        self.origins = settings.cors_allowed_origins
        self.vary = "*" not in self.origins
        self.admin_port = str(settings.admin_port) if settings.admin_port else None

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET"
                or (self.admin_port and environ.get("SERVER_PORT") == self.admin_port)):
            return self.fallback(environ, start_response)
        try:
            body = self._open(environ)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handlers, as before
            return self._refuse(environ, start_response, exc)
        start_response("200 OK", self._headers(environ.get("HTTP_ORIGIN")))
        body.first_write = head_and_first_chunk(start_response)
        return body

    def _open(self, environ):
        extensions = self.app.extensions
        gateway = extensions.get(GATEWAY_KEY)
        if gateway is None:
            raise Unavailable("the service is starting or stopping; retry shortly")
        address = environ_address(environ, self.trusted)
        return open_events(self.settings, gateway, extensions.get(CHECKER_KEY), environ,
                           Query(environ.get("QUERY_STRING", "")), Headers(environ),
                           _cookies(environ), address)

    def _headers(self, origin: str | None) -> list[tuple[str, str]]:
        headers = [("Content-Type", CONTENT_TYPE), *STREAM_HEADERS.items(),
                   *cors_headers(origin, self.origins).items()]
        if self.vary:
            headers.append(("Vary", "Origin"))
        return headers

    def _refuse(self, environ, start_response, exc: Exception):
        """The app's answer to `exc`, as if its view had raised it."""
        app = self.app
        with app.request_context(environ):
            try:
                if isinstance(exc, FilterError):
                    answer = json_error(400, "bad_request", str(exc))
                else:
                    answer = app.handle_user_exception(exc)
                response = app.finalize_request(answer)
            except Exception as again:  # noqa: BLE001 - Flask's last resort: a 500
                response = app.handle_exception(again)
            return response(environ, start_response)


def head_and_first_chunk(start_response):
    """`write(chunk)`: the response head and the first chunk in one send, the same bytes
    gunicorn's HTTP/1.1 Response sends in two; None when `start_response` is not that
    Response's, or the answer is not chunked (HTTP/1.0): the server writes both itself."""
    response = getattr(start_response, "__self__", None)
    if type(response) is not GunicornResponse or not response.chunked:
        return None

    def write(chunk: bytes) -> None:
        head = response.default_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        head.append("\r\n")
        response.sock.sendall("".join(head).encode("latin-1")
                              + b"%X\r\n%s\r\n" % (len(chunk), chunk))
        response.headers_sent = True
        response.sent += len(chunk)
    return write


def _cookies(environ):
    """`cookies(name)`: the request's cookie of that name, the header parsed on first use."""
    parsed = None

    def cookie(name: str) -> str | None:
        nonlocal parsed
        if parsed is None:
            header = environ.get("HTTP_COOKIE") or ""      # bytes as latin-1, as WSGI gives
            parsed = parse_cookie(header.encode("latin-1").decode("utf-8", "replace"))
        return parsed.get(name)
    return cookie


def register(app) -> None:
    """Before web/access.py's register: the access log wraps this dispatcher."""
    app.wsgi_app = EventsPath(app, app.wsgi_app)
