"""HistoryActor: a ring of the most recent events, replayed to clients that (re)connect."""
from __future__ import annotations

import logging
from collections import deque

import pykka

from actors.messages import GetHistorySize, Remember, Replay, Replayed

logger = logging.getLogger(__name__)


class HistoryActor(pykka.ThreadingActor):
    def __init__(self, *, size: int):
        super().__init__()
        self.events: deque = deque(maxlen=size)

    def on_receive(self, message):
        match message:
            case Remember(events=events):
                self.events.extend(events)
            case Replay():
                events, found = self.after(message.after)
                flt = message.filter
                matching = tuple(e for e in events if flt.matches(e.type, e.source))
                message.reply_to.tell(Replayed(message.client_id, matching, found))
            case GetHistorySize():
                return len(self.events)
            case _:
                return super().on_receive(message)

    def after(self, position) -> tuple[list, bool]:
        """Events after `position`, and whether it was found.

        When it is not held, every event is replayed except those of the same partition
        at or before it (which the client has provably seen).
        """
        if position is None:
            return list(self.events), False
        for index in range(len(self.events) - 1, -1, -1):
            if self.events[index].position == position:
                return list(self.events)[index + 1:], True
        same = (position.topic, position.partition)
        return [e for e in self.events
                if (e.position.topic, e.position.partition) != same
                or e.position.offset > position.offset], False

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("history failed: %s", exception_value, exc_info=exception_value)
