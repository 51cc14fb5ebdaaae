"""The core's gateway as this app holds it: attached after the fork, asked by the views.

With several workers it is the instance's (actors/instance.py, composed by service/main.py):
the same methods, streams admitted and opened by this worker, figures for the instance."""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from actors.gateway import Gateway, Unavailable
from web.slow_writes import WriteChecker

GATEWAY_KEY = "sse.gateway"
CHECKER_KEY = "sse.write_checker"


def attach(app: Flask, gateway: Any) -> None:
    """`gateway`: actors.gateway.Gateway, or the instance's (same methods), or None."""
    app.extensions[GATEWAY_KEY] = gateway


def current_gateway() -> Gateway:
    gateway = current_app.extensions.get(GATEWAY_KEY)
    if gateway is None:
        raise Unavailable("the service is starting or stopping; retry shortly")
    return gateway


def write_checker(app: Flask) -> WriteChecker:
    """The app's one checker of stuck writes; its owner (service/main.py) starts and stops it."""
    return app.extensions[CHECKER_KEY]
