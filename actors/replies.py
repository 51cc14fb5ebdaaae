"""The core's answers to the edge's questions, as frozen dataclasses.

The broker answers GetStats with `Stats`, GetHealth with `Health`, GetClients with
`ClientPage`; the limiter answers GetLimiterStats with `LimiterStats`. `actors.gateway` adds
the history's size, the limiter's figures and the number of actors to make `ServiceStats`,
the body of GET /stats. Each `to_json()` returns exactly the JSON the HTTP API has always
shown; rpc/mapper.py and web/metrics.py read the fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
    delivered_per_topic: dict[str, int] = field(default_factory=dict)
    dropped_per_topic: dict[str, int] = field(default_factory=dict)
    kafka_lag: dict[str, int] = field(default_factory=dict)
    kafka_state: str = "connecting"
    uptime_seconds: float = 0.0

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
            "delivered_per_topic": dict(self.delivered_per_topic),
            "dropped_per_topic": dict(self.dropped_per_topic),
            "kafka_lag": dict(self.kafka_lag),
            "kafka_state": self.kafka_state,
            "uptime_seconds": self.uptime_seconds,
        }


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """The rate limiter's figures; `refused` counts refusals by reason."""
    enabled: bool = False
    streams: int = 0
    addresses_streaming: int = 0
    buckets: int = 0
    buckets_evicted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    subjects_streaming: int = 0      # subjects holding a stream (not in to_json yet)

    def to_json(self) -> dict:
        return {
            "enabled": self.enabled,
            "streams": self.streams,
            "addresses_streaming": self.addresses_streaming,
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
    """GET /health: `status` is "ok" while Kafka is connected, else "degraded"; `warm` is
    True once the warm start is done (readiness needs it)."""
    status: str
    kafka: KafkaStatus
    clients: int = 0
    warm: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "ok"

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
