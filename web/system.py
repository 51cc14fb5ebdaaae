"""Access to the actor system from a request, and asking it with a timeout."""
from __future__ import annotations

import pykka
from flask import current_app

from web import SYSTEM_KEY
from web.errors import ServiceUnavailable

ASK_TIMEOUT = 2.0


def current_system():
    system = current_app.extensions.get(SYSTEM_KEY)
    if system is None or system.stopping.is_set():
        raise ServiceUnavailable("the service is starting or stopping; retry shortly")
    return system


def ask(ref, message, timeout=ASK_TIMEOUT):
    try:
        return ref.ask(message, timeout=timeout)
    except pykka.ActorDeadError:
        raise ServiceUnavailable("the service is stopping; retry shortly") from None
    except pykka.Timeout:
        raise ServiceUnavailable("the service is overloaded and did not answer in time") from None
