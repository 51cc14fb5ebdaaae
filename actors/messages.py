"""Every message between actors, as frozen dataclasses.

Commands are imperative, facts past tense, queries start with Get. Queries, Admit and an
operator's DisconnectClient / DisconnectSubject (which say how many streams they ended) are
asked; everything else is told, Subscribe included.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.auth.scope import ScopedFilter
from actors.events import Event
from actors.filters import Filter


@dataclass(frozen=True, slots=True)
class ClientInfo:
    id: str
    remote_addr: str
    user_agent: str
    filter: Filter | ScopedFilter       # the request, narrowed to the subject's scope
    named: bool = True
    connected_at: float = 0.0
    subject: str | None = None          # who is reading (None: anonymous or auth off)
    scope: str = ""                     # Scope.describe(), for GetClients
    expires_at: float | None = None     # unix seconds the credential ends (None: never)
    opened: float = 0.0                 # time.monotonic() at the connect: GetClients' order


# consumer -> broker
@dataclass(frozen=True, slots=True)
class Skip:
    """The live consumer could not go on from `requested` in a partition and went on from
    `resumed`: "retention" (Kafka deleted the records, it read from the oldest kept) or
    "truncated" (the log was cut before the position, e.g. by an unclean leader election: it
    reads from where it was cut)."""
    reason: str
    partition: tuple[str, int]
    requested: int
    resumed: int


@dataclass(frozen=True, slots=True)
class Consumed:
    events: tuple[Event, ...]
    invalid_topics: tuple[str, ...] = ()
    frontier: dict = field(default_factory=dict, compare=False)  # next offsets after the batch
    starts: dict = field(default_factory=dict, compare=False)    # newly assigned partitions
    warm: bool = False       # read at startup to fill the history, not live
    tombstone_topics: tuple[str, ...] = ()    # records without a value: skipped, not invalid
    reset_topics: tuple[str, ...] = ()        # deleted and created again: offsets start anew
    skips: tuple[Skip, ...] = ()              # positions skipped before this batch (a gap)
    # warm: the history holds every event stamped after this (ms); None: every event read
    complete_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class KafkaStateChanged:
    state: str                      # connecting | connected | unreachable | unauthorized
    partitions: tuple[tuple[str, int], ...] = ()
    detail: str = ""
    # of `partitions`, those not read now: no leader, a leader out of reach, or set aside at
    # a batch that cannot be read
    unread: tuple[tuple[str, int], ...] = ()


# broker -> history, history -> broker
@dataclass(frozen=True, slots=True)
class Remember:
    events: tuple[Event, ...]
    starts: dict = field(default_factory=dict, compare=False)
    reset_topics: tuple[str, ...] = ()    # forget these topics' events first (re-created, deleted)
    skips: tuple[Skip, ...] = ()          # partitions covered only from their resumed offset


@dataclass(frozen=True, slots=True)
class Replay:
    client_id: str
    filter: Filter | ScopedFilter
    known: dict | None          # the client's known frontier {(topic, partition): offset}, or None
    reply_to: Any = field(compare=False)
    subject: str | None = None  # owned events are replayed to their subject only


@dataclass(frozen=True, slots=True)
class Replayed:
    client_id: str
    events: tuple[Event, ...]
    found: bool                 # False: the history cannot serve it; read Kafka instead
    notice: bytes = b""         # a pre-encoded `gap` event to send before the events
    public: bool = field(default=False, compare=False)    # no event of the history has an owner
    # From the replay actor: events it already put into the client's outbox, per topic (the
    # events above follow them; the broker then appends the live events it held meanwhile).
    streamed: dict = field(default_factory=dict, compare=False)
    # Partitions the replay could not read (no leader, or one out of reach): the offset the
    # stream stays at there until it reconnects (Subscription.short).
    short: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ReadRange:
    """Ask the replay reader for the records of a stream's gap, from Kafka itself."""
    client_id: str
    filter: Filter | ScopedFilter
    start: dict | None          # frontier to resume from (with since_ms: seen before; or None)
    until: dict                 # the live side's frontier when the client subscribed
    reply_to: Any = field(compare=False)
    since_ms: int | None = None
    address: str = ""           # the client's address: replays are served round-robin by it
    named: bool = True          # frames with an `event:` line
    outbox: Any = field(default=None, compare=False)   # the replay hands its frames to it
    subject: str | None = None  # owned events are replayed to their subject only
    deleted: frozenset = frozenset()    # partitions of `until` whose topic Kafka lists no more


@dataclass(frozen=True, slots=True)
class CancelReplay:
    """The client left: stop its replay (broker -> replay)."""
    client_id: str


@dataclass(frozen=True, slots=True)
class ContinueReplay:
    """The replay actor's note to itself: serve the next slice of its queue."""


# client <-> broker
@dataclass(frozen=True, slots=True)
class Subscribe:
    info: ClientInfo
    outbox: Any = field(compare=False)
    client: Any = field(compare=False)
    known: dict | None = None   # frontier decoded from Last-Event-ID: seen all before it
    with_history: bool = True   # replay the history (or Kafka) before live
    since_ms: int | None = None
    recreated: dict = field(default_factory=dict, compare=False)  # (topic, p) -> offset in the id
    unverified: dict = field(default_factory=dict, compare=False)  # resume.Resume.unverified
    topics_changed: bool = False    # its id came from a gateway with other KAFKA_TOPICS


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    client_id: str


@dataclass(frozen=True, slots=True)
class Close:
    reason: str
    final: bytes = b""          # the stream's last frame (default: a `closing: reason` comment)


# timers and shutdown -> broker
@dataclass(frozen=True, slots=True)
class SendHeartbeats:
    """The ticker's cue: every open stream gets a heartbeat comment now."""


@dataclass(frozen=True, slots=True)
class CloseAll:
    """End streams with a final comment: all of them, or `share` of those still open."""
    reason: str
    share: float = 1.0


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
    after: tuple[float, str] | None = None     # counted from the client after this place


@dataclass(frozen=True, slots=True)
class DisconnectClient:
    client_id: str
    reason: str = "disconnected by operator"


@dataclass(frozen=True, slots=True)
class DisconnectSubject:
    """End every stream of a subject, in any phase (asked; answers how many ended)."""
    subject: str
    reason: str = "disconnected by operator"


@dataclass(frozen=True, slots=True)
class ExpireStreams:
    """The ticker's cue (every second while auth is on): streams whose credential expired end
    with an `auth-expired` event."""


@dataclass(frozen=True, slots=True)
class GetHistorySize:
    pass


@dataclass(frozen=True, slots=True)
class Poll:
    pass


class Waiting:
    """The asker's side of a question it may give up on (its deadline passed): the first of
    the actor taking the question up (`take`) and the asker giving up on it (`give_up`) wins,
    and the other learns it. The first to append its name wins: list.append is atomic, so it
    holds for threads too (the unit tests) without a lock on every stream's admission."""
    __slots__ = ("_claims",)

    def __init__(self):
        self._claims: list[str] = []

    def take(self) -> bool:
        """True: the asker still waits and will read the answer."""
        return self._first("actor")

    def give_up(self) -> bool:
        """True: the actor had not taken the question up, and now never will."""
        return self._first("asker")

    def _first(self, who: str) -> bool:
        self._claims.append(who)
        return self._claims[0] == who


# web -> rate limiter (actors/limiter.py): admission is asked, the release told
@dataclass(frozen=True, slots=True)
class Admit:
    address: str                    # the client's address (its limiting key)
    stream: bool = False            # True: also take one of the stream slots
    subject: str | None = None      # the reader's subject: also one of its stream slots
    peek: bool = False              # True: refused as a stream would be, nothing taken (HEAD)
    # the asker gave up (503) before the limiter took this up: nothing is taken
    waiting: Waiting | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    # rate_limited | too_many_streams_per_ip | too_many_streams_per_subject | too_many_streams
    # | overloaded (the asker gave up first: never read)
    reason: str = ""
    retry_after: int = 0            # seconds


@dataclass(frozen=True, slots=True)
class Release:
    address: str                    # an admitted stream ended
    subject: str | None = None      # the subject it was admitted with


@dataclass(frozen=True, slots=True)
class GetLimiterStats:
    pass


@dataclass(frozen=True, slots=True)
class KafkaLag:
    """Records behind the end of each partition, reported by the consumer now and then, and
    those ends (Kafka's high watermarks as of the latest fetches)."""
    lag: dict = field(default_factory=dict, compare=False)
    ends: dict = field(default_factory=dict, compare=False)
