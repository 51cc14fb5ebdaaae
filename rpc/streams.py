"""At most a few streaming calls at once, so that open streams cannot starve the other calls.

Every call holds one of the server's handlers (HANDLER_THREADS) for as long as it lasts, and a
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
        self.limit, self.reserved = limit, reserved if trusted else 0
        self._trusted = trusted             # handler_call_details -> bool, or None
        self._free = threading.BoundedSemaphore(limit)
        self._reserve = threading.BoundedSemaphore(reserved) if self.reserved else None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        places = (self._free,)
        if self._reserve is not None and self._trusted(handler_call_details):
            places = (self._free, self._reserve)
        kind = next(name for name in _STREAMING if getattr(handler, name) is not None)
        return handler._replace(**{kind: self._capped(getattr(handler, kind), places)})

    def _capped(self, behaviour, places):
        def handle(request, context):
            taken = next((place for place in places if place.acquire(blocking=False)), None)
            if taken is None:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._full(len(places) > 1))
            if not context.add_callback(_once(taken.release)):
                taken.release()             # the call is over already
            return behaviour(request, context)
        return handle

    def _full(self, trusted: bool) -> str:
        if trusted:
            return (f"every streaming place is taken ({self.limit}, and {self.reserved} kept "
                    "for calls with the management token): end one of your open streams "
                    "(health Watch, reflection), then retry")
        return (f"this server takes at most {self.limit} streaming calls at once (health "
                "Watch, reflection): close one, or poll grpc.health.v1.Health/Check instead "
                "of watching")


def _once(release):
    done = []

    def release_once():
        if not done:
            done.append(True)
            release()
    return release_once
