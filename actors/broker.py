"""BrokerActor: registers clients, fans Kafka batches out to them, and keeps the figures.

Clients with the same filter form a group, so a filter is evaluated once per event and
each group's frames are joined once per batch; every client then gets one chunk per batch.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict

import pykka

from actors import framing
from actors.messages import (
    Beat, CancelReplay, Close, CloseAll, Consumed, DisconnectClient, GetClients, GetHealth,
    GetStats, KafkaLag, KafkaStateChanged, ReadRange, Remember, Replay, Replayed, Subscribe,
    Unsubscribe,
)
from actors.resume import Frontier

logger = logging.getLogger(__name__)

SLOW_CLIENT = "slow client: buffer full"


class _Subscriber:
    __slots__ = ("info", "outbox", "client", "pending", "key", "after", "floor", "until")

    def __init__(self, message: Subscribe, until: dict):
        self.info = message.info
        self.outbox = message.outbox
        self.client = message.client
        self.pending: list = []   # live events held while history is being replayed
        self.key = (message.info.filter, message.info.named)
        self.after = message.after         # the frontier in its Last-Event-ID, if any
        self.floor = message.after or {}   # the client has seen everything before these offsets
        self.until = until        # the live frontier when it subscribed: replays end here

    def unseen(self, event) -> bool:
        p = event.position
        return p.offset >= self.floor.get((p.topic, p.partition), 0)


class BrokerActor(pykka.ThreadingActor):
    def __init__(self, *, history, replay=None, clock=time.time, warm_start=True, topics=(),
                 monotonic=time.monotonic):
        super().__init__()
        self.history = history
        self.replay = replay
        self.topics = tuple(topics)     # KAFKA_TOPICS, for the id a stream opens with
        self.monotonic = monotonic
        self.frontier: dict = {}
        self.behind: dict[str, _Subscriber] = {}   # resumed ahead of this instance's frontier
        # Until the consumer's first (warm) batch, history replays wait for the history to fill.
        self.warming = warm_start
        self.held: list[tuple[_Subscriber, int | None]] = []
        self.unplaced: list[_Subscriber] = []      # live from the start: their id waits too
        self.clock = clock
        self.started_at = clock()
        self.subscribers: dict[str, _Subscriber] = {}
        self.groups: dict[tuple, dict[str, _Subscriber]] = defaultdict(dict)
        self.replaying: dict[str, _Subscriber] = {}
        self.counts = Counter()
        self.per_topic = Counter()
        self.invalid_per_topic = Counter()
        self.tombstones_per_topic = Counter()
        self.delivered_per_topic = Counter()
        self.dropped_per_topic = Counter()
        self.lag: dict = {}
        self.kafka = KafkaStateChanged("connecting")

    def on_receive(self, message):
        match message:
            case Consumed():
                self._consumed(message)
            case Subscribe():
                self._subscribe(message)
            case Replayed():
                self._replayed(message)
            case Unsubscribe(client_id=client_id):
                self._remove(client_id)
            case Beat():
                for sub in self.subscribers.values():
                    sub.outbox.poke(framing.HEARTBEAT)
            case KafkaStateChanged():
                self._kafka_changed(message)
            case KafkaLag(lag=lag):
                self.lag = lag
            case DisconnectClient(client_id=client_id, reason=reason):
                return self._disconnect(client_id, reason)
            case CloseAll(reason=reason):
                for client_id in list(self.subscribers):
                    self._disconnect(client_id, reason)
            case GetStats():
                return self._stats()
            case GetHealth():
                return self._health()
            case GetClients(limit=limit, offset=offset):
                return self._clients(limit, offset)
            case _:
                return super().on_receive(message)

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("broker failed: %s", exception_value, exc_info=exception_value)

    # -- the fan-out path ---------------------------------------------------------------
    def _consumed(self, message: Consumed) -> None:
        events = message.events
        for topic in message.invalid_topics:
            self.invalid_per_topic[topic] += 1
        self.counts["invalid"] += len(message.invalid_topics)
        for topic in message.tombstone_topics:
            self.tombstones_per_topic[topic] += 1
        self.frontier.update(message.frontier)
        if message.reset_topics:
            self._topics_recreated(set(message.reset_topics))
        if events or message.starts or message.reset_topics:
            self.history.tell(Remember(events, message.starts, message.reset_topics))
        if message.warm:
            self.warming = False
            unplaced, self.unplaced = self.unplaced, []
            for sub in unplaced:
                if sub.info.id in self.subscribers:
                    sub.outbox.poke(self._position(self.frontier))
            held, self.held = self.held, []
            for sub, since_ms in held:     # clients that came while the history was filling
                if sub.info.id in self.replaying:
                    sub.until = dict(self.frontier)
                    self._start_replay(sub, since_ms)
        if not events or message.warm:
            return
        self.counts["consumed"] += len(events)
        for event in events:
            self.per_topic[event.position.topic] += 1
        for sub in self.replaying.values():
            flt = sub.info.filter        # held until the replay ends: keep only its events
            sub.pending.extend(e for e in events if flt.matches(e.type, e.source))
        behind = list(self.behind.values())
        overflowed: list[_Subscriber] = []
        now = self.monotonic()
        for (flt, named), members in self.groups.items():
            matched = [e for e in events if flt.matches(e.type, e.source)]
            if not matched:
                continue
            frames = b"".join([e.named for e in matched] if named else [e.plain for e in matched])
            count, last_id, oldest = len(matched), matched[-1].sse_id, matched[0].timestamp_ms
            accepted, before = 0, len(overflowed)
            for sub in members.values():
                if sub.outbox.offer(frames, count, last_id, oldest_ms=oldest, now=now):
                    accepted += 1
                elif sub.outbox.closed_reason is None:   # not keeping up, not just leaving
                    overflowed.append(sub)
            self._count_delivery(matched, accepted, len(overflowed) - before)
        for sub in overflowed:
            self._disconnect(sub.info.id, SLOW_CLIENT)
        for sub in behind:             # after the groups: a sub that catches up joins one
            self._catch_up(sub, events, now)

    def _topics_recreated(self, topics: set) -> None:
        """Offsets of these topics start anew: what a client saw of the old ones says nothing."""
        for sub in self.subscribers.values():
            if any(t in topics for t, _p in sub.floor):
                sub.floor = {k: o for k, o in sub.floor.items() if k[0] not in topics}

    def _count_delivery(self, matched, accepted: int, refused: int) -> None:
        self.counts["delivered"] += len(matched) * accepted
        self.counts["dropped"] += len(matched) * refused
        for topic, n in Counter(e.position.topic for e in matched).items():
            self.delivered_per_topic[topic] += n * accepted
            self.dropped_per_topic[topic] += n * refused

    # -- subscription and the hand-over from history to live ------------------------------
    def _subscribe(self, message: Subscribe) -> None:
        """Register a client; its stream opens with its starting position as an id-only block
        (a new client with history gets the history's from the history; a `since` client none
        until its replay: its URL is its position), so a cut at any moment resumes exactly."""
        sub = _Subscriber(message, dict(self.frontier))
        self.subscribers[sub.info.id] = sub
        self.counts["connections"] += 1
        if message.recreated:
            sub.outbox.poke(self._recreated_notice(message.after or {}, message.recreated))
        if message.after is not None:
            sub.outbox.poke(self._position(message.after))
        if message.since_ms is None and not message.replay:
            if self.warming:
                self.unplaced.append(sub)
            else:
                sub.outbox.poke(self._position(self.frontier))
            self._go_live(sub)
            return
        self.replaying[sub.info.id] = sub
        if self.warming:
            self.held.append((sub, message.since_ms))
        else:
            self._start_replay(sub, message.since_ms)

    def _start_replay(self, sub: _Subscriber, since_ms: int | None) -> None:
        if since_ms is not None:
            self._read_kafka(sub, None, since_ms)
        else:
            self.history.tell(Replay(sub.info.id, sub.info.filter, sub.after,
                                     self.actor_ref))

    def _read_kafka(self, sub: _Subscriber, start, since_ms=None) -> None:
        self.counts["kafka_replays"] += 1
        self.replay.tell(ReadRange(sub.info.id, sub.info.filter, start, sub.until,
                                   self.actor_ref, since_ms, sub.info.remote_addr,
                                   sub.info.named, sub.outbox))

    def _replayed(self, message: Replayed) -> None:
        sub = self.replaying.get(message.client_id)
        if sub is None:
            return
        if not message.found:          # the history cannot serve it: read Kafka
            self._read_kafka(sub, sub.floor)
            return
        del self.replaying[message.client_id]
        self._count_streamed(message.streamed)
        flt = sub.info.filter
        live = [e for e in sub.pending if flt.matches(e.type, e.source) and sub.unseen(e)]
        events = [e for e in message.events if sub.unseen(e)] + live
        sub.pending = []
        frames = message.notice + b"".join(e.named if sub.info.named else e.plain for e in events)
        if frames:
            sub.outbox.offer(frames, len(events), events[-1].sse_id if events else None, force=True)
            self._count_delivery(events, 1, 0)
            self.counts["replayed"] += len(events) - len(live)
        self._go_live(sub)

    def _count_streamed(self, streamed: dict) -> None:
        """Events the replay actor put into the outbox itself, before the hand-over."""
        for topic, n in streamed.items():
            self.delivered_per_topic[topic] += n
            self.counts["delivered"] += n
            self.counts["replayed"] += n

    def _recreated_notice(self, after: dict, recreated: dict) -> bytes:
        """A `gap` event for the partitions of topics re-created since the client's id: they
        resume from their new beginning (what the id held there means nothing any more)."""
        gaps = [("topic_recreated", p, offset, 0) for p, offset in sorted(recreated.items())]
        return framing.gap(Frontier(self.topics, after).token(), gaps)

    def _position(self, offsets: dict) -> bytes:
        return framing.position(Frontier(self.topics, offsets).token()) if self.topics else b""

    def _go_live(self, sub: _Subscriber) -> None:
        if any(self.frontier.get(key, 0) < offset for key, offset in sub.floor.items()
               if key in self.frontier):
            self.behind[sub.info.id] = sub   # this instance lags the one the client came from
        else:
            self.groups[sub.key][sub.info.id] = sub

    def _catch_up(self, sub: _Subscriber, events, now: float) -> None:
        flt = sub.info.filter
        fresh = [e for e in events if flt.matches(e.type, e.source) and sub.unseen(e)]
        if fresh:
            frames = b"".join(e.named if sub.info.named else e.plain for e in fresh)
            if not sub.outbox.offer(frames, len(fresh), fresh[-1].sse_id,
                                    oldest_ms=fresh[0].timestamp_ms, now=now):
                self._count_delivery(fresh, 0, 1)
                self._disconnect(sub.info.id, SLOW_CLIENT)
                return
            self._count_delivery(fresh, 1, 0)
        del self.behind[sub.info.id]
        self._go_live(sub)

    def _remove(self, client_id: str) -> _Subscriber | None:
        sub = self.subscribers.pop(client_id, None)
        if sub is None:
            return None
        if self.replaying.pop(client_id, None) is not None and self.replay is not None:
            self.replay.tell(CancelReplay(client_id))     # its replay may be under way
        self.behind.pop(client_id, None)
        members = self.groups.get(sub.key)
        if members is not None and members.pop(client_id, None) is not None:
            if not members:
                del self.groups[sub.key]
        return sub

    def _disconnect(self, client_id: str, reason: str) -> bool:
        sub = self._remove(client_id)
        if sub is None:
            return False
        if reason == SLOW_CLIENT:
            self.counts["slow_disconnects"] += 1
        sub.client.tell(Close(reason))
        return True

    # -- figures --------------------------------------------------------------------------
    def _kafka_changed(self, message: KafkaStateChanged) -> None:
        if message.state != self.kafka.state:
            log = logger.info if message.state == "connected" else logger.warning
            log("kafka %s -> %s %s", self.kafka.state, message.state, message.detail)
        self.kafka = message

    def _health(self) -> dict:
        healthy = self.kafka.state == "connected"
        return {
            "status": "ok" if healthy else "degraded",
            "kafka": {"state": self.kafka.state, "detail": self.kafka.detail,
                      "partitions": [f"{t}:{p}" for t, p in self.kafka.partitions]},
            "clients": len(self.subscribers),
            "warm": not self.warming,      # the warm start is done (readiness needs it)
        }

    def _stats(self) -> dict:
        return {
            "clients": len(self.subscribers),
            "events_consumed": self.counts["consumed"],
            "events_delivered": self.counts["delivered"],
            "events_dropped": self.counts["dropped"],
            "invalid_events": self.counts["invalid"],
            "events_replayed": self.counts["replayed"],
            "kafka_replays": self.counts["kafka_replays"],
            "slow_disconnects": self.counts["slow_disconnects"],
            "connections_total": self.counts["connections"],
            "filter_groups": len(self.groups),
            "per_topic": dict(self.per_topic),
            "invalid_per_topic": dict(self.invalid_per_topic),
            "tombstones": sum(self.tombstones_per_topic.values()),
            "tombstones_per_topic": dict(self.tombstones_per_topic),
            "delivered_per_topic": dict(self.delivered_per_topic),
            "dropped_per_topic": dict(self.dropped_per_topic),
            "kafka_lag": {f"{t}:{p}": n for (t, p), n in sorted(self.lag.items())},
            "kafka_state": self.kafka.state,
            "uptime_seconds": round(self.clock() - self.started_at, 3),
        }

    def _clients(self, limit: int, offset: int) -> dict:
        subs = sorted(self.subscribers.values(), key=lambda s: (s.info.connected_at, s.info.id))
        page = subs[offset:offset + limit]
        return {"total": len(subs), "clients": [_describe(s) for s in page]}


def _describe(sub: _Subscriber) -> dict:
    info, outbox = sub.info, sub.outbox
    return {
        "id": info.id,
        "remote_addr": info.remote_addr,
        "user_agent": info.user_agent,
        "filter": info.filter.describe(),
        "event_types": list(info.filter.event_types),
        "sources": list(info.filter.sources),
        "connected_at": info.connected_at,
        "events_sent": outbox.sent,
        "events_dropped": outbox.dropped,
        "last_event_id": outbox.last_id or "",
    }
