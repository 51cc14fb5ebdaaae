"""GET /health and GET /stats: figures the broker and history already hold."""
from __future__ import annotations

import pykka
from flask import Blueprint, jsonify

from actors.messages import GetHealth, GetHistorySize, GetLimiterStats, GetStats
from web.system import ask, current_system

bp = Blueprint("status", __name__)


@bp.get("/health")
def health():
    system = current_system()
    report = ask(system.broker, GetHealth())
    response = jsonify(report)
    response.status_code = 200 if report["status"] == "ok" else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/stats")
def stats():
    system = current_system()
    figures = ask(system.broker, GetStats())
    figures["history_size"] = ask(system.history, GetHistorySize())
    figures["limiter"] = ask(system.limiter, GetLimiterStats())
    figures["actors"] = len(pykka.ActorRegistry.get_all())
    response = jsonify(figures)
    response.headers["Cache-Control"] = "no-store"
    return response
