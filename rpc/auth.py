"""GRPC_AUTH_TOKEN: management calls must carry `authorization: Bearer <token>` metadata.

Only the methods of the guarded services are checked. grpc.health.v1 stays open for load
balancers and probes, and so does server reflection: it describes the schema (public in
proto/sse.proto) and nothing of the running service, and grpcurl's `-H` sends the header
to both anyway.
"""
from __future__ import annotations

import hmac

import grpc

GUARDED_SERVICES = ("sse.SSEManagementService",)


def _deny(request, context):
    context.abort(grpc.StatusCode.UNAUTHENTICATED,
                  "this management API needs `authorization: Bearer <GRPC_AUTH_TOKEN>` metadata "
                  "(grpcurl: -H 'authorization: Bearer <token>')")


def _deny_streaming(request_or_iterator, context):
    _deny(request_or_iterator, context)
    yield  # pragma: no cover - never reached: abort raises


_DENIED = {  # (request_streaming, response_streaming) -> a handler that refuses the call
    (False, False): grpc.unary_unary_rpc_method_handler(_deny),
    (False, True): grpc.unary_stream_rpc_method_handler(_deny_streaming),
    (True, False): grpc.stream_unary_rpc_method_handler(_deny),
    (True, True): grpc.stream_stream_rpc_method_handler(_deny_streaming),
}


def bearer_token(metadata) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class BearerAuth(grpc.ServerInterceptor):
    """Refuses calls to GUARDED_SERVICES whose bearer token is missing or wrong."""

    def __init__(self, token: str, services=GUARDED_SERVICES):
        if not token:
            raise ValueError("an empty token would let every call in")
        self._token = token.encode()
        self._prefixes = tuple(f"/{name}/" for name in services)

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
        return _DENIED[(handler.request_streaming, handler.response_streaming)]
