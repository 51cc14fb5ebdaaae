"""GET /health, /livez, /readyz and /stats: figures the broker and history already hold.

/health is Kafka's state (the seed's contract). For orchestrators: /livez is 200 while the
process and its actors answer, whatever Kafka does (a liveness probe must not restart a pod
that only waits for Kafka); /readyz is 200 once Kafka is connected and the warm start is done,
else 503 with the reason (take the instance out of the load balancer meanwhile).
"""
from __future__ import annotations

import pykka
from flask import Blueprint, jsonify

from actors.messages import GetHealth, GetHistorySize, GetLimiterStats, GetStats
from web.errors import ServiceUnavailable
from web.system import ask, current_system

bp = Blueprint("status", __name__)


@bp.get("/health")
def health():
    system = current_system()
    report = ask(system.broker, GetHealth())
    return _no_store(report, 200 if report["status"] == "ok" else 503)


@bp.get("/livez")
def livez():
    try:
        system = current_system()
        dead = sorted(name for name, ref in system.core.items() if not ref.is_alive())
        if dead:
            return _probe(503, "dead", f"actor(s) {', '.join(dead)} stopped")
        ask(system.broker, GetHealth())          # the broker answers: the worker is not stuck
    except ServiceUnavailable as exc:
        return _probe(503, "unavailable", str(exc))
    return _probe(200, "alive")


@bp.get("/readyz")
def readyz():
    try:
        report = ask(current_system().broker, GetHealth())
    except ServiceUnavailable as exc:
        return _probe(503, "not_ready", str(exc))
    kafka = report["kafka"]
    if kafka["state"] != "connected":
        detail = f" ({kafka['detail']})" if kafka.get("detail") else ""
        return _probe(503, "not_ready", f"kafka is {kafka['state']}{detail}")
    if not kafka.get("partitions"):
        return _probe(503, "not_ready", "kafka is connected but has no partition of "
                      "KAFKA_TOPICS yet: create the topics or correct KAFKA_TOPICS")
    if not report.get("warm", True):
        return _probe(503, "not_ready", "warm start: reading the recent history from Kafka")
    return _probe(200, "ready")


@bp.get("/stats")
def stats():
    system = current_system()
    figures = ask(system.broker, GetStats())
    figures["history_size"] = ask(system.history, GetHistorySize())
    figures["limiter"] = ask(system.limiter, GetLimiterStats())
    figures["actors"] = len(pykka.ActorRegistry.get_all())
    return _no_store(figures, 200)


def _probe(status: int, word: str, reason: str | None = None):
    body = {"status": word} if reason is None else {"status": word, "reason": reason}
    return _no_store(body, status)


def _no_store(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
