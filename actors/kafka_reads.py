"""What the live source (actors/kafka_source.py) and the replay reader (actors/kafka_reader.py)
share: the Record they hand on, offset look-ups, the leaders that no longer let the gateway in,
and the few places where they read kafka-python's own state (a position without a network call,
what a failed poll was about, what the fetcher still holds of a partition).

kafka-python is imported lazily (see actors/kafka_client.py).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)


class Record(NamedTuple):      # a NamedTuple, as actors/events.py says why
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    headers: tuple
    key: bytes | None = None


class Unreached(NamedTuple):
    """A leader of our partitions that lets the gateway in no more while other brokers do."""
    node: int
    address: str
    partitions: tuple
    refusal: str        # kafka-python's login refusal, or "" (down, or not answering)

    def leader(self, explain=str) -> str:
        """What /health and the logs say of it; `explain` words the refusal."""
        why = (f"refuses the gateway: {explain(self.refusal) or self.refusal}" if self.refusal
               else "does not answer")
        return f"its leader, broker {self.node} at {self.address}, {why}"


def named(partitions) -> str:
    """(topic, partition) pairs as a log line names them, runs shortened: `t:0-999, u:2,5-7`
    (1,000 partitions one by one made an 11 KB line, which log shippers split)."""
    runs: dict[str, list[list[int]]] = {}
    for topic, partition in sorted(partitions):
        topic_runs = runs.setdefault(topic, [])
        if topic_runs and topic_runs[-1][1] == partition - 1:
            topic_runs[-1][1] = partition
        else:
            topic_runs.append([partition, partition])
    return ", ".join(f"{topic}:" + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
                     for topic, spans in runs.items())


class OffsetsUnanswered(RuntimeError):
    """Kafka gave no offsets for these partitions in time: a leader we cannot reach, mostly."""

    def __init__(self, partitions):
        super().__init__(f"no offsets from Kafka in {OFFSETS_TIMEOUT_MS // 1000} s for "
                         f"{named(partitions)}")


UNREACHED_AFTER_FAILURES = 3     # failed connections to a leader in a row before it is reported
OFFSETS_TIMEOUT_MS = 5000


def as_records(batches) -> list[Record]:
    """A poll's records as Records (kafka_records reads most of them as Records already)."""
    return [m if m.__class__ is Record else
            Record(m.topic, m.partition, m.offset, m.timestamp, m.value, tuple(m.headers or ()),
                   m.key)
            for messages in batches.values() for m in messages]


def topic_partitions(partitions):
    from kafka import TopicPartition
    return [TopicPartition(t, p) for t, p in sorted(partitions)]


class Offsets:
    """Offset look-ups shared by the live source and the replay reader."""

    _consumer: Any = None         # a kafka.KafkaConsumer (imported late: see the docstring)

    def bounds(self, partitions) -> tuple[dict, dict]:
        """(first, next) offset of each partition: what Kafka still retains."""
        tps = topic_partitions(partitions)
        with leaders_needed():
            begin = self._consumer.beginning_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
            end = self._consumer.end_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
        return ({(tp.topic, tp.partition): o for tp, o in begin.items()},
                {(tp.topic, tp.partition): o for tp, o in end.items()})

    def offsets_for_time(self, partitions, timestamp_ms: int) -> dict:
        """First offset at or after the time, per partition (None: nothing that late)."""
        with leaders_needed():
            found = self._consumer.offsets_for_times(
                {tp: timestamp_ms for tp in topic_partitions(partitions)},
                timeout_ms=OFFSETS_TIMEOUT_MS)
        return {(tp.topic, tp.partition): (hit.offset if hit is not None else None)
                for tp, hit in found.items()}

    def _unreached(self, partitions) -> list[Unreached]:
        """The leaders of `partitions` that refused our login, or failed to connect
        UNREACHED_AFTER_FAILURES times in a row, with their partitions (see KafkaSource)."""
        from kafka import TopicPartition
        manager, cluster = self._consumer._manager, self._consumer._cluster
        led: dict = {}
        for p in sorted(partitions):
            led.setdefault(cluster.leader_for_partition(TopicPartition(*p)), []).append(p)
        out = []
        for node, partitions in led.items():
            conn = manager._conns.get(node)
            if node in (None, -1) or (conn is not None and conn.connected):
                continue
            refusal = getattr(manager, "_auth_failures", {}).get(node)
            if refusal is None and manager._backoff.get(node, (0,))[0] < UNREACHED_AFTER_FAILURES:
                continue
            broker = cluster.broker_metadata(node)
            address = f"{broker.host}:{broker.port}" if broker is not None else "address unknown"
            out.append(Unreached(node, address, tuple(partitions), "" if refusal is None
                                 else str(refusal)))
        return out

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=2000)
        except Exception as exc:  # noqa: BLE001
            logger.warning("closing a kafka consumer: %s", exc)


@contextlib.contextmanager
def leaders_needed():
    """kafka-python 3.0's offset look-ups raise a bare KeyError for a partition without a
    leader: it is Kafka's state (a broker down), so it is raised as a Kafka error."""
    try:
        yield
    except KeyError as exc:
        from kafka.errors import LeaderNotAvailableError
        tp = exc.args[0] if exc.args else None
        if not hasattr(tp, "partition"):
            raise
        raise LeaderNotAvailableError(
            f"{tp.topic}:{tp.partition} has no leader (is its broker down?)") from None


def position_of(consumer, tp) -> int:
    """Where the consumer stands in `tp`, without a network call (0: not known)."""
    offset = offset_of(consumer._subscription.assignment.get(tp))
    return 0 if offset is None else offset


def offset_of(state) -> int | None:
    """The position in a partition's subscription state, as kafka-python keeps it (no network
    call; its position() checks every assigned partition at each call)."""
    return state.position.offset if state is not None and state.position is not None else None


def forget(consumer, tp) -> None:
    """Drop what the fetcher holds of `tp`: after a batch it could not unpack, kafka-python
    would retry the same broken records forever inside poll(), holding the gevent hub."""
    fetcher = consumer._fetcher
    current = fetcher._next_partition_records
    if current is not None and current.topic_partition == tp:
        fetcher._next_partition_records = None
    meta = fetcher._next_in_line_exception_metadata
    if meta is not None and meta.partition == tp:
        fetcher._next_in_line_exception_metadata = None
    fetcher._paused_partition_records.pop(tp, None)
    fetcher._paused_completed_fetches.pop(tp, None)
    fetcher._completed_fetches = type(fetcher._completed_fetches)(
        c for c in fetcher._completed_fetches if c.topic_partition != tp)


def failed_partitions(consumer, exc) -> list:
    """The partitions a poll() error is about, from the error or the fetcher's state."""
    from kafka import TopicPartition
    fetcher = consumer._fetcher
    current = fetcher._next_partition_records
    if current:                      # records whose unpacking failed (a drained one is falsy)
        return [current.topic_partition]
    meta = fetcher._next_in_line_exception_metadata
    if meta is not None and meta.partition is not None:
        return [meta.partition]
    detail = exc.args[0] if exc.args else None
    if isinstance(detail, dict):
        return [tp for tp in detail if isinstance(tp, TopicPartition)]
    if isinstance(detail, (set, frozenset, list, tuple)):
        topics = {t for t in detail if isinstance(t, str)}
        return [tp for tp in consumer.assignment() if tp.topic in topics]
    return []


def reason_of(exc: Exception) -> str:
    """What a failed read's error means, in the words of a log line."""
    from kafka import errors
    if isinstance(exc, errors.TopicAuthorizationFailedError):
        return "not authorized to read this topic"
    if isinstance(exc, errors.UnsupportedCodecError):
        return f"batch compressed with a codec this gateway lacks ({exc})"
    if isinstance(exc, errors.CorruptRecordError):
        return f"corrupt batch: {exc}"
    return f"cannot read the next batch: {type(exc).__name__}: {str(exc)[:160]}"

