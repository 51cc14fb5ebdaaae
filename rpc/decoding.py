"""Requests that are not the method's message: INVALID_ARGUMENT naming what failed to parse.

grpcio answers them INTERNAL "Exception deserializing request!" and logs an ERROR with a
traceback for each, so any peer of the port (health and reflection need no token) could fill
the log with what reads as a crash. RequestDecoding, the innermost interceptor, gives every
handler a deserializer that never raises and refuses the call with one log line instead: at
most LINES_PER_INTERVAL lines each INTERVAL_S, the next one saying how many were not logged
(health and reflection are open to anyone who reaches the port, as often as they like).
"""
from __future__ import annotations

import logging
import time

import grpc

from actors.logs import LogBudget, more_since

logger = logging.getLogger(__name__)

LINES_PER_INTERVAL = 10
INTERVAL_S = 60.0


class RefusalLog:
    """One warning per refused call, at most LINES_PER_INTERVAL in each INTERVAL_S."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.budget = LogBudget(LINES_PER_INTERVAL, INTERVAL_S)

    def refused(self, method: str, reason: str) -> None:
        dropped = self.budget.take(self.clock())
        if dropped is not None:
            logger.warning("gRPC call %s refused: its request does not parse (%s)%s", method,
                           reason, more_since(dropped))


class Undecodable:
    """Stands in for a request that did not parse; the handler never sees it."""
    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _parse_or_mark(parse):
    def parse_request(data):
        try:
            return parse(data)
        except Exception as exc:   # noqa: BLE001 - DecodeError, or whatever a parser raises
            return Undecodable(str(exc) or type(exc).__name__)
    return parse_request


def _refuse(context, method: str, request: Undecodable, log: RefusalLog):
    log.refused(method, request.reason)
    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  f"the request does not parse ({request.reason}): send the method's request "
                  "message as server reflection describes it")


def _checked(behaviour, method: str, log: RefusalLog):
    def handle(request, context):
        if isinstance(request, Undecodable):
            _refuse(context, method, request, log)
        return behaviour(request, context)
    return handle


def _checked_stream(behaviour, method: str, log: RefusalLog):
    def handle(requests, context):
        def checked():
            for request in requests:
                if isinstance(request, Undecodable):
                    _refuse(context, method, request, log)
                yield request
        return behaviour(checked(), context)
    return handle


class RequestDecoding(grpc.ServerInterceptor):
    def __init__(self, log: RefusalLog | None = None):
        self.log = log or RefusalLog()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        wrap = _checked_stream if handler.request_streaming else _checked
        kind = next(name for name in ("unary_unary", "unary_stream", "stream_unary",
                                      "stream_stream") if getattr(handler, name) is not None)
        return handler._replace(**{
            "request_deserializer": _parse_or_mark(handler.request_deserializer),
            kind: wrap(getattr(handler, kind), method, self.log)})
