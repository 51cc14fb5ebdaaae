"""Who gets in: the rate limiter's word on /stats and POST /tickets, before the view. (GET
/events asks the gateway itself, web/stream.py: it also takes a stream slot and counts its
subject's streams.)"""
from __future__ import annotations

from flask import g, request

from actors.gateway import Lease
from web.address import limit_key
from web.core import current_gateway

RATE_LIMITED = frozenset({"status.stats", "tickets.create"})


def admit() -> Lease:
    """Ask the limiter for this request's client; raises Refused (429/503 with Retry-After)."""
    return current_gateway().admit(limit_key(g.client_address), stream=False)


def register(app) -> None:
    enabled = app.config["SETTINGS"].rate_limit_enabled

    @app.before_request
    def limit():
        if enabled and request.endpoint in RATE_LIMITED:
            admit()
        return None
