"""The broker's figures: what it consumed, delivered, dropped and replayed, and Kafka's lag.

Only the broker's greenlet writes them; `stats()` turns them into the typed reply.
"""
from __future__ import annotations

import time
from collections import Counter

from actors.replies import Stats


class Figures:
    __slots__ = ("clock", "started_at", "started_wall", "consumed", "delivered", "dropped",
                 "invalid", "replayed", "kafka_replays", "slow_disconnects", "connections",
                 "per_topic", "invalid_per_topic", "tombstones_per_topic", "delivered_per_topic",
                 "dropped_per_topic", "lag", "unowned")

    def __init__(self, clock=time.monotonic, wall=time.time):
        self.clock = clock          # for the uptime: a step of the wall clock is no time run
        self.started_at = clock()
        self.started_wall = round(wall(), 3)    # the start as a Unix time, read once
        self.consumed = self.delivered = self.dropped = self.invalid = self.unowned = 0
        self.replayed = self.kafka_replays = self.slow_disconnects = self.connections = 0
        self.per_topic: Counter = Counter()
        self.invalid_per_topic: Counter = Counter()
        self.tombstones_per_topic: Counter = Counter()
        self.delivered_per_topic: Counter = Counter()
        self.dropped_per_topic: Counter = Counter()
        self.lag: dict = {}         # (topic, partition) -> records behind the partition's end

    def count_skipped(self, invalid_topics, tombstone_topics) -> None:
        """Records that were no events: invalid ones, and tombstones (one topic each)."""
        for topic in invalid_topics:
            self.invalid_per_topic[topic] += 1
        self.invalid += len(invalid_topics)
        for topic in tombstone_topics:
            self.tombstones_per_topic[topic] += 1

    def count_consumed(self, events) -> None:
        """The events of a live batch."""
        self.consumed += len(events)
        for event in events:
            self.per_topic[event.position.topic] += 1

    def count_delivery(self, matched, accepted: int, refused: int) -> None:
        """`matched` given to `accepted` clients and refused by `refused` (too slow)."""
        self.delivered += len(matched) * accepted
        self.dropped += len(matched) * refused
        for topic, n in Counter(e.position.topic for e in matched).items():
            self.delivered_per_topic[topic] += n * accepted
            self.dropped_per_topic[topic] += n * refused

    def count_streamed(self, streamed: dict) -> None:
        """Replayed events given to one client, per topic (by the broker, or by the replay
        actor into the outbox itself)."""
        for topic, n in streamed.items():
            self.delivered_per_topic[topic] += n
            self.delivered += n
            self.replayed += n

    def stats(self, *, clients: int, filter_groups: int, kafka_state: str) -> Stats:
        return Stats(
            clients=clients,
            events_consumed=self.consumed,
            events_delivered=self.delivered,
            events_dropped=self.dropped,
            invalid_events=self.invalid,
            events_replayed=self.replayed,
            kafka_replays=self.kafka_replays,
            slow_disconnects=self.slow_disconnects,
            connections_total=self.connections,
            filter_groups=filter_groups,
            per_topic=dict(self.per_topic),
            invalid_per_topic=dict(self.invalid_per_topic),
            tombstones=sum(self.tombstones_per_topic.values()),
            tombstones_per_topic=dict(self.tombstones_per_topic),
            unowned_events=self.unowned,
            delivered_per_topic=dict(self.delivered_per_topic),
            dropped_per_topic=dict(self.dropped_per_topic),
            kafka_lag={f"{t}:{p}": n for (t, p), n in sorted(self.lag.items())},
            kafka_state=kafka_state,
            uptime_seconds=round(self.clock() - self.started_at, 3),
            started_at=self.started_wall,
        )
