"""ManagementServicer: the calls of sse.SSEManagementService, each one ask of an actor.

A handler checks its request, asks the broker or the history by message (with a timeout),
and hands the reply to rpc.mapper. It never reads another object's state. Failures are
gRPC statuses with a sentence that says what to do:

    INVALID_ARGUMENT  a negative limit or offset, an empty client_id
    NOT_FOUND         DisconnectClient of an id that is not connected
    UNAVAILABLE       the actor system is stopping, or did not answer in time (retry)
"""
from __future__ import annotations

import logging

import grpc
import pykka

from actors.messages import DisconnectClient, GetClients, GetHealth, GetHistorySize, GetStats
from rpc import mapper, sse_pb2_grpc

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_REASON = 200
OPERATOR_REASON = "disconnected by operator"


class ManagementServicer(sse_pb2_grpc.SSEManagementServiceServicer):
    def __init__(self, *, broker, history, stopping=None, ask_timeout: float = ASK_TIMEOUT):
        self.broker = broker
        self.history = history
        self.stopping = stopping            # a threading.Event, set while the system stops
        self.ask_timeout = ask_timeout

    def GetStats(self, request, context):
        figures = self._ask(self.broker, GetStats(), context)
        history_size = self._ask(self.history, GetHistorySize(), context)
        return mapper.stats(figures, history_size)

    def GetClients(self, request, context):
        limit = request.limit if request.HasField("limit") else DEFAULT_LIMIT
        if limit < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit must be 0 or more (got {limit}); leave it out for "
                          f"{DEFAULT_LIMIT}, at most {MAX_LIMIT} are returned")
        if request.offset < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"offset must be 0 or more (got {request.offset})")
        limit = min(limit, MAX_LIMIT)
        reply = self._ask(self.broker, GetClients(limit, request.offset), context)
        return mapper.clients(reply, limit, request.offset)

    def DisconnectClient(self, request, context):
        client_id = request.client_id.strip()
        if not client_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "client_id is required (GetClients lists the connected ids)")
        reason = request.reason.strip()[:MAX_REASON] or OPERATOR_REASON
        if not self._ask(self.broker, DisconnectClient(client_id, reason), context):
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no connected client has the id {client_id[:80]!r}; "
                          "GetClients lists the connected ids")
        logger.info("client %s disconnected through the management API: %s", client_id, reason)
        return mapper.disconnected(client_id)

    def GetHealth(self, request, context):
        return mapper.health(self._ask(self.broker, GetHealth(), context))

    def _ask(self, ref, message, context):
        """Ask `ref`, within the call's own deadline if that is sooner; abort on failure."""
        if self.stopping is not None and self.stopping.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is stopping; retry shortly")
        timeout = self.ask_timeout
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = max(0.01, min(timeout, remaining))
        try:
            return ref.ask(message, timeout=timeout)
        except pykka.ActorDeadError:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is stopping; retry shortly")
        except pykka.Timeout:
            logger.warning("%s: no answer to %s within %.2f s", type(self).__name__,
                           type(message).__name__, timeout)
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          "the service is overloaded and did not answer in time; retry")
