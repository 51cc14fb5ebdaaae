"""GRPC_AUTH_TOKEN: management calls must carry `authorization: Bearer <token>` metadata.

Only the methods of the guarded services are checked. grpc.health.v1 stays open for load
balancers and probes, and so does server reflection: it describes the schema (public in
proto/sse.proto) and nothing of the running service, and grpcurl's `-H` sends the header
to both anyway. A refused call is logged (method, peer and why, never the token), at most
REFUSALS_LOGGED a minute.
"""
from __future__ import annotations

import hmac
import logging
import time

import grpc

from actors.logs import LogBudget, more_since

logger = logging.getLogger(__name__)

GUARDED_SERVICES = ("sse.SSEManagementService",)
REFUSALS_LOGGED = 20            # a minute: anyone who reaches the port may cause one a call


def _deny(context):
    context.abort(grpc.StatusCode.UNAUTHENTICATED,
                  "this management API needs `authorization: Bearer <GRPC_AUTH_TOKEN>` metadata "
                  "(grpcurl: -H 'authorization: Bearer <token>')")


_HANDLERS = {  # (request_streaming, response_streaming) -> grpcio's maker of such a handler
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def bearer_token(metadata) -> str | None:
    """The token of the call's one `authorization: Bearer <token>` entry; None without one, or
    with several (which one counts would depend on their order: a proxy adding its own)."""
    found = [value for key, value in metadata or () if key.lower() == "authorization"]
    if len(found) != 1 or not isinstance(found[0], str):
        return None
    scheme, _, token = found[0].strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerAuth(grpc.ServerInterceptor):
    """Refuses calls to GUARDED_SERVICES whose bearer token is missing or wrong."""

    def __init__(self, token: str, services=GUARDED_SERVICES):
        if not token:
            raise ValueError("an empty token would let every call in")
        self._token = token.encode()
        self._prefixes = tuple(f"/{name}/" for name in services)
        self._budget = LogBudget(REFUSALS_LOGGED, 60.0, unlogged=lambda count: logger.warning(
            "%d more management call(s) refused in the last minutes, not logged (%d lines a "
            "minute at most)", count, REFUSALS_LOGGED))

    def carries_token(self, handler_call_details) -> bool:
        """The call's metadata holds the right bearer token (whatever method it calls)."""
        offered = bearer_token(handler_call_details.invocation_metadata)
        return offered is not None and hmac.compare_digest(offered.encode(), self._token)

    def intercept_service(self, continuation, handler_call_details):
        if (not handler_call_details.method.startswith(self._prefixes)
                or self.carries_token(handler_call_details)):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None             # an unknown method stays UNIMPLEMENTED
        offered = bearer_token(handler_call_details.invocation_metadata) is not None
        return self._refusal(handler, handler_call_details.method,
                             "a wrong bearer token" if offered else "no bearer token")

    def _refusal(self, handler, method: str, reason: str):
        """A handler of `handler`'s kind that logs the refusal (never the token) and refuses."""
        def deny(request, context):
            dropped = self._budget.take(time.monotonic())
            if dropped is not None:
                logger.warning("management call %s from %s refused: %s%s", method,
                               context.peer(), reason, more_since(dropped))
            _deny(context)

        def deny_streaming(request, context):
            deny(request, context)
            yield  # pragma: no cover - never reached: abort raises

        make = _HANDLERS[(handler.request_streaming, handler.response_streaming)]
        return make(deny_streaming if handler.response_streaming else deny)
