"""HistoryActor: a ring of the most recent events, replayed to clients that (re)connect.

It knows, per partition, from which offset on it holds every event (`covered`), so it can
tell exactly whether it can serve a resume or whether Kafka has to be read instead. A new
client's replay starts with that coverage as an id-only block: cut during its history, it
resumes from there. A replay shows a stream only what it could have seen live: events its
filter matches that are public or its subject's own.
"""
from __future__ import annotations

import logging
from collections import Counter, deque

import pykka

from actors import framing
from actors.events import visible
from actors.messages import DisconnectClient, GetHistorySize, Remember, Replay, Replayed
from actors.resume import Frontier

logger = logging.getLogger(__name__)

REPLAY_FAILED = "replay failed for this request (the gateway log says why); retry"
MATCHING_KEPT = 256         # (filter, subject) pairs whose matching events are kept, at most
MATCHING_KEPT_EVENTS = 200_000      # and references to events in them (8 bytes each), at most


class HistoryActor(pykka.ThreadingActor):
    def __init__(self, *, size: int, topics=()):
        super().__init__()
        self.size = size
        self.topics = tuple(topics)
        self.events: deque = deque()
        self.covered: dict[tuple[str, int], int] = {}
        self.owners: Counter[str] = Counter()        # owner -> its events in the ring
        self._matching: dict[tuple, tuple] = {}     # (filter, subject) -> matching(), this ring
        self._kept = 0                              # events referenced in _matching
        self._beginning: bytes | None = None        # beginning(), this ring

    def on_receive(self, message):
        match message:
            case Remember(events=events, starts=starts, reset_topics=reset, skips=skips):
                if skips:
                    self.skipped(skips)         # the gap comes before the batch's events
                self.remember(events, starts, reset)
            case Replay():
                try:
                    matching, found = self.replay(message.filter, message.subject,
                                                  message.known)
                    notice = self.beginning() if message.known is None else b""
                except Exception:  # noqa: BLE001 - one stream's failure ends it alone
                    logger.exception("history replay for client %s failed; ending that stream "
                                     "alone (a bug: please report it)", message.client_id)
                    message.reply_to.tell(DisconnectClient(message.client_id, REPLAY_FAILED))
                    return None
                message.reply_to.tell(Replayed(message.client_id, matching, found, notice,
                                               public=not self.owners))
            case GetHistorySize():
                return len(self.events)
            case _:
                return super().on_receive(message)

    def replay(self, flt, subject, known) -> tuple[tuple, bool]:
        """What a stream with this filter and subject has not seen after `known` (None: a new
        stream, the whole ring), and whether the ring holds all of it."""
        if known is not None and not self.holds(known):
            return (), False
        matching = self.matching(flt, subject)
        if known:
            matching = tuple(e for e in matching if e.position.offset
                             >= known.get((e.position.topic, e.position.partition), 0))
        return matching, True

    def matching(self, flt, subject) -> tuple:
        """The ring's events this filter and subject see, kept until the ring changes: a
        reconnect storm asks the same few filters thousands of times between two batches; a
        subject that owns none of the ring sees its public events, kept once for all of them."""
        key = (flt, subject if subject in self.owners else None)
        try:
            found = self._matching.get(key)
        except TypeError:           # an unhashable filter: computed every time
            return self._select(flt, subject)
        if found is None:
            found = self._select(flt, subject)
            if (len(self._matching) >= MATCHING_KEPT
                    or self._kept + len(found) > MATCHING_KEPT_EVENTS):
                self._matching.clear()
                self._kept = 0
            self._matching[key] = found
            self._kept += len(found)
        return found

    def _select(self, flt, subject) -> tuple:
        return tuple(e for e in self.events if flt.matches(e.type, e.source)
                     and visible(e, subject))

    def holds(self, frontier: dict) -> bool:
        """Does the ring hold every event past `frontier` (none from before what it covers)?"""
        return all(frontier.get(key, 0) >= first for key, first in self.covered.items())

    def remember(self, events, starts=None, reset_topics=()) -> None:
        self._changed()
        owners = self.owners
        if reset_topics:
            self.events = deque(e for e in self.events if e.position.topic not in reset_topics)
            owners.clear()
            owners.update(e.owner for e in self.events if e.owner is not None)
            self.covered = {k: o for k, o in self.covered.items() if k[0] not in reset_topics}
        for key, offset in (starts or {}).items():
            self.covered[key] = offset
        self.events.extend(events)
        owners.update(e.owner for e in events if e.owner is not None)
        while len(self.events) > self.size:
            gone = self.events.popleft()
            if gone.owner is not None:
                owners[gone.owner] -= 1
                if not owners[gone.owner]:
                    del owners[gone.owner]
            key = (gone.position.topic, gone.position.partition)
            self.covered[key] = max(self.covered.get(key, 0), gone.position.offset + 1)

    def skipped(self, skips) -> None:
        """The live side skipped records Kafka lost (retention): the ring covers those
        partitions only from where it went on, so a resume from inside the hole reads Kafka,
        whose replay reports the gap. A log cut under the position (a truncated log) loses
        only what lies past the cut, from where the live side reads on."""
        lost = {s.partition: s.resumed for s in skips if s.resumed >= s.requested}
        cut = {s.partition: s.resumed for s in skips if s.resumed < s.requested}

        def kept(event) -> bool:
            p = event.position
            key = (p.topic, p.partition)
            return key not in lost and (key not in cut or p.offset < cut[key])
        self.events = deque(e for e in self.events if kept(e))
        self.owners = Counter(e.owner for e in self.events if e.owner is not None)
        self.covered.update(lost)
        for key, offset in cut.items():
            if key in self.covered:
                self.covered[key] = min(self.covered[key], offset)
        self._changed()

    def _changed(self) -> None:
        """The ring changed: what was kept of it is stale."""
        self._matching.clear()
        self._kept = 0
        self._beginning = None

    def beginning(self) -> bytes:
        """The position just before the ring, as an id-only block (none without topics)."""
        if not self.topics:
            return b""
        if self._beginning is None:     # a reconnect storm asks it thousands of times
            self._beginning = framing.position(Frontier(self.topics, self.covered).token())
        return self._beginning

    def after(self, frontier) -> tuple[list, bool]:
        """Events past `frontier`, and whether the ring holds all of them.

        No frontier (a new client): the whole ring. A frontier from before what the ring
        covers in some partition: nothing here, found=False (read Kafka instead).
        """
        if frontier is None:
            return list(self.events), True
        if not self.holds(frontier):
            return [], False
        return [e for e in self.events
                if e.position.offset >= frontier.get((e.position.topic, e.position.partition), 0)
                ], True

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("history failed: %s (its traceback is above)", exception_value)
