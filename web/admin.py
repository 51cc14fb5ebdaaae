"""The admin listener (ADMIN_HOST:ADMIN_PORT): /metrics, /stats, /livez, /readyz, /health on their
own port (the public port's /health and /readyz then leave out Kafka's details: web/status.py).

gunicorn binds both addresses (web/serve.py) and every worker serves both. A request's port
is the listening socket's own (gunicorn sets SERVER_PORT from it, not from the Host header),
so a client cannot reach the admin paths through the public port by naming the other one.
With ADMIN_PORT=0 (the default) nothing changes: the public port serves everything.
"""
from __future__ import annotations

from flask import current_app, request

from web.errors import json_error

ADMIN_PATHS = frozenset({"/metrics", "/stats", "/livez", "/readyz", "/health"})
PRIVATE_PATHS = frozenset({"/metrics", "/stats"})   # leave the public port once admin is on


def register(app) -> None:
    admin_port = app.config["SETTINGS"].admin_port
    if not admin_port:
        return

    @app.before_request
    def keep_ports_apart():
        on_admin = _on_port(admin_port)
        if on_admin and request.path not in ADMIN_PATHS:
            return json_error(404, "not_found", "the admin listener serves only "
                              + ", ".join(sorted(ADMIN_PATHS)))
        if not on_admin and request.path in PRIVATE_PATHS:
            return json_error(404, "not_found", f"{request.path} is served on the admin "
                              "listener only (ADMIN_HOST:ADMIN_PORT)")
        return None


def public_with_admin() -> bool:
    """The request came in on the public port of an instance with an admin listener: Kafka's
    details (broker addresses, its error text, file paths) are the admin listener's only."""
    admin_port = current_app.config["SETTINGS"].admin_port
    return bool(admin_port) and not _on_port(admin_port)


def _on_port(port: int) -> bool:
    return request.environ.get("SERVER_PORT") == str(port)
