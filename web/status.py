"""GET /health, /livez, /readyz and /stats: figures the broker and history already hold.

/health is Kafka's state (the seed's contract). For orchestrators: /livez is 200 while the
process and its actors answer, whatever Kafka does (a liveness probe must not restart a pod
that only waits for Kafka); /readyz is 200 once actors.replies.Health.not_ready finds nothing
(Kafka connected, a partition found, every worker answering, the warm start done, the JWKS
fetched when auth needs it), else 503 with the reason (take the instance out of the load
balancer meanwhile).

With several workers the attached gateway is the instance's (actors/instance.py): /health,
/readyz and /stats describe the whole instance (ready when every worker is), while /livez asks
only the worker that answers (its own actors; a stuck peer must not fail this one's liveness).
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from actors.gateway import Unavailable
from web.admin import public_with_admin
from web.core import current_gateway

bp = Blueprint("status", __name__)


@bp.get("/health")
def health():
    report = current_gateway().health()
    body = report.to_json()
    if public_with_admin():
        body["kafka"]["detail"] = ""
    return _no_store(body, 200 if report.ok else 503)


@bp.get("/livez")
def livez():
    try:
        gateway = current_gateway()
        dead = gateway.stopped_actors()
        if dead:
            return _probe(503, "dead", f"actor(s) {', '.join(dead)} stopped")
        getattr(gateway, "local", gateway).health()     # its broker answers: not stuck
    except Unavailable as exc:
        return _probe(503, "unavailable", str(exc))
    return _probe(200, "alive")


@bp.get("/readyz")
def readyz():
    try:
        report = current_gateway().health()
    except Unavailable as exc:
        return _probe(503, "not_ready", str(exc))
    reason = report.not_ready()
    if reason and public_with_admin():
        return _probe(503, "not_ready", "the admin listener's /readyz says why")
    return _probe(503, "not_ready", reason) if reason else _probe(200, "ready")


@bp.get("/stats")
def stats():
    return _no_store(current_gateway().stats().to_json(), 200)


def _probe(status: int, word: str, reason: str | None = None):
    body = {"status": word} if reason is None else {"status": word, "reason": reason}
    return _no_store(body, status)


def _no_store(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
