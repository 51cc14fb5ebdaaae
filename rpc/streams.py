"""At most a few streaming calls at once, so that open streams cannot starve the other calls.

Every call holds one of the server's handlers (MAX_WORKERS) for as long as it lasts, and a
client may keep a health Watch or a reflection stream open for ever, without a token: with
every handler held, GetStats, DisconnectClient and Health/Check itself waited until their
deadline. StreamCap, the outermost interceptor, refuses a streaming call past its limit at
once with RESOURCE_EXHAUSTED; unary calls are never counted. Calls that carry the management
token (`trusted`) count against places of their own: strangers holding every other place
cannot lock the operator's grpcurl (reflection first) out.
"""
from __future__ import annotations

import threading

import grpc

_STREAMING = ("unary_stream", "stream_unary", "stream_stream")


class StreamCap(grpc.ServerInterceptor):
    def __init__(self, limit: int, *, trusted=None, reserved: int = 0):
        self.limit = limit
        self._trusted = trusted             # handler_call_details -> bool, or None
        self._free = threading.BoundedSemaphore(limit)
        self._reserve = threading.BoundedSemaphore(reserved) if trusted and reserved else None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        places, limit = self._free, self.limit
        if self._reserve is not None and self._trusted(handler_call_details):
            places, limit = self._reserve, None
        kind = next(name for name in _STREAMING if getattr(handler, name) is not None)
        return handler._replace(**{kind: _capped(getattr(handler, kind), places, limit)})


def _capped(behaviour, places, limit: int | None):
    def handle(request, context):
        if not places.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _full(limit))
        if not context.add_callback(_once(places.release)):
            places.release()                # the call is over already
        return behaviour(request, context)
    return handle


def _full(limit: int | None) -> str:
    if limit is None:
        return ("the streaming places kept for calls with the management token are all taken: "
                "end one of your open streams (health Watch, reflection), then retry")
    return (f"this server takes at most {limit} streaming calls at once (health Watch, "
            "reflection): close one, or poll grpc.health.v1.Health/Check instead of watching")


def _once(release):
    done = []

    def release_once():
        if not done:
            done.append(True)
            release()
    return release_once
