"""LiveStreams: the broker's live streams, and how a batch of events reaches them.

Streams with the same filter and naming (`named`) form a group, so a filter is evaluated once
per event and each group's frames are joined once per batch; every stream then gets one chunk
per batch.

Private events (auth with AUTH_SUBJECT_FIELD): an event with an owner reaches only its
subject's streams. The groups' frames hold only the public events; the live streams of a
subject that owns events of the batch are found through `subjects` (a SubjectIndex, no scan of
every stream) and each gets one chunk of its public and its own events in the batch's order
(ids are frontier tokens: out of order, a resume would skip events). A batch without owned
events costs one check.
"""
from __future__ import annotations

from collections import defaultdict

from actors.auth.subjects import SubjectIndex
from actors.events import frames_of
from actors.figures import Figures

NONE_SHARED: tuple = ((), b"")    # a group with no public event in the batch


class LiveStreams:
    """The live streams (the broker's subscribers: `info`, `outbox`, `key`, `subscription`),
    by group and by subject."""

    __slots__ = ("groups", "subjects", "figures")

    def __init__(self, figures: Figures):
        self.groups: dict[tuple, dict] = defaultdict(dict)    # (filter, named) -> id -> sub
        self.subjects: SubjectIndex[str] = SubjectIndex()     # subject -> live stream ids
        self.figures = figures

    def add(self, sub) -> None:
        self.groups[sub.key][sub.info.id] = sub
        if sub.subscription.subject:
            self.subjects.add(sub.subscription.subject, sub.info.id)

    def remove(self, sub) -> None:
        if sub.subscription.subject:
            self.subjects.remove(sub.subscription.subject, sub.info.id)
        members = self.groups.get(sub.key)
        if members is not None and members.pop(sub.info.id, None) is not None:
            if not members:
                del self.groups[sub.key]

    def __iter__(self):
        for members in self.groups.values():
            yield from members.values()

    def public(self, events, now: float, overflowed: list, skip=frozenset(),
               shared: dict | None = None) -> None:
        """Public events to the groups: each group's frames joined once; the streams that could
        not take theirs (not keeping up) are added to `overflowed`. Members in `skip` are
        served by `owned`; `shared` (if given) keeps each group's matches."""
        count_delivery = self.figures.count_delivery
        for key, members in self.groups.items():
            flt, named = key
            matched = [e for e in events if flt.matches(e.type, e.source)]
            if not matched:
                continue
            frames = frames_of(matched, named)
            if shared is not None:
                shared[key] = (matched, frames)
            count, last_id, oldest = len(matched), matched[-1].sse_id, matched[0].timestamp_ms
            accepted, before = 0, len(overflowed)
            for sub in (members.values() if not skip else
                        [s for s in members.values() if s.info.id not in skip]):
                if sub.outbox.offer(frames, count, last_id, oldest_ms=oldest, now=now):
                    accepted += 1
                elif sub.outbox.closed_reason is None:   # not keeping up, not just leaving
                    overflowed.append(sub)
            count_delivery(matched, accepted, len(overflowed) - before)

    def owned(self, events, now: float, overflowed: list, subscribers: dict) -> None:
        """A batch with owned events: the public ones to the groups, except the streams of
        subjects owning some of the batch, which get their public and own events merged
        (`subscribers`: id -> subscriber, of every stream)."""
        public: list = []
        own: dict[str, list] = {}           # subject -> its events, if it has live streams
        streams: dict[str, frozenset] = {}  # owner -> its live streams (looked up once)
        clients_of = self.subjects.clients_of
        for e in events:
            owner = e.owner
            if owner is None:
                public.append(e)
                continue
            owned = own.get(owner)
            if owned is not None:
                owned.append(e)
            elif owner not in streams:
                streams[owner] = clients_of(owner)  # NOBODY ("") and absent subjects: none
                if streams[owner]:
                    own[owner] = [e]
        shared: dict = {}
        if public:
            skip = {client_id for subject in own for client_id in streams[subject]}
            self.public(public, now, overflowed, skip, shared)
        rank: dict | None = None
        delivered: list = []        # every event of every accepted chunk, counted once below
        refused: list = []
        for subject, owned in own.items():
            for client_id in streams[subject]:
                sub = subscribers[client_id]
                key = sub.key
                flt, named = key
                mine = [e for e in owned if flt.matches(e.type, e.source)]
                theirs, frames = shared.get(key, NONE_SHARED) if shared else NONE_SHARED
                if not mine:
                    if not theirs:
                        continue
                    chunk = theirs
                else:
                    if theirs:
                        if rank is None:
                            rank = {id(e): i for i, e in enumerate(events)}
                        chunk = sorted([*theirs, *mine], key=lambda e: rank[id(e)])
                    else:
                        chunk = mine
                    frames = frames_of(chunk, named)
                if sub.outbox.offer(frames, len(chunk), chunk[-1].sse_id,
                                    oldest_ms=chunk[0].timestamp_ms, now=now):
                    delivered += chunk
                elif sub.outbox.closed_reason is None:
                    refused += chunk
                    overflowed.append(sub)
        if delivered:
            self.figures.count_delivery(delivered, 1, 0)
        if refused:
            self.figures.count_delivery(refused, 0, 1)
