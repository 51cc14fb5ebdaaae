"""ManagementServicer: the calls of sse.SSEManagementService, each one question to the gateway.

A handler checks its request, asks the core's gateway (actors/gateway.py) within the call's
deadline, and hands the typed reply to rpc.mapper. Failures are gRPC statuses with a sentence
that says what to do:

    INVALID_ARGUMENT  a negative limit or offset, a page_token no answer gave, an empty
                      client_id, an empty or over-long subject; a request that does not parse
                      (rpc/decoding.py)
    NOT_FOUND         DisconnectClient of an id that is not connected
    UNAVAILABLE       the core is stopping, or did not answer in time (retry)
"""
from __future__ import annotations

import logging

import grpc

from actors.auth.subjects import MAX_SUBJECT_LENGTH
from actors.gateway import Gateway, Unavailable
from rpc import mapper, sse_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_REASON = 200
MAX_SUBJECT = MAX_SUBJECT_LENGTH
OPERATOR_REASON = "disconnected by operator"


class ManagementServicer(sse_pb2_grpc.SSEManagementServiceServicer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def GetStats(self, request, context):
        return mapper.stats(self._ask(self.gateway.stats, context))

    def GetClients(self, request, context):
        limit = request.limit if request.HasField("limit") else DEFAULT_LIMIT
        if limit < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit must be 0 or more (got {limit}); leave it out for "
                          f"{DEFAULT_LIMIT}, at most {MAX_LIMIT} are returned")
        if request.offset < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"offset must be 0 or more (got {request.offset})")
        after = None
        if request.page_token:
            try:
                after = mapper.place(request.page_token)
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "page_token is not one GetClients gave: pass the "
                              "next_page_token of the previous answer unchanged, or none for "
                              "the first page")
        limit = min(limit, MAX_LIMIT)
        asked = limit + 1 if limit else 0       # one more: is there a next page?
        page = self._ask(lambda timeout: self.gateway.clients(asked, request.offset, after,
                                                              timeout=timeout), context)
        return mapper.clients(page, limit, request.offset)

    def DisconnectClient(self, request, context):
        client_id = request.client_id.strip()
        if not client_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "client_id is required (GetClients lists the connected ids)")
        reason = _reason(request)
        if (len(client_id) > mapper.MAX_CLIENT_ID
                or not self._ask(lambda timeout: self.gateway.disconnect(client_id, reason,
                                                                         timeout), context)):
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no connected client has the id {client_id[:80]!r}; "
                          "GetClients lists the connected ids")
        logger.info("client %s disconnected through the management API: %s", client_id, reason)
        return mapper.disconnected(client_id)

    def DisconnectSubject(self, request, context):
        subject = request.subject        # exact, as the token's claim: no trimming
        if not subject:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "subject is required: the authenticated subject whose streams to end "
                          "(GetClients shows each client's subject)")
        if len(subject) > MAX_SUBJECT:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"subject is {len(subject)} characters long; a subject has at most "
                          f"{MAX_SUBJECT}")
        reason = _reason(request)
        ended = self._ask(
            lambda timeout: self.gateway.disconnect_subject(subject, reason, timeout=timeout),
            context)
        logger.info("%d stream(s) of subject %r disconnected through the management API: %s",
                    ended, subject[:80], reason)
        return mapper.subject_disconnected(ended)

    def GetHealth(self, request, context):
        return mapper.health(self._ask(self.gateway.health, context))

    def _ask(self, question, context):
        """Ask within the call's own deadline (the gateway's ASK_TIMEOUT if that is sooner);
        abort UNAVAILABLE when the core is stopping or too slow."""
        try:
            return question(context.time_remaining())
        except Unavailable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def _reason(request) -> str:
    """The operator's reason as one line: it is logged, and sent as the stream's last comment."""
    kept = request.reason.strip()[:MAX_REASON]     # cut first: a request may carry 4 MB
    reason = "".join(c if c.isprintable() else " " for c in kept).strip()
    return reason or OPERATOR_REASON
