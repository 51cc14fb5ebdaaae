"""The HTTP adapter: a Flask app whose views talk to the actor system by messages."""
from __future__ import annotations

from flask import Flask

from actors.settings import Settings

SYSTEM_KEY = "sse.system"


def create_app(settings: Settings | None = None, *, system=None) -> Flask:
    """Build the app; `system` may be attached later (gunicorn starts it after the fork)."""
    app = Flask(__name__, static_folder=None)   # the page blueprint serves /static
    app.config["SETTINGS"] = settings or Settings.from_env()
    app.extensions[SYSTEM_KEY] = system

    from web import admin, errors, metrics, page, protect, status, stream
    errors.register(app)
    admin.register(app)     # ADMIN_PORT: /metrics and /stats off the public port
    protect.register(app)   # client address, CORS, the rate limit on /stats
    for module in (stream, status, metrics, page):
        app.register_blueprint(module.bp)
    from web import access, contracts
    app.register_blueprint(contracts.bp)    # /openapi.json, /asyncapi.json
    access.register(app)                    # ACCESS_LOG: one line per request, outermost
    return app


def attach(app: Flask, system) -> None:
    app.extensions[SYSTEM_KEY] = system
