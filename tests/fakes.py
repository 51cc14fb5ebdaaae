"""Stand-ins for Pykka refs and Kafka, for actor tests with mocked mailboxes."""
from __future__ import annotations

import json

from actors.events import event_from_record
from actors.kafka_source import Record


class FakeRef:
    """Records what is told to it; answers asks from a dict of message type -> reply."""

    def __init__(self, replies=None):
        self.mailbox = []
        self.replies = replies or {}

    def tell(self, message):
        self.mailbox.append(message)

    def ask(self, message, timeout=None):
        self.mailbox.append(message)
        return self.replies[type(message)]

    def of(self, kind):
        return [m for m in self.mailbox if isinstance(m, kind)]


def make_event(type_="blog.post.created", source="blog-service", topic="blog.posts",
               partition=0, offset=0, data=None):
    value = json.dumps({"id": f"e{offset}", "type": type_, "source": source,
                        "timestamp": "2025-01-06T12:00:00Z", "data": data or {"n": offset}})
    return event_from_record(topic, partition, offset, 1736164800000, value.encode())


class FakeSource:
    """A Kafka source whose partitions and records the test controls."""

    def __init__(self, partitions=(), connected=True, begin=None, end=None):
        self.available = set(partitions)
        self.begin = begin or {}       # first retained offset per partition (default 0)
        self.end = end or {}           # next offset per partition (default 0)
        self.assignments = []          # (partitions, seeks) per assign() call
        self.queue: list[Record] = []
        self.is_connected = connected
        self.closed = False
        self.position = {}             # next offset per partition, as the consumer knows it
        self.stalls = {}               # partition -> kafka_source.Stall
        self.denied = set()            # topics the broker's metadata refuses
        self.ids = {}                  # topic -> Kafka topic id (uuid.UUID)

    def partitions(self):
        return set(self.available)

    def refresh(self):
        pass

    def bounds(self, partitions):
        return ({p: self.begin.get(p, 0) for p in partitions},
                {p: self.end.get(p, 0) for p in partitions})

    def assign(self, partitions, seeks):
        self.assignments.append((set(partitions), dict(seeks)))

    def poll(self, timeout_ms):
        records, self.queue = self.queue, []
        return records

    def positions(self):
        return dict(self.position)

    def stalled(self):
        return dict(self.stalls)

    def topic_ids(self):
        return dict(self.ids)

    def unauthorized_topics(self):
        return set(self.denied)

    def highwaters(self):
        return {p: self.end.get(p, 0) for p in self.available}

    def connected(self):
        return self.is_connected

    def close(self):
        self.closed = True
