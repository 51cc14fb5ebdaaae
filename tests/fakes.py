"""Stand-ins for Pykka refs and Kafka, for actor tests with mocked mailboxes."""
from __future__ import annotations

import json

import pykka

from actors.client import running
from actors.events import events_from_records
from actors.kafka_reads import Record
from actors.replies import (
    ClientPage, ClientSummary, Health, KafkaStatus, LimiterStats, ServiceStats, Stats,
)
from actors.resume import Frontier


def stop_all() -> None:
    """Stop every actor a test left running, its clients' too (not in pykka's registry), and
    wait for each."""
    for ref in running():
        try:
            ref.stop()
        except pykka.ActorDeadError:
            pass                     # it was stopping by itself
    pykka.ActorRegistry.stop_all()


class FakeRef:
    """Records what is told to it; answers asks from a dict of message type -> reply."""

    def __init__(self, replies=None):
        self.mailbox = []
        self.replies = replies or {}

    def tell(self, message):
        self.mailbox.append(message)

    def ask(self, message, timeout=None, block=True):
        self.mailbox.append(message)
        reply = self.replies[type(message)]
        return reply if block else Answered(reply)

    def of(self, kind):
        return [m for m in self.mailbox if isinstance(m, kind)]

    def is_alive(self):
        return True


class Answered:
    """A Pykka future that already holds its answer (FakeRef.ask with block=False)."""

    def __init__(self, value):
        self.value = value

    def get(self, timeout=None):
        return self.value


def make_record(type_="blog.post.created", source="blog-service", topic="blog.posts",
                partition=0, offset=0, data=None, timestamp_ms=1736164800000) -> Record:
    value = json.dumps({"id": f"e{offset}", "type": type_, "source": source,
                        "timestamp": "2025-01-06T12:00:00Z", "data": data or {"n": offset}})
    return Record(topic, partition, offset, timestamp_ms, value.encode(), ())


def make_event(type_="blog.post.created", source="blog-service", topic="blog.posts",
               partition=0, offset=0, data=None):
    """An event as the consumer makes it: its id is the frontier right after it (its topic's
    partitions below `partition` at 0)."""
    record = make_record(type_, source, topic, partition, offset, data)
    frontier = Frontier((topic,), {(topic, p): 0 for p in range(partition)})
    [event] = events_from_records([record], frontier).events
    return event


class FakeSource:
    """A Kafka source whose partitions and records the test controls."""

    def __init__(self, partitions=(), connected=True, begin=None, end=None):
        self.available = set(partitions)
        self.begin = begin or {}       # first retained offset per partition (default 0)
        self.end = end or {}           # next offset per partition (default 0)
        self.assignments = []          # (partitions, seeks) per assign() call
        self.went_on = []              # seeks per go_on() call
        self.queue: list[Record] = []
        self.is_connected = connected
        self.closed = False
        self.position = {}             # next offset per partition, as the consumer knows it
        self.stalls = {}               # partition -> kafka_source.Stall
        self.denied = set()            # topics the broker's metadata refuses
        self.ids = {}                  # topic -> Kafka topic id (uuid.UUID)
        self.skips = []                # messages.Skip: positions Kafka no longer had
        self.without_leader = set()    # partitions whose leader is down: no offsets to look up
        self.backing_off = []          # back_off() calls: True while the brokers refuse us
        self.unreached_leaders = []    # kafka_reads.Unreached: leaders that no longer let us in
        self.unanswered = set()        # partitions whose offsets look-up times out
        self.by_time = {}              # partition -> first offset at or after the time asked
        self.times_asked = []          # offsets_for_time() calls: the time asked (epoch ms)

    def partitions(self):
        return set(self.available)

    def refresh(self):
        pass

    def leaderless(self, partitions):
        return set(partitions) & self.without_leader

    def unreached(self):
        return list(self.unreached_leaders)

    def bounds(self, partitions):
        for p in set(partitions) & self.without_leader:
            raise KeyError(p)          # what kafka-python 3.0's offset look-up raises
        if set(partitions) & self.unanswered:
            from actors.kafka_reads import OffsetsUnanswered
            raise OffsetsUnanswered(partitions)
        return ({p: self.begin.get(p, 0) for p in partitions},
                {p: self.end.get(p, 0) for p in partitions})

    def offsets_for_time(self, partitions, timestamp_ms):
        self.times_asked.append(timestamp_ms)
        return {p: self.by_time.get(p) for p in partitions}

    def assign(self, partitions, seeks):
        self.assignments.append((set(partitions), dict(seeks)))

    def go_on(self, seeks):
        """Read these partitions from these offsets on, a stall there forgotten."""
        self.went_on.append(dict(seeks))
        self.position.update(seeks)
        for p in seeks:
            self.stalls.pop(p, None)

    def poll(self, timeout_ms):
        records, self.queue = self.queue, []
        return records

    def positions(self):
        return dict(self.position)

    def stalled(self):
        return dict(self.stalls)

    def skipped(self):
        skips, self.skips = self.skips, []
        return skips

    def topic_ids(self):
        return dict(self.ids)

    def unauthorized_topics(self):
        return set(self.denied)

    def highwaters(self):
        return {p: self.end.get(p, 0) for p in self.available}

    def connected(self):
        return self.is_connected

    def back_off(self, refused):
        self.backing_off.append(refused)

    def close(self):
        self.closed = True


# -- the core's gateway, as web/ and rpc/ see it -------------------------------------------
def make_stats(**changes) -> Stats:
    """Broker figures with every field set to something a mapping slip would show."""
    base = dict(
        clients=2, events_consumed=10, events_delivered=17, events_dropped=3, invalid_events=1,
        events_replayed=4, kafka_replays=1, slow_disconnects=1, connections_total=5,
        filter_groups=2, per_topic={"blog.posts": 7, "link.clicks": 3},
        invalid_per_topic={"bad.topic": 1}, tombstones=2, tombstones_per_topic={"blog.posts": 2},
        delivered_per_topic={"blog.posts": 14, "link.clicks": 3},
        dropped_per_topic={"blog.posts": 3}, kafka_lag={"blog.posts:0": 12},
        kafka_state="connected", uptime_seconds=12.5)
    return Stats(**(base | changes))


def make_health(state="connected", warm=True, partitions=(("t", 0),), clients=0,
                detail=None) -> Health:
    if detail is None:
        detail = "" if state == "connected" else "refused"
    return Health(status="ok" if state == "connected" else "degraded",
                  kafka=KafkaStatus(state, detail, tuple(f"{t}:{p}" for t, p in partitions)),
                  clients=clients, warm=warm)


def make_client(n, **changes) -> ClientSummary:
    base = dict(id=f"c{n}", remote_addr="10.0.0.1", user_agent="curl/8",
                filter="event_types=blog.*", event_types=("blog.*",), sources=(),
                connected_at=1736164800.25 + n, events_sent=5, events_dropped=1,
                last_event_id=f"id-{n}", opened=100.5 + n)
    return ClientSummary(**(base | changes))


class FakeGateway:
    """Stands in for actors.gateway.Gateway: answers with the real reply types, records each
    call as (method, arguments) in `calls` and the deadline it was given in `deadlines`.
    `error` (an exception) is raised by every question instead."""

    def __init__(self, *, stats=None, history_size=42, limiter=None, health=None, clients=(),
                 connected=(), stopped=(), error=None, actors=5):
        self.figures = ServiceStats(stats or make_stats(), history_size,
                                    limiter or LimiterStats(), actors)
        self.report = health or make_health()
        self.everyone = list(clients)
        self.connected = set(connected)
        self.stopped = list(stopped)
        self.error = error
        self.calls: list = []
        self.deadlines: list = []

    def _called(self, name, *args, timeout=None):
        self.calls.append((name, *args))
        self.deadlines.append(timeout)
        if self.error is not None:
            raise self.error

    def stats(self, timeout=None) -> ServiceStats:
        self._called("stats", timeout=timeout)
        return self.figures

    def health(self, timeout=None) -> Health:
        self._called("health", timeout=timeout)
        return self.report

    def clients(self, limit, offset=0, after=None, timeout=None) -> ClientPage:
        self._called("clients", limit, offset, *([] if after is None else [after]),
                     timeout=timeout)
        start = offset + (0 if after is None else sum(
            1 for c in self.everyone if (c.opened, c.id) <= tuple(after)))
        return ClientPage(len(self.everyone), tuple(self.everyone[start:start + limit]))

    def disconnect(self, client_id, reason, timeout=None) -> bool:
        self._called("disconnect", client_id, reason, timeout=timeout)
        return client_id in self.connected

    def stopped_actors(self) -> list[str]:
        return list(self.stopped)

    def of(self, name):
        return [call for call in self.calls if call[0] == name]


class DirectRef:
    """A ref to an unstarted actor: ask and tell call on_receive at once."""

    def __init__(self, actor):
        self.actor = actor

    def ask(self, message, timeout=None, block=True):
        answer = self.actor.on_receive(message)
        return answer if block else Answered(answer)

    def tell(self, message):
        self.actor.on_receive(message)
