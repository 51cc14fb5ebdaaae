"""ClientActor: one per connected stream; owns its state, its outbox and its control."""
from __future__ import annotations

import logging

import pykka

from actors import framing
from actors.messages import Close, Subscribe, Unsubscribe

logger = logging.getLogger(__name__)


class ClientActor(pykka.ThreadingActor):
    def __init__(self, *, info, outbox, broker, after=None, replay=True, since_ms=None,
                 recreated=None):
        super().__init__()
        self.recreated = recreated or {}
        self.since_ms = since_ms
        self.info = info
        self.outbox = outbox
        self.broker = broker
        self.after = after
        self.replay = replay
        self.close_reason = None

    def on_start(self):
        self.broker.tell(Subscribe(self.info, self.outbox, self.actor_ref, self.after, self.replay,
                                   self.since_ms, self.recreated))

    def on_receive(self, message):
        match message:
            case Close(reason=reason):
                self.close_reason = reason
                self.outbox.close(reason, framing.comment(f"closing: {reason}"))
            case _:
                return super().on_receive(message)

    def on_stop(self):
        try:
            self.broker.tell(Unsubscribe(self.info.id))
        except pykka.ActorDeadError:
            pass  # shutting down: the broker is gone already
        self.outbox.close(self.close_reason or "stream ended")
