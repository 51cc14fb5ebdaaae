"""ClientActor: one per connected stream; it holds the client's state and its control.

The client's bytes do not pass through the actor's mailbox: the broker offers each batch's
frames straight to the client's Outbox and the response greenlet takes them from it (measured
in RUNTIME-NOTES.md: one tell per client per batch delivered 45-50k events/s, this 56-63k/s).
Everything else about the client goes through here: it subscribes, it is told to close (an
operator's DisconnectClient, a slow client, shutdown), it unsubscribes when it stops, and its
`summary` is what GetClients lists.
"""
from __future__ import annotations

import logging

import pykka

from actors import framing
from actors.messages import ClientInfo, Close, Subscribe, Unsubscribe
from actors.outbox import Outbox
from actors.replies import ClientSummary

logger = logging.getLogger(__name__)


class ClientActor(pykka.ThreadingActor):
    """One stream's state: `info` (id, address, filter, framing), `outbox` (its buffer, and the
    counters `sent`, `dropped`, `last_id`), `close_reason`; and its control: Close, stop."""

    def __init__(self, *, info: ClientInfo, outbox: Outbox, broker, known: dict | None = None,
                 with_history: bool = True, since_ms: int | None = None, recreated=None):
        super().__init__()
        self.info = info
        self.outbox = outbox
        """Owned by this actor, which closes it. Two more greenlets use it without locks: the
        broker offers events and pushes control frames into it, the stream's response takes
        them out and counts them written. That is safe because all three run on the worker's
        one gevent hub and no Outbox method yields: each call runs to its end before another
        greenlet runs."""
        self.broker = broker
        self.known = known              # the frontier decoded from its Last-Event-ID, if any
        self.with_history = with_history
        self.since_ms = since_ms
        self.recreated = recreated or {}
        self.close_reason: str | None = None

    def on_start(self):
        self.broker.tell(Subscribe(self.info, self.outbox, self.actor_ref, self.known,
                                   self.with_history, self.since_ms, self.recreated))

    def on_receive(self, message):
        match message:
            case Close(reason=reason, final=final):
                self.close_reason = reason
                self.outbox.close(reason, final or framing.comment(f"closing: {reason}"))
            case _:
                return super().on_receive(message)

    def on_stop(self):
        try:
            self.broker.tell(Unsubscribe(self.info.id))
        except pykka.ActorDeadError:
            pass  # shutting down: the broker is gone already
        self.outbox.close(self.close_reason or "stream ended")


def summary(info: ClientInfo, outbox: Outbox) -> ClientSummary:
    """A client as GetClients lists it, from the state its ClientActor holds."""
    flt = info.filter
    return ClientSummary(
        id=info.id,
        remote_addr=info.remote_addr,
        user_agent=info.user_agent,
        filter=flt.describe(),
        event_types=tuple(flt.event_types),
        sources=tuple(flt.sources),
        connected_at=info.connected_at,
        events_sent=outbox.sent,
        events_dropped=outbox.dropped,
        last_event_id=outbox.last_id or "",
        subject=info.subject or "",
        scope=info.scope,
    )
