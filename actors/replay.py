"""ReplayActor: serves resumes the history cannot, by reading Kafka itself.

It reads each partition of a stream's gap [from the client's frontier, to the live frontier
when the client subscribed), merges partitions by timestamp (each partition stays in order),
gives every event the frontier after it as its id, and hands the events to the broker, which
appends the live events it held meanwhile. One replay runs at a time, so a reconnect storm
queues here instead of starving live delivery. A gap that Kafka no longer retains, or one
larger than SSE_REPLAY_MAX_EVENTS, starts the replay with a `gap` event saying so.
"""
from __future__ import annotations

import heapq
import json
import logging
import time

import pykka

from actors import framing
from actors.events import InvalidRecord, Position, build_event, parse_record
from actors.kafka_source import KafkaReader
from actors.messages import DisconnectClient, ReadRange, Replayed
from actors.resume import Frontier

logger = logging.getLogger(__name__)

YIELD_EVERY = 256


class ReplayActor(pykka.ThreadingActor):
    def __init__(self, *, settings, reader_factory=KafkaReader):
        super().__init__()
        self.settings = settings
        self.reader_factory = reader_factory
        self.reader = None

    def on_receive(self, message):
        match message:
            case ReadRange():
                try:
                    self.serve(message)
                except Exception as exc:  # noqa: BLE001 - the client retries; we stay up
                    logger.warning("replay for client %s failed: %s", message.client_id, exc)
                    self._drop_reader()
                    message.reply_to.tell(DisconnectClient(
                        message.client_id, "replay unavailable (Kafka unreachable); retry"))
            case _:
                return super().on_receive(message)

    def serve(self, request: ReadRange) -> None:
        started = time.monotonic()
        if self.reader is None:
            self.reader = self.reader_factory(self.settings)
        until = request.until
        begin, _end = self.reader.bounds(set(until))
        start, gaps = self.plan(request, begin)
        records = self.reader.read({p: (start[p], until[p]) for p in until})
        floor = request.start or {}
        frontier = Frontier(self.settings.kafka_topics,
                            {p: max(start[p], floor.get(p, 0)) for p in until})
        notice = _gap_frame(frontier.token(), gaps) if gaps else b""
        events = self.events(records, frontier, request.filter)
        logger.info("replayed %d event(s) of %d record(s) from Kafka for client %s in %.0f ms",
                    len(events), len(records), request.client_id,
                    (time.monotonic() - started) * 1000)
        request.reply_to.tell(Replayed(request.client_id, tuple(events), True, notice))

    def plan(self, request: ReadRange, begin: dict) -> tuple[dict, list]:
        """Where to start in each partition, and the gaps the client must be told about."""
        until = request.until
        if request.since_ms is not None:
            found = self.reader.offsets_for_time(set(until), request.since_ms)
            start = {p: until[p] if found.get(p) is None else found[p] for p in until}
        else:
            start = {p: (request.start or {}).get(p, begin.get(p, 0)) for p in until}
        gaps = []
        for p in until:
            if start[p] < begin.get(p, 0):
                gaps.append(("retention", p, start[p], begin[p]))
                start[p] = begin[p]
            start[p] = min(start[p], until[p])
        total = sum(until[p] - start[p] for p in until)
        limit = self.settings.sse_replay_max_events
        if total > limit:
            for p in until:
                keep = (until[p] - start[p]) * limit // total
                if until[p] - keep > start[p]:
                    gaps.append(("replay_limit", p, start[p], until[p] - keep))
                    start[p] = until[p] - keep
        return start, gaps

    def events(self, records, frontier: Frontier, flt) -> list:
        per_partition: dict = {}
        for r in records:
            per_partition.setdefault((r.topic, r.partition), []).append(r)
        merged = heapq.merge(*per_partition.values(), key=lambda r: r.timestamp_ms)
        out, max_bytes = [], self.settings.sse_max_event_bytes
        for count, r in enumerate(merged):
            if count % YIELD_EVERY == YIELD_EVERY - 1:
                time.sleep(0)          # let live streams run (a gevent yield under gunicorn)
            frontier.advance(r.topic, r.partition, r.offset + 1)
            try:
                parsed = parse_record(r.topic, r.partition, r.offset, r.timestamp_ms, r.value,
                                      r.headers, max_bytes)
            except InvalidRecord:
                continue
            if flt.matches(parsed.type, parsed.source):
                out.append(build_event(Position(r.topic, r.partition, r.offset), parsed,
                                       frontier.token()))
        return out

    def _drop_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def on_stop(self):
        self._drop_reader()


def _gap_frame(sse_id: str, gaps) -> bytes:
    body = {"reason": gaps[0][0], "partitions": [
        {"topic": t, "partition": p, "requested_offset": wanted, "resumed_offset": resumed,
         "reason": reason} for reason, (t, p), wanted, resumed in gaps]}
    return framing.event_frame(sse_id, json.dumps(body, separators=(",", ":")), "gap")
