"""The HTTP adapter: a Flask app whose views ask the core through actors/gateway.py."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from actors.settings import Settings


def create_app(settings: Settings | None = None, *, gateway=None) -> Flask:
    """Build the app; `gateway` may be attached later (gunicorn starts the core after the fork)."""
    # Imported here, not above: gunicorn's master imports this package (web.serve, the worker
    # class) before gevent patches the worker, and the app's imports bring in ssl (PyJWT).
    from flask import Flask

    from actors.settings import Settings
    from web.core import CHECKER_KEY, attach
    from web.slow_writes import WriteChecker

    app = Flask(__name__, static_folder=None)   # the page blueprint serves /static
    app.config["SETTINGS"] = settings or Settings.from_env()
    attach(app, gateway)
    app.extensions[CHECKER_KEY] = WriteChecker()    # started by the service, not by a request

    from web import (
        access, address, admin, admission, contracts, cors, errors, events_path, metrics, page,
        status, stream, tickets,
    )
    errors.register(app)
    admin.register(app)        # ADMIN_PORT: /metrics and /stats off the public port
    address.register(app)      # g.client_address, for everything after it
    cors.register(app)         # preflights (answered before any limit) and CORS headers
    admission.register(app)    # the rate limit on /stats and POST /tickets (/events admits itself)
    for module in (stream, tickets, status, metrics, page):
        app.register_blueprint(module.bp)
    app.register_blueprint(contracts.bp)    # /openapi.json, /asyncapi.json
    events_path.register(app)               # GET /events ahead of Flask (reconnect storms)
    access.register(app)                    # ACCESS_LOG: one line per request, outermost
    return app


__all__ = ["create_app"]
