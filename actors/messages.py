"""Every message between actors, as frozen dataclasses.

Commands are imperative, facts past tense, queries start with Get. Only queries and
Subscribe-like admissions are asked; everything else is told.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.events import Event, Position
from actors.filters import Filter


@dataclass(frozen=True, slots=True)
class ClientInfo:
    id: str
    remote_addr: str
    user_agent: str
    filter: Filter
    named: bool = True
    connected_at: float = 0.0


# consumer -> broker
@dataclass(frozen=True, slots=True)
class Consumed:
    events: tuple[Event, ...]
    invalid_topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KafkaStateChanged:
    state: str                      # connecting | connected | unreachable
    partitions: tuple[tuple[str, int], ...] = ()
    detail: str = ""


# broker -> history, history -> broker
@dataclass(frozen=True, slots=True)
class Remember:
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Replay:
    client_id: str
    filter: Filter
    after: Position | None
    reply_to: Any = field(compare=False)


@dataclass(frozen=True, slots=True)
class Replayed:
    client_id: str
    events: tuple[Event, ...]
    found: bool


# client <-> broker
@dataclass(frozen=True, slots=True)
class Subscribe:
    info: ClientInfo
    outbox: Any = field(compare=False)
    client: Any = field(compare=False)
    after: Position | None = None
    replay: bool = True


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    client_id: str


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


# timers and shutdown -> broker
@dataclass(frozen=True, slots=True)
class Beat:
    pass


@dataclass(frozen=True, slots=True)
class CloseAll:
    reason: str


# queries (asked from web and rpc, answered from figures the actor holds)
@dataclass(frozen=True, slots=True)
class GetStats:
    pass


@dataclass(frozen=True, slots=True)
class GetHealth:
    pass


@dataclass(frozen=True, slots=True)
class GetClients:
    limit: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DisconnectClient:
    client_id: str
    reason: str = "disconnected by operator"


@dataclass(frozen=True, slots=True)
class GetHistorySize:
    pass


@dataclass(frozen=True, slots=True)
class Poll:
    pass
