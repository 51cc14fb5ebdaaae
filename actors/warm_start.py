"""Warm start: read back the last SSE_HISTORY_SIZE events when the consumer first assigns.

Each partition is read for its share of SSE_HISTORY_SIZE before its end, and further back
(twice as far each time) while the records read hold fewer events (transaction markers,
aborted transactions, tombstones and invalid records occupy offsets too), and, once they hold
enough, in the partitions whose oldest event read is not older than the newest
SSE_HISTORY_SIZE: 1,000 events of 200 partitions no longer read 1,000 of each. The valid
events are merged by timestamp (keeping each partition's order) and the newest of them fill
the history, with ids computed as if a client had received them in that order.

The invalid records read in what the history covers (each partition from its share of the
history, or from its first event the history holds when that is further back, up to its end)
are counted and logged as live ones are; those read further back only while looking for
events, and those read twice, are not.
"""
from __future__ import annotations

import logging
from array import array
from collections import defaultdict
from operator import attrgetter, itemgetter

from actors.events import (
    InvalidRecord, Position, Tombstone, bare, events_from_records, merge_by_time, parse_record,
    time_order,
)
from actors.kafka_reads import named
from actors.resume import Frontier

logger = logging.getLogger(__name__)

MAX_SECONDS = 10.0


class WarmStart:
    def __init__(self, settings, begin: dict, end: dict, now: float):
        self.size = settings.sse_history_size
        self.max_bytes = settings.sse_max_event_bytes
        self.owner_of = getattr(settings, "auth_subject_field", None)   # SubjectField | None
        self.begin = dict(begin)
        self.end = dict(end)
        # Each partition's share of the history first (further back where it falls short).
        share = -(-self.size // len(end)) if end else 0
        self.starts = {p: max(begin.get(p, 0), end[p] - share) for p in end}
        self.shares = dict(self.starts)  # where each partition's share of the history starts
        self.until = dict(end)          # where the current read of each partition ends
        self.read = {p: (start, start) for p, start in self.starts.items()}  # [from, to) read
        self.pending = {p for p in end if end[p] > self.starts[p]}
        self.cut: set = set()           # partitions whose read was not finished
        self.records: defaultdict[tuple, list] = defaultdict(list)
        self.live: list = []
        # Each partition's invalid records read, once each: their offsets and why (16 bytes
        # each, the reasons' texts shared: not the records, which may be large and many).
        self.skipped: defaultdict[tuple, tuple[array, list]] = defaultdict(
            lambda: (array("q"), []))
        self.reasons: dict[str, str] = {}
        self.invalid: list[tuple[Position, InvalidRecord]] = []   # by finish(): those counted
        self.deadline = now + MAX_SECONDS

    def seeks(self) -> dict:
        return dict(self.starts)

    def add(self, records) -> None:
        for r in records:
            key = (r.topic, r.partition)
            if key not in self.read:
                self.live.append(r)
                continue
            low, high = self.read[key]
            if r.offset >= high:
                self.read[key] = (low, r.offset + 1)
                if r.offset < self.end[key]:
                    self._keep(key, r)
                else:
                    self.live.append(r)
            elif r.offset < low:                # read further back
                self._keep(key, r)
            if r.offset >= self.until[key] - 1:
                self.pending.discard(key)

    def _keep(self, key, record) -> None:
        """Hold a valid record: of each partition, only its newest SSE_HISTORY_SIZE matter;
        note an invalid one (a tombstone is neither)."""
        if not self.size:
            return
        reason = self._invalid(record)
        if reason is not None:
            if not isinstance(reason, Tombstone):
                offsets, reasons = self.skipped[key]
                offsets.append(record.offset)
                reasons.append(self.reasons.setdefault(str(reason), str(reason)))
            return
        kept = self.records[key]
        kept.append(record)
        if len(kept) >= 2 * self.size:
            kept.sort(key=attrgetter("offset"))
            del kept[:-self.size]

    def reached(self, positions: dict, stalled=()) -> None:
        """Partitions read up to their end: by record, or by stepping over transaction markers
        (which occupy offsets but are never records); stalled ones are not waited for."""
        for key in list(self.pending):
            if positions.get(key, -1) >= self.until.get(key, 0):
                self.pending.discard(key)
            elif key in stalled:
                self.pending.discard(key)
                self.cut.add(key)

    def read_back(self, now: float, stalled=()) -> dict:
        """Where to read from further back, once done(), while Kafka holds older records:
        every partition while the history is not full, then those that may hold newer events
        than its oldest; {}: nothing more to read."""
        if now >= self.deadline:
            return {}
        valid = self._valid_records()
        short = len(valid) < self.size
        oldest = time_order(valid[-self.size]) if self.size and not short else None
        seeks = {p: max(self.begin.get(p, 0), 2 * start - self.end[p])
                 for p, start in self.starts.items()
                 if start > self.begin.get(p, 0) and p not in stalled and p not in self.cut
                 and (short or self._may_hold_newer(p, oldest))}
        for p, start in seeks.items():
            self.read[p] = (self.starts[p], self.read[p][1])
            self.until[p], self.starts[p] = self.starts[p], start
        self.pending = set(seeks)
        return seeks

    def _may_hold_newer(self, p, oldest) -> bool:
        """May partition p hold, before what was read of it, events newer than `oldest` (the
        time order of the history's oldest event)? Yes when the oldest event read of it is
        newer (when it is that oldest event, nothing before it can be in the history), or
        when none was read and it was read less deep than the history's size."""
        kept = self.records.get(p)
        if not kept:
            return self.end[p] - self.starts[p] < self.size
        return time_order(min(kept, key=attrgetter("offset"))) > oldest

    def behind(self, positions: dict, stalls: dict) -> dict:
        """Where to go on live in the partitions that stand before what was read: a read
        further back ends inside records read before (read again, they would be published
        twice), or stopped at a batch it could not read (set aside there, the partition
        would never reach its live records), or was cut short at the deadline (its records up
        to the end would come as live ones, below where the broker was told live starts).
        `stalls`: partition -> the offset it stopped at."""
        out = {}
        for p, (low, high) in self.read.items():
            stall = stalls.get(p)
            at, least = (positions.get(p, high), high) if stall is None else (stall, low)
            if stall is None and p in self.cut and at < self.end[p]:
                out[p] = self.end[p]
            elif at < least:
                out[p] = high
        return out

    def done(self, now: float) -> bool:
        if self.pending and now >= self.deadline:
            logger.warning("warm start: gave up waiting after %.0f s for %s: their records not "
                           "read by then are not in the history (new streams do not get them; "
                           "streams held during the start, and clients resuming from before "
                           "them, read them from Kafka); live events go on", MAX_SECONDS,
                           named(self.pending))
            self.cut |= self.pending
            return True
        return not self.pending

    def finish(self, topics) -> tuple[list, dict, list]:
        """(history events, where the history covers each partition from, live records);
        `invalid` then holds the invalid records read in what the history covers."""
        kept = self._valid_records()
        kept = kept[-self.size:] if self.size else []
        covered = dict(self.end)
        for r in kept:
            key = (r.topic, r.partition)
            covered[key] = min(covered[key], r.offset)
        batch = events_from_records(kept, Frontier(topics, covered), self.max_bytes,
                                    self.owner_of)
        self.invalid = self._skipped_from({p: min(self.shares[p], covered[p]) for p in covered})
        self.invalid += [(Position(r.topic, r.partition, r.offset), why)
                         for r, why in batch.invalid]
        for p in self.holes():
            covered[p] = self.end[p]            # so a resume from before reads Kafka
        return batch.events, covered, self.live

    def holes(self) -> set:
        """Partitions not read up to their end: what the history lacks of them is newer than
        some of what it holds."""
        return {p for p in self.cut if self.until[p] == self.end[p]}

    def _valid_records(self) -> list:
        """The valid records read without a gap up to the end, merged by time (a read further
        back that was not finished adds none)."""
        return list(merge_by_time(
            [r for r in sorted(records, key=attrgetter("offset"))
             if p not in self.cut or r.offset >= self.read[p][0]]
            for p, records in self.records.items()))

    def _skipped_from(self, starts: dict) -> list[tuple[Position, InvalidRecord]]:
        """The invalid records read of each partition from `starts` on, in offset order."""
        errors = {reason: InvalidRecord(reason) for reason in self.reasons}
        out = []
        for (topic, partition), (offsets, reasons) in sorted(self.skipped.items()):
            start = starts[topic, partition]
            counted = [(o, r) for o, r in zip(offsets, reasons, strict=True) if o >= start]
            out += [(Position(topic, partition, offset), errors[reason])
                    for offset, reason in sorted(counted, key=itemgetter(0))]
        return out

    def _invalid(self, record) -> InvalidRecord | None:
        """Why the record cannot be an event (None: it can)."""
        try:
            parse_record(record, self.max_bytes)
        except InvalidRecord as exc:
            return bare(exc)
        return None
