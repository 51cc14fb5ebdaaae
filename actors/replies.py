"""The core's answers to the edge's questions, as frozen dataclasses.

The broker answers GetStats with `Stats`, GetHealth with `Health`, GetClients with
`ClientPage`; the limiter answers GetLimiterStats with `LimiterStats`. `actors.gateway` adds
the history's size, the limiter's figures and the number of actors to make `ServiceStats`,
the body of GET /stats. Each `to_json()` returns exactly the JSON the HTTP API has always
shown; rpc/mapper.py and web/metrics.py read the fields.

With several workers (actors/instance.py) each worker answers for itself and the functions at
the end combine the answers into the instance's: combine_stats, combine_health, merge_pages.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True, slots=True)
class Stats:
    """The broker's figures. Per-topic dicts are keyed by topic; `kafka_lag` by "topic:p"."""
    clients: int = 0
    events_consumed: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    invalid_events: int = 0
    events_replayed: int = 0
    kafka_replays: int = 0
    slow_disconnects: int = 0
    connections_total: int = 0
    filter_groups: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    invalid_per_topic: dict[str, int] = field(default_factory=dict)
    tombstones: int = 0
    tombstones_per_topic: dict[str, int] = field(default_factory=dict)
    unowned_events: int = 0     # AUTH_SUBJECT_FIELD there but naming no subject: no stream's
    delivered_per_topic: dict[str, int] = field(default_factory=dict)
    dropped_per_topic: dict[str, int] = field(default_factory=dict)
    kafka_lag: dict[str, int] = field(default_factory=dict)
    kafka_state: str = "connecting"
    uptime_seconds: float = 0.0
    started_at: float = 0.0     # Unix time the instance started, fixed (0: a peer did not say)

    def to_json(self) -> dict:
        return {
            "clients": self.clients,
            "events_consumed": self.events_consumed,
            "events_delivered": self.events_delivered,
            "events_dropped": self.events_dropped,
            "invalid_events": self.invalid_events,
            "events_replayed": self.events_replayed,
            "kafka_replays": self.kafka_replays,
            "slow_disconnects": self.slow_disconnects,
            "connections_total": self.connections_total,
            "filter_groups": self.filter_groups,
            "per_topic": dict(self.per_topic),
            "invalid_per_topic": dict(self.invalid_per_topic),
            "tombstones": self.tombstones,
            "tombstones_per_topic": dict(self.tombstones_per_topic),
            "unowned_events": self.unowned_events,
            "delivered_per_topic": dict(self.delivered_per_topic),
            "dropped_per_topic": dict(self.dropped_per_topic),
            "kafka_lag": dict(self.kafka_lag),
            "kafka_state": self.kafka_state,
            "uptime_seconds": self.uptime_seconds,
            "started_at": self.started_at,
        }


# Every reason the limiter counts a refusal under (actors/limiter.py, shared_limits.cap_refusal):
# /metrics shows each from 0, so the first refusal of a kind is an increase Prometheus sees.
REFUSALS = ("rate_limited", "too_many_streams_per_ip", "too_many_streams_per_subject",
            "too_many_streams", "overloaded")


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """The rate limiter's figures; `refused` counts refusals by reason."""
    enabled: bool = False
    streams: int = 0
    addresses_streaming: int = 0
    buckets: int = 0
    buckets_evicted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    subjects_streaming: int = 0      # subjects holding a stream (0 without a per-subject cap)

    def to_json(self) -> dict:
        return {
            "enabled": self.enabled,
            "streams": self.streams,
            "addresses_streaming": self.addresses_streaming,
            "subjects_streaming": self.subjects_streaming,
            "buckets": self.buckets,
            "buckets_evicted": self.buckets_evicted,
            "refused": dict(self.refused),
        }


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """Everything GET /stats shows: the broker's figures and three figures from elsewhere."""
    broker: Stats
    history_size: int
    limiter: LimiterStats
    actors: int

    def to_json(self) -> dict:
        return {**self.broker.to_json(), "history_size": self.history_size,
                "limiter": self.limiter.to_json(), "actors": self.actors}


@dataclass(frozen=True, slots=True)
class KafkaStatus:
    state: str                       # connecting | connected | unreachable | unauthorized
    detail: str = ""
    partitions: tuple[str, ...] = ()     # "topic:partition" assigned to this instance

    def to_json(self) -> dict:
        return {"state": self.state, "detail": self.detail, "partitions": list(self.partitions)}


@dataclass(frozen=True, slots=True)
class Health:
    """GET /health: `status` is "ok" while Kafka is connected, else "degraded" (also while a
    core actor has stopped: with_stopped); `warm` is True once the warm start is done
    (readiness needs it)."""
    status: str
    kafka: KafkaStatus
    clients: int = 0
    warm: bool = True
    keys_pending: str = ""      # why no token can be verified yet (subscriber auth's JWKS)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def not_ready(self) -> str:
        """Why the instance should not get clients yet ("" when ready): /readyz and the gRPC
        health service both answer by it."""
        if self.keys_pending:
            return self.keys_pending
        kafka = self.kafka
        if kafka.state != "connected":
            return f"kafka is {kafka.state}" + (f" ({kafka.detail})" if kafka.detail else "")
        if not self.ok:                 # connected, but a worker of the instance is silent
            return kafka.detail or "not every worker of the instance answered"
        if not kafka.partitions:
            return ("kafka is connected but has no partition of KAFKA_TOPICS yet: create the "
                    "topics or correct KAFKA_TOPICS")
        if not self.warm:
            return "warm start: reading the recent history from Kafka"
        return ""

    def to_json(self) -> dict:
        return {"status": self.status, "kafka": self.kafka.to_json(), "clients": self.clients,
                "warm": self.warm}


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """One connected client, as GetClients lists it."""
    id: str
    remote_addr: str
    user_agent: str
    filter: str = ""                 # the filter as the client wrote it, described
    event_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    connected_at: float = 0.0        # Unix time
    events_sent: int = 0
    events_dropped: int = 0
    last_event_id: str = ""
    subject: str = ""                # who reads it ("" anonymous or auth off); never a token
    scope: str = ""                  # the subject's scope, described
    opened: float = 0.0              # time.monotonic() at the connect (client_order)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "remote_addr": self.remote_addr,
            "user_agent": self.user_agent,
            "filter": self.filter,
            "event_types": list(self.event_types),
            "sources": list(self.sources),
            "connected_at": self.connected_at,
            "events_sent": self.events_sent,
            "events_dropped": self.events_dropped,
            "last_event_id": self.last_event_id,
            "subject": self.subject,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class ClientPage:
    """A page of connected clients, oldest first, and how many there are in all."""
    total: int
    clients: tuple[ClientSummary, ...] = ()

    def to_json(self) -> dict:
        return {"total": self.total, "clients": [c.to_json() for c in self.clients]}


# -- one instance of several workers ----------------------------------------------------------
KAFKA_STATES = ("connected", "connecting", "unreachable", "unauthorized")   # best to worst
PER_RECORD = ("events_consumed", "invalid_events", "tombstones", "per_topic",
              "invalid_per_topic", "tombstones_per_topic", "unowned_events", "kafka_lag")
_LIMITER_TABLE = ("streams", "addresses_streaming", "subjects_streaming", "buckets",
                  "buckets_evicted")


def worst_kafka_state(states: Sequence[str]) -> str:
    """The worst of the workers' Kafka states (an unknown state counts as the worst)."""
    rank = {state: n for n, state in enumerate(KAFKA_STATES)}
    return max(states, key=lambda state: rank.get(state, len(KAFKA_STATES)))


def _sum_counts(dicts) -> dict:
    total: dict = {}
    for counts in dicts:
        for key, count in counts.items():
            total[key] = total.get(key, 0) + count
    return total


def _max_counts(dicts) -> dict:
    return {key: max(d[key] for d in dicts if key in d) for d in dicts for key in d}


def combine_broker_stats(parts: Sequence[Stats]) -> Stats:
    """Every worker reads every record of the topics, so the counts of records read
    (PER_RECORD) and `kafka_lag` are the largest of any worker (the instance read each event
    once, as far as its clients can tell); the counts of clients, deliveries, drops and
    replays are summed; `kafka_state` is the worst, `uptime_seconds` and `started_at` the
    oldest worker's."""
    combined: dict[str, Any] = {}
    for spec in fields(Stats):
        values = [getattr(part, spec.name) for part in parts]
        if spec.name in PER_RECORD:
            combined[spec.name] = (_max_counts(values) if isinstance(values[0], dict)
                                   else max(values))
        elif spec.name == "kafka_state":
            combined[spec.name] = worst_kafka_state(values)
        elif spec.name == "uptime_seconds":
            combined[spec.name] = max(values)
        elif spec.name == "started_at":     # the oldest's: another's wall clock may have stepped
            known = [part for part in parts if part.started_at]
            combined[spec.name] = (max(known, key=lambda part: part.uptime_seconds).started_at
                                   if known else 0.0)
        elif isinstance(values[0], dict):
            combined[spec.name] = _sum_counts(values)
        else:
            combined[spec.name] = sum(values)
    return Stats(**combined)


def combine_limiter_stats(parts: Sequence[LimiterStats]) -> LimiterStats:
    """With several workers the limiter's tables are shared (actors/shared_limits.py): every
    worker reads the same instance-wide figures, so they are taken from the first part (the
    worker answering the call); `refused` counts each worker's own refusals and is summed."""
    first = parts[0]
    return LimiterStats(enabled=any(part.enabled for part in parts),
                        refused=_sum_counts(part.refused for part in parts),
                        **{name: getattr(first, name) for name in _LIMITER_TABLE})


def combine_stats(parts: Sequence[ServiceStats]) -> ServiceStats:
    """The instance's GET /stats from its workers' (the answering worker's first). Each
    worker keeps the same recent history: its size is the largest worker's."""
    if len(parts) == 1:
        return parts[0]
    return ServiceStats(combine_broker_stats([part.broker for part in parts]),
                        max(part.history_size for part in parts),
                        combine_limiter_stats([part.limiter for part in parts]),
                        sum(part.actors for part in parts))


def combine_health(parts: Sequence[Health], silent: Sequence[str] = ()) -> Health:
    """The instance's health: "ok" when a worker is ok, every other is ok or still starting
    (Kafka "connecting": a replaced worker must not take a serving instance out of a load
    balancer), and none is `silent` (each a sentence saying which worker did not answer); warm
    when every worker is warm; Kafka's state is the worst (readiness waits for every worker),
    its details joined, the partitions those of any worker."""
    if len(parts) == 1 and not silent:
        return parts[0]
    details = [part.kafka.detail for part in parts if part.kafka.detail] + list(silent)
    kafka = KafkaStatus(worst_kafka_state([part.kafka.state for part in parts]),
                        "; ".join(dict.fromkeys(details)),
                        tuple(sorted({p for part in parts for p in part.kafka.partitions})))
    ok = (not silent and any(part.ok for part in parts)
          and all(part.ok or part.kafka.state == "connecting" for part in parts))
    return Health("ok" if ok else "degraded", kafka, sum(part.clients for part in parts),
                  all(part.warm for part in parts),
                  next((part.keys_pending for part in parts if part.keys_pending), ""))


def with_stopped(report: Health, dead: Sequence[str]) -> Health:
    """A worker's health while core actors `dead` have stopped (a bug; it retires): not ok
    whatever Kafka's state, which the broker reports without knowing whether events flow."""
    said = f"actor(s) {', '.join(dead)} stopped: this worker is being replaced"
    kafka = report.kafka
    detail = f"{kafka.detail}; {said}" if kafka.detail else said
    return replace(report, status="degraded", kafka=replace(kafka, detail=detail))


def client_order(entry) -> tuple[float, str]:
    """The one order of GetClients, in a worker and across the instance (of a ClientSummary
    or a ClientInfo): when each came by the monotonic clock, which the wall clock's steps do
    not move and the workers of an instance (one machine) share."""
    return entry.opened, entry.id


def merge_pages(pages: Sequence[ClientPage], limit: int, offset: int) -> ClientPage:
    """One page of the instance from each worker's first `offset + limit` clients (in
    client_order); the total is the sum of the workers' totals."""
    if len(pages) == 1:
        page = pages[0]
        return ClientPage(page.total, page.clients[offset:offset + limit])
    merged = heapq.merge(*(page.clients for page in pages), key=client_order)
    everyone = tuple(merged)
    return ClientPage(sum(page.total for page in pages), everyone[offset:offset + limit])
