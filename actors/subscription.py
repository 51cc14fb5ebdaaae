"""A subscriber's phase in the hand-over from history to live, and what it has already seen.

Pure: no actors, no I/O. The broker asks a Subscription what to do and does it.

    new --begin--> HELD        the warm start is not done: the history is still filling
        HELD --warmed--> REPLAYING, or LIVE/BEHIND for a client that wants no history
    new --begin--> REPLAYING   history (or Kafka) is being read; live events are held back
        REPLAYING --replayed--> LIVE or BEHIND   the replay, then the held live events, are sent
    new --begin--> LIVE or BEHIND
        BEHIND --caught_up--> LIVE or BEHIND     this instance lags the one the client came from
    LIVE: in its filter group, every batch as one chunk

De-duplication, written once: the client's `known` frontier says it has seen every event
before these offsets (from its Last-Event-ID; None: a new client, it has seen nothing). An
event is `unseen` at or past the known offset of its partition. A replay is read up to `until`,
the live frontier when the replay was asked for; live events after that are held in `pending`
meanwhile, so together they leave no gap and, filtered by `unseen`, no duplicate.

Ids, written once too: an id the client is sent never says less than `known` (`own_ids`). The
ids of this instance's events follow its own order of reading the partitions; a client that
comes from another instance (or from before a restart) may have seen more of a partition than
such an id says, and resuming from it would show those events again. So the first event a
resumed stream is sent here is checked: if its id does not cover `known`, the stream's events
get ids of its own (`ids`: that id raised to `known`, then advanced by each event it is sent)
until it is live, where every id covers `known`.

Visibility, written once too: an event reaches the stream when its filter matches it and it
is public (owner None) or the stream's subject owns it (events.visible); NOBODY's reach no one.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from actors.events import visible, with_id
from actors.auth.scope import ScopedFilter
from actors.filters import Filter
from actors.resume import Frontier, covering


class HeldGap(NamedTuple):
    """A `gap` event of the live side (records Kafka lost), held in its place among the live
    events while the stream replays."""
    frame: bytes
    sse_id: str
    gaps: tuple                 # (reason, (topic, partition), requested, resumed offset) each
    at: dict                    # the live frontier after the gap (sse_id's offsets)


class Phase(enum.Enum):
    NEW = "new"
    HELD = "held"
    REPLAYING = "replaying"
    BEHIND = "behind"
    LIVE = "live"


class Subscription:
    __slots__ = ("filter", "subject", "known", "floor", "ids", "with_history", "since_ms",
                 "until", "pending", "held_bytes", "phase", "short")

    def __init__(self, filter: Filter | ScopedFilter, known: dict | None = None, *,
                 with_history: bool = True, since_ms: int | None = None,
                 subject: str | None = None):
        self.filter = filter
        self.subject = subject or None   # who reads (None: anonymous, sees public events only)
        self.known = known              # frontier the client has seen everything before, or None
        self.floor = known              # known, until an id given to the client covers it
        self.ids: Frontier | None = None    # the stream's own ids, when this instance's do not
        self.with_history = with_history
        self.since_ms = since_ms        # replay Kafka from this time instead of the history
        self.until: dict = {}           # the live frontier when the replay was asked for
        self.pending: list = []         # live events held while replaying
        self.held_bytes = 0             # their frames' bytes
        self.phase = Phase.NEW
        self.short: dict = {}           # partitions its replay could not read: its place there

    @property
    def replays(self) -> bool:
        """Does this client get anything before live (history, or Kafka since a time)?"""
        return self.with_history or self.since_ms is not None

    @property
    def resume_from(self) -> dict:
        """Where a Kafka replay starts when the history cannot serve the known frontier."""
        return self.known or {}

    # -- the de-duplication rules -----------------------------------------------------------
    def unseen(self, event) -> bool:
        p = event.position
        return p.offset >= (self.known or {}).get((p.topic, p.partition), 0)

    def wants(self, event) -> bool:
        """Does the stream want this event at all: its filter and its subject agree?"""
        return self.filter.matches(event.type, event.source) and visible(event, self.subject)

    def fresh(self, events) -> list:
        """The events of a live batch this client wants and has not seen."""
        return [e for e in events if self.wants(e) and self.unseen(e)]

    def lags(self, frontier: dict) -> bool:
        """Is this instance behind what the client has seen, in any partition (one it does
        not read yet counts as at its beginning), or the stream behind it in one its replay
        could not read (`short`)?"""
        return bool(self.short) or any(frontier.get(key, 0) < offset
                                       for key, offset in (self.known or {}).items())

    def stranded(self, events) -> tuple | None:
        """A partition its replay could not read (`short`) that `events` come from: it is
        read again, and the stream can show them only after what it missed there."""
        short = self.short
        for event in events if short else ():
            p = event.position
            if (p.topic, p.partition) in short:
                return (p.topic, p.partition)
        return None

    def past_the_end(self, ends: dict, unread=()) -> dict:
        """The partitions where the client's place is beyond Kafka's end (`ends`, of the
        partitions read now but `unread`), each with that end. No instance issues such a place:
        Kafka's log was truncated (an unclean leader election), or the id was forged or made
        for another cluster."""
        known, short = self.known or {}, self.short
        return {p: end for p, end in ends.items()
                if known.get(p, 0) > end and p not in unread and p not in short}

    def place(self) -> dict:
        """The client's place: what its id said, raised by the ids it was sent since."""
        place = dict(self.known or {})
        for key, offset in (self.ids.offsets if self.ids is not None else {}).items():
            place[key] = max(offset, place.get(key, 0))
        return place

    def started_past(self, starts: dict) -> tuple | None:
        """A partition this instance starts reading (at `starts`: it did not read it when the
        stream was placed) past the stream's place there: what lies between was never read
        for it. (A place of 0 says nothing: this instance's own ids write a partition it does
        not read as 0.)"""
        known, short = self.known or {}, self.short
        for p, offset in starts.items():
            if 0 < short.get(p, known.get(p, 0)) < offset:
                return p
        return None

    def own_ids(self, events, topics) -> Sequence:
        """The events under ids that say at least `known` (the same sequence when this
        instance's ids do)."""
        floor, short = self.floor, self.short
        if not (floor or short) or not events:
            return events
        ids = self.ids
        if ids is None:
            offsets = covering(topics, events[0].sse_id, floor or {}, short)
            if offsets is None:
                self.floor = None
                return events
            ids = self.ids = Frontier(topics, offsets)
        out = []
        for event in events:
            p = event.position
            key = (p.topic, p.partition)
            ids.advance(p.topic, p.partition, max(p.offset + 1, ids.offsets.get(key, 0)))
            out.append(with_id(event, ids.token()))
        return out

    def forget_topics(self, topics: set) -> None:
        """These topics were re-created: what the client saw of the old ones says nothing."""
        if self.known and any(t in topics for t, _p in self.known):
            self.known = {k: o for k, o in self.known.items() if k[0] not in topics}
            self.floor = self.floor and self.known
            self.ids = None             # checked again against the floor without them
        self.short = {k: o for k, o in self.short.items() if k[0] not in topics}

    # -- the transitions --------------------------------------------------------------------
    def begin(self, frontier: dict, warming: bool) -> Phase:
        self._expect(Phase.NEW, "begin")
        if warming:
            return self._to(Phase.HELD)         # warmed() sets `until`
        if not self.replays:
            return self._place(frontier)        # no replay, no `until`: a dict less per stream
        self.until = dict(frontier)
        return self._to(Phase.REPLAYING)

    def warmed(self, frontier: dict) -> Phase:
        """The warm start is done: replay up to the frontier it reached, or go live."""
        self._expect(Phase.HELD, "warmed")
        if not self.replays:
            return self._place(frontier)
        self.until = dict(frontier)
        return self._to(Phase.REPLAYING)

    def hold(self, events, named: bool = True) -> int:
        """A live batch while replaying: keep the matching events for after the replay. The
        bytes held now, in the stream's framing (`named` or plain)."""
        self._expect(Phase.REPLAYING, "hold")
        wanted = [e for e in events if self.wants(e)]
        if wanted:
            self.pending += wanted
            self.held_bytes += sum(len(e.named if named else e.plain) for e in wanted)
        return self.held_bytes

    def hold_gap(self, gap: HeldGap) -> None:
        """The live side skipped records while this stream replays: told in its place."""
        self._expect(Phase.REPLAYING, "hold")
        self.pending.append(gap)

    def replayed(self, events, frontier: dict, short=None,
                 public: bool = False) -> tuple[Sequence, list]:
        """The replay's events and the held live ones (and HeldGaps), both without what the
        client has seen; then live (or behind: `short` names the partitions the replay could
        not read, with the offset the stream stays at there). `public`: none of `events` has
        an owner."""
        self._expect(Phase.REPLAYING, "replayed")
        self.short = dict(short or {})
        subject = self.subject
        if self.known:
            replay = [e for e in events if self.unseen(e) and visible(e, subject)]
            live = [e for e in self.pending if self._unseen_held(e)]
        else:       # a new client has seen nothing: every event is unseen
            replay = events if public else [e for e in events
                                            if e.owner is None or visible(e, subject)]
            if len(replay) == len(events):
                replay = events         # all of it: the history's tuple, shared (actors/blocks.py)
            live = self.pending
        self.pending, self.held_bytes = [], 0
        self._place(frontier)
        return replay, live

    def _unseen_held(self, held) -> bool:
        if isinstance(held, HeldGap):       # a client already past the gap was told elsewhere
            return bool(self.missed(held))
        return self.unseen(held)

    def missed(self, gap: HeldGap) -> list:
        """The parts of `gap` (reason, partition, requested, resumed) where the client had not
        seen all the records lost, each from what it had seen; empty: it had seen past them."""
        known = self.known or {}
        return [(reason, p, max(wanted, known.get(p, 0)), resumed)
                for reason, p, wanted, resumed in gap.gaps if known.get(p, 0) < resumed]

    def gap_id(self, gap: HeldGap, topics) -> str:
        """The id of a live `gap` event for this stream: the gap's, raised (as own_ids raises
        an event's) to what the client had seen and been sent; its later ids go on from it."""
        floor = self.floor
        if not floor and not self.short:
            return gap.sse_id
        floor = floor or {}
        offsets = {**floor, **{k: max(o, floor.get(k, 0)) for k, o in gap.at.items()}}
        for key, offset in (self.ids.offsets if self.ids is not None else {}).items():
            offsets[key] = max(offset, offsets.get(key, 0))
        self.ids = Frontier(topics, {**offsets, **self.short})
        return self.ids.token()

    def caught_up(self, frontier: dict) -> Phase:
        """A live batch was given to a client behind this instance: live once it is level."""
        self._expect(Phase.BEHIND, "caught_up")
        return self._place(frontier)

    def _place(self, frontier: dict) -> Phase:
        return self._to(Phase.BEHIND if self.lags(frontier) else Phase.LIVE)

    def _to(self, phase: Phase) -> Phase:
        self.phase = phase
        return phase

    def _expect(self, phase: Phase, step: str) -> None:
        if self.phase is not phase:
            raise ValueError(f"a subscription cannot be {step} in phase {self.phase}: "
                             f"only in {phase}")
