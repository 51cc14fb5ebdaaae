"""At most a few streaming calls at once, so that open streams cannot starve the other calls.

Every call holds one of the server's handlers (MAX_WORKERS) for as long as it lasts, and a
client may keep a health Watch or a reflection stream open for ever, without a token: with
every handler held, GetStats, DisconnectClient and Health/Check itself waited until their
deadline. StreamCap, the outermost interceptor, refuses a streaming call past its limit at
once with RESOURCE_EXHAUSTED; unary calls are never counted.
"""
from __future__ import annotations

import threading

import grpc

_STREAMING = ("unary_stream", "stream_unary", "stream_stream")


class StreamCap(grpc.ServerInterceptor):
    def __init__(self, limit: int):
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        kind = next(name for name in _STREAMING if getattr(handler, name) is not None)
        return handler._replace(**{kind: self._capped(getattr(handler, kind))})

    def _capped(self, behaviour):
        def handle(request, context):
            if not self._free.acquire(blocking=False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"this server takes at most {self.limit} streaming calls at once "
                              "(health Watch, reflection): close one, or poll "
                              "grpc.health.v1.Health/Check instead of watching")
            if not context.add_callback(_once(self._free.release)):
                self._free.release()            # the call is over already
            return behaviour(request, context)
        return handle


def _once(release):
    done = []

    def release_once():
        if not done:
            done.append(True)
            release()
    return release_once
