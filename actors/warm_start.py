"""Warm start: read back the last SSE_HISTORY_SIZE events when the consumer first assigns.

Each partition is read from at most SSE_HISTORY_SIZE records before its end; the valid
events are merged by timestamp (keeping each partition's order) and the newest of them fill
the history, with ids computed as if a client had received them in that order.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from actors.events import InvalidRecord, events_from_records, merge_by_time, parse_record
from actors.resume import Frontier

logger = logging.getLogger(__name__)

MAX_SECONDS = 10.0


class WarmStart:
    def __init__(self, settings, begin: dict, end: dict, now: float):
        self.size = settings.sse_history_size
        self.max_bytes = settings.sse_max_event_bytes
        self.owner_of = getattr(settings, "auth_subject_field", None)   # SubjectField | None
        self.end = dict(end)
        self.starts = {p: max(begin.get(p, 0), end[p] - self.size) for p in end}
        self.pending = {p for p in end if end[p] > self.starts[p]}
        self.records: defaultdict[tuple, list] = defaultdict(list)
        self.live: list = []
        self.deadline = now + MAX_SECONDS

    def seeks(self) -> dict:
        return dict(self.starts)

    def add(self, records) -> None:
        for r in records:
            key = (r.topic, r.partition)
            end = self.end.get(key, 0)
            (self.records[key] if r.offset < end else self.live).append(r)
            if r.offset >= end - 1:
                self.pending.discard(key)

    def reached(self, positions: dict, stalled=()) -> None:
        """Partitions read up to their end: by record, or by stepping over transaction markers
        (which occupy offsets but are never records); stalled ones are not waited for."""
        for key in list(self.pending):
            if positions.get(key, -1) >= self.end.get(key, 0) or key in stalled:
                self.pending.discard(key)

    def done(self, now: float) -> bool:
        if self.pending and now >= self.deadline:
            logger.warning("warm start: gave up waiting for %s", sorted(self.pending))
            return True
        return not self.pending

    def finish(self, topics) -> tuple[list, dict, list]:
        """(history events, where the history covers each partition from, live records)."""
        valid = [[r for r in records if self._valid(r)] for records in self.records.values()]
        kept = list(merge_by_time(valid))
        kept = kept[-self.size:] if self.size else []
        covered = dict(self.end)
        for r in kept:
            key = (r.topic, r.partition)
            covered[key] = min(covered[key], r.offset)
        batch = events_from_records(kept, Frontier(topics, covered), self.max_bytes,
                                    self.owner_of)
        return batch.events, covered, self.live

    def _valid(self, record) -> bool:
        try:
            parse_record(record, self.max_bytes)
        except InvalidRecord:
            return False
        return True
