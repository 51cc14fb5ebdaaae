"""JSON errors for every HTTP failure: a status, a code, and a sentence that says what to do."""
from __future__ import annotations

import logging

from flask import current_app, jsonify
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """The actor system is not running (starting or stopping) or did not answer in time."""


def json_error(status: int, code: str, message: str, headers=None):
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register(app) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
        return json_error(exc.code or 500, code, exc.description or exc.name, headers)

    @app.errorhandler(ServiceUnavailable)
    def unavailable(exc):
        return json_error(503, "unavailable", str(exc), {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def unexpected(exc):
        current_app.logger.exception("unhandled error: %s", exc)
        return json_error(500, "internal_error", "the server failed to answer; see its log")
