"""HistoryActor: a ring of the most recent events, replayed to clients that (re)connect.

It knows, per partition, from which offset on it holds every event (`covered`), so it can
tell exactly whether it can serve a resume or whether Kafka has to be read instead. A new
client's replay starts with that coverage as an id-only block: cut during its history, it
resumes from there. A replay shows a stream only what it could have seen live: events its
filter matches that are public or its subject's own.
"""
from __future__ import annotations

import logging
from collections import deque

import pykka

from actors import framing
from actors.events import visible
from actors.messages import GetHistorySize, Remember, Replay, Replayed
from actors.resume import Frontier

logger = logging.getLogger(__name__)


class HistoryActor(pykka.ThreadingActor):
    def __init__(self, *, size: int, topics=()):
        super().__init__()
        self.size = size
        self.topics = tuple(topics)
        self.events: deque = deque()
        self.covered: dict[tuple[str, int], int] = {}

    def on_receive(self, message):
        match message:
            case Remember(events=events, starts=starts, reset_topics=reset):
                self.remember(events, starts, reset)
            case Replay():
                events, found = self.after(message.known)
                flt, subject = message.filter, message.subject
                matching = tuple(e for e in events if flt.matches(e.type, e.source)
                                 and visible(e, subject))
                notice = self.beginning() if message.known is None else b""
                message.reply_to.tell(Replayed(message.client_id, matching, found, notice))
            case GetHistorySize():
                return len(self.events)
            case _:
                return super().on_receive(message)

    def remember(self, events, starts=None, reset_topics=()) -> None:
        if reset_topics:
            self.events = deque(e for e in self.events if e.position.topic not in reset_topics)
            self.covered = {k: o for k, o in self.covered.items() if k[0] not in reset_topics}
        for key, offset in (starts or {}).items():
            self.covered[key] = offset
        self.events.extend(events)
        while len(self.events) > self.size:
            gone = self.events.popleft().position
            self.covered[(gone.topic, gone.partition)] = gone.offset + 1

    def beginning(self) -> bytes:
        """The position just before the ring, as an id-only block (none without topics)."""
        if not self.topics:
            return b""
        return framing.position(Frontier(self.topics, self.covered).token())

    def after(self, frontier) -> tuple[list, bool]:
        """Events past `frontier`, and whether the ring holds all of them.

        No frontier (a new client): the whole ring. A frontier from before what the ring
        covers in some partition: nothing here, found=False (read Kafka instead).
        """
        if frontier is None:
            return list(self.events), True
        for key, first in self.covered.items():
            if frontier.get(key, 0) < first:
                return [], False
        return [e for e in self.events
                if e.position.offset >= frontier.get((e.position.topic, e.position.partition), 0)
                ], True

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("history failed: %s", exception_value, exc_info=exception_value)
