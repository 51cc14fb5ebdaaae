"""Warm start: read back the last SSE_HISTORY_SIZE events when the consumer first assigns.

Each partition is read from at most SSE_HISTORY_SIZE records before its end; the valid
events are merged by timestamp (keeping each partition's order) and the newest of them fill
the history, with ids computed as if a client had received them in that order.
"""
from __future__ import annotations

import heapq
import logging
from collections import defaultdict

from actors.events import InvalidRecord, Position, build_event, parse_record
from actors.resume import Frontier

logger = logging.getLogger(__name__)

MAX_SECONDS = 10.0


class WarmStart:
    def __init__(self, settings, begin: dict, end: dict, now: float):
        self.size = settings.sse_history_size
        self.max_bytes = settings.sse_max_event_bytes
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
        per_partition = []
        for key, records in self.records.items():
            valid = []
            for r in records:
                try:
                    parsed = parse_record(r.topic, r.partition, r.offset, r.timestamp_ms,
                                          r.value, r.headers, self.max_bytes)
                except InvalidRecord:
                    continue
                valid.append((parsed.timestamp_ms, key, r.offset, parsed))
            per_partition.append(valid)
        kept = list(heapq.merge(*per_partition, key=lambda item: item[0]))
        kept = kept[-self.size:] if self.size else []
        covered = dict(self.end)
        for _ts, key, offset, _parsed in kept:
            covered[key] = min(covered[key], offset)
        frontier = Frontier(topics, covered)
        events = []
        for _ts, (topic, partition), offset, parsed in kept:
            frontier.advance(topic, partition, offset + 1)
            events.append(build_event(Position(topic, partition, offset), parsed, frontier.token()))
        return events, covered, self.live
