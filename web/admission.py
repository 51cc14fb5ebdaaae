"""Who gets in: the rate limiter's word on /stats (before the view) and on /events (the view
asks `admit(stream=True)` itself and gets the lease of a stream slot)."""
from __future__ import annotations

from flask import g, request

from actors.gateway import Lease
from web.address import limit_key
from web.core import current_gateway

# /events admits itself: it also takes a slot (and counts its subject's streams).
RATE_LIMITED = frozenset({"status.stats", "tickets.create"})


def admit(*, stream: bool, subject: str | None = None) -> Lease:
    """Ask the limiter for this request's client; raises Refused (429/503 with Retry-After)."""
    return current_gateway().admit(limit_key(g.client_address), stream=stream, subject=subject)


def register(app) -> None:
    enabled = app.config["SETTINGS"].rate_limit_enabled

    @app.before_request
    def limit():
        if enabled and request.endpoint in RATE_LIMITED:
            admit(stream=False)
        return None
