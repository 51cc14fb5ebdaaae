"""POST /tickets: a short-lived, single-use stream ticket for the caller's token, for clients
that cannot set headers (a browser's EventSource): `/events?ticket=<ticket>`.

    POST /tickets   Authorization: Bearer <jwt>   (or the AUTH_COOKIE_NAME cookie)
    201 {"ticket": "...", "expires_in": 30, "expires_at": "2026-01-01T12:00:30Z"}
    401 without a valid token; 404 when AUTH_MODE=off; 400 for a token in the URL (as /events);
    422 when the token's scope is too long for any ticket to fit in a URL.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, jsonify, request

from actors.auth.tickets import TicketTooLarge
from web.auth import identify_for_ticket, refuse_tokens_in_url
from web.core import current_gateway
from web.errors import json_error

logger = logging.getLogger(__name__)

bp = Blueprint("tickets", __name__)

AUTH_OFF = ("auth is off (AUTH_MODE=off): connect to /events without a ticket, or set "
            "AUTH_MODE to use tickets")


@bp.post("/tickets")
def create():
    auth = current_gateway().auth
    refuse_tokens_in_url(request.args, auth is not None)
    if auth is None:
        return json_error(404, "not_found", AUTH_OFF)
    identity = identify_for_ticket(auth)
    try:
        ticket, expires_at = auth.issue_ticket(identity)
    except TicketTooLarge as exc:
        return json_error(422, "ticket_too_large", str(exc))
    logger.debug("ticket issued to subject %r", identity.subject)
    response = jsonify({"ticket": ticket,
                        "expires_in": max(0, round(expires_at - auth.clock())),
                        "expires_at": _rfc3339(expires_at)})
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
