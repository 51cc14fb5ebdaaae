"""KafkaConsumerActor: reads every partition of the configured topics and feeds the broker.

It polls by telling itself `Poll`, so a stop request interleaves with polling. It never
dies of a Kafka fault: an unreachable broker means backoff and a state the health shows;
when Kafka returns, reading resumes from the exact next offsets.

Every event gets the stream frontier after it as its id (actors/resume.py). At start-up the
last SSE_HISTORY_SIZE events are read back ("warm start") so the history is full at once.
"""
from __future__ import annotations

import logging
import time

import pykka

from actors.events import InvalidRecord, Position, build_event, parse_record
from actors.kafka_source import KafkaSource
from actors.messages import Consumed, KafkaLag, KafkaStateChanged, Poll
from actors.resume import Frontier
from actors.warm import WarmStart

logger = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 50
MAX_BACKOFF_S = 5.0
INVALID_LOG_INTERVAL_S = 10.0
LAG_INTERVAL_S = 5.0


class KafkaConsumerActor(pykka.ThreadingActor):
    def __init__(self, *, settings, broker, source_factory=KafkaSource,
                 clock=time.monotonic, sleep=time.sleep):
        super().__init__()
        self.settings = settings
        self.broker = broker
        self.source_factory = source_factory
        self.clock = clock
        self.sleep = sleep
        self.source = None
        self.state = None
        self.assigned: set = set()
        self.frontier = Frontier(settings.kafka_topics)
        self.warm: WarmStart | None = None
        self.new_starts: dict = {}
        self.backoff = 0.5
        self.next_refresh = 0.0
        self.next_lag_report = 0.0
        self.invalid_logged_at = -INVALID_LOG_INTERVAL_S
        self.invalid_unlogged = 0

    def on_start(self):
        self._set_state("connecting", f"bootstrap {','.join(self.settings.kafka_brokers)}")
        self.actor_ref.tell(Poll())

    def on_receive(self, message):
        match message:
            case Poll():
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - a Kafka fault must not kill the actor
                    logger.exception("kafka poll failed, retrying: %s", exc)
                    self.sleep(1.0)
                self.actor_ref.tell(Poll())
            case _:
                return super().on_receive(message)

    def step(self) -> None:
        """One turn: connect if needed, pick up new partitions, poll, publish."""
        if self.source is None and not self._connect():
            return
        now = self.clock()
        if now >= self.next_refresh:
            interval = self.settings.kafka_metadata_refresh_ms / 1000 if self.assigned else 0.5
            self.next_refresh = now + interval
            self._refresh_assignment()
        records = self.source.poll(POLL_TIMEOUT_MS)
        if self.warm is not None:
            records = self._warming(records)
        if records or self.new_starts:
            self._publish(records)
        if now >= self.next_lag_report:
            self.next_lag_report = now + LAG_INTERVAL_S
            offsets = self.frontier.offsets
            self.broker.tell(KafkaLag({p: max(0, high - offsets.get(p, high))
                                       for p, high in self.source.highwaters().items()}))
        if self.source.connected():
            self._set_state("connected")
        elif self.state != "connecting":
            self._set_state("unreachable", "lost the connection to Kafka; reconnecting")

    def _connect(self) -> bool:
        try:
            self.source = self.source_factory(self.settings)
        except Exception as exc:  # noqa: BLE001 - any bootstrap failure means: try again later
            self._set_state("unreachable", str(exc))
            self.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)
            return False
        self.backoff = 0.5
        self.next_refresh = 0.0
        return True

    def _refresh_assignment(self) -> None:
        found = self.source.partitions()
        self.source.refresh()
        added = found - self.assigned
        if not added:
            return
        begin, end = self.source.bounds(added)
        if not self.assigned:
            # First assignment: live from the end, after reading back the recent history.
            self.warm = WarmStart(self.settings, begin, end, self.clock())
            seeks, live_from = self.warm.seeks(), end
        else:
            # Partitions that appear later are read from their beginning: nothing is missed.
            seeks = live_from = begin
        for (topic, partition), offset in live_from.items():
            self.frontier.advance(topic, partition, offset)
        # Announced at once, so the broker knows where live starts before any record arrives.
        self.new_starts.update(live_from)
        self.source.assign(found | self.assigned, seeks)
        logger.info("assigned %d new partition(s): %s", len(added),
                    ", ".join(f"{t}:{p}" for t, p in sorted(added)))
        self.assigned |= found
        self._set_state("connected", force=True)  # announce the new partitions

    def _warming(self, records):
        """Hold records until the warm start has read up to the ends; then publish it."""
        self.warm.add(records)
        if not self.warm.done(self.clock()):
            return []
        warm, self.warm = self.warm, None
        events, starts, live = warm.finish(self.frontier.topics)
        self.broker.tell(Consumed(tuple(events), (), dict(self.frontier.offsets), starts, warm=True))
        logger.info("warm start: %d recent event(s) in the history", len(events))
        return live

    def _publish(self, records) -> None:
        events, invalid = [], []
        max_bytes = self.settings.sse_max_event_bytes
        frontier = self.frontier
        for r in records:
            frontier.advance(r.topic, r.partition, r.offset + 1)
            try:
                parsed = parse_record(r.topic, r.partition, r.offset, r.timestamp_ms,
                                      r.value, r.headers, max_bytes)
                event = build_event(Position(r.topic, r.partition, r.offset), parsed,
                                    frontier.token())
            except InvalidRecord as exc:
                invalid.append(r.topic)
                self._log_invalid(r, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one odd record must not cost the batch
                invalid.append(r.topic)
                self._log_invalid(r, InvalidRecord(f"cannot be encoded: {exc!r:.120}"))
                continue
            events.append(event)
        starts, self.new_starts = self.new_starts, {}
        self.broker.tell(Consumed(tuple(events), tuple(invalid), dict(frontier.offsets), starts))

    def _log_invalid(self, record, exc) -> None:
        now = self.clock()
        if now - self.invalid_logged_at >= INVALID_LOG_INTERVAL_S:
            more = f" (+{self.invalid_unlogged} more since the last report)" if self.invalid_unlogged else ""
            logger.warning("skipped invalid record at %s:%d:%d: %s%s", record.topic,
                           record.partition, record.offset, exc, more)
            self.invalid_logged_at, self.invalid_unlogged = now, 0
        else:
            self.invalid_unlogged += 1

    def _set_state(self, state: str, detail: str = "", force: bool = False) -> None:
        if state != self.state or force:
            self.state = state
            self.broker.tell(KafkaStateChanged(state, tuple(sorted(self.assigned)), detail))

    def on_stop(self):
        if self.source is not None:
            self.source.close()

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("kafka consumer failed: %s", exception_value, exc_info=exception_value)
        if self.source is not None:
            self.source.close()
