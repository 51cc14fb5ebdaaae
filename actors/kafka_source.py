"""The only module that talks to kafka-python: a small source of records for the consumer actor.

kafka-python is imported lazily, after gunicorn's gevent worker has patched the process
(imported earlier it would capture the real epoll selector and hang the worker).
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    headers: tuple


class KafkaUnreachable(RuntimeError):
    pass


def reachable(brokers, timeout=2.0) -> bool:
    """True if any bootstrap server accepts a TCP connection (cheap, never hangs)."""
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def _open_consumer(settings, client_id: str, fetch_bytes: int = 16384):
    """A KafkaConsumer without a group, or KafkaUnreachable; never hangs while Kafka is down.

    Small fetches (16 KiB a partition) keep one catch-up fetch from blocking the gevent hub
    for long; the replay reader takes larger ones.
    """
    if not reachable(settings.kafka_brokers):
        raise KafkaUnreachable(f"no broker of {','.join(settings.kafka_brokers)} accepts connections")
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError
    try:
        return KafkaConsumer(
            bootstrap_servers=list(settings.kafka_brokers),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=fetch_bytes * 4,
            max_poll_records=200,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=settings.kafka_metadata_refresh_ms,
            reconnect_backoff_max_ms=2000,
            bootstrap_timeout_ms=10000,
        )
    except KafkaError as exc:
        raise KafkaUnreachable(f"bootstrap failed: {exc}") from None


def _records(batches) -> list[Record]:
    return [Record(m.topic, m.partition, m.offset, m.timestamp, m.value, tuple(m.headers or ()))
            for messages in batches.values() for m in messages]


def _tps(partitions):
    from kafka import TopicPartition
    return [TopicPartition(t, p) for t, p in sorted(partitions)]


class _Offsets:
    """Offset look-ups shared by the live source and the replay reader."""

    _consumer = None

    def bounds(self, partitions) -> tuple[dict, dict]:
        """(first, next) offset of each partition: what Kafka still retains."""
        tps = _tps(partitions)
        begin = self._consumer.beginning_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
        end = self._consumer.end_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
        return ({(tp.topic, tp.partition): o for tp, o in begin.items()},
                {(tp.topic, tp.partition): o for tp, o in end.items()})

    def offsets_for_time(self, partitions, timestamp_ms: int) -> dict:
        """First offset at or after the time, per partition (None: nothing that late)."""
        found = self._consumer.offsets_for_times({tp: timestamp_ms for tp in _tps(partitions)},
                                                 timeout_ms=OFFSETS_TIMEOUT_MS)
        return {(tp.topic, tp.partition): (hit.offset if hit is not None else None)
                for tp, hit in found.items()}

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=2000)
        except Exception as exc:  # noqa: BLE001
            logger.warning("closing a kafka consumer: %s", exc)


OFFSETS_TIMEOUT_MS = 5000


class KafkaSource(_Offsets):
    """Manually assigned partitions of fixed topics; no consumer group, no commits."""

    def __init__(self, settings):
        self._consumer = _open_consumer(settings, "kafka-sse-gateway")
        self._topics = tuple(settings.kafka_topics)
        self._consumer._cluster.set_topics(self._topics)
        self._assigned: set = set()

    def partitions(self) -> set[tuple[str, int]]:
        """Partitions of our topics known from the latest metadata (refreshed in the background)."""
        cluster = self._consumer._cluster
        return {(topic, partition) for topic in self._topics
                for partition in cluster.partitions_for_topic(topic) or ()}

    def refresh(self) -> None:
        self._consumer._cluster.request_update()

    def assign(self, partitions: set, seeks: dict) -> None:
        """Read `partitions`; the newly added ones from the offsets in `seeks`."""
        from kafka import TopicPartition
        self._assigned = set(partitions)
        self._consumer.assign(_tps(partitions))
        # assign() narrows the metadata to assigned topics; keep watching all of ours.
        self._consumer._cluster.set_topics(self._topics)
        for (topic, partition), offset in seeks.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def poll(self, timeout_ms: int) -> list[Record]:
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return []
        return _records(self._consumer.poll(timeout_ms=timeout_ms))

    def highwaters(self) -> dict:
        """Each assigned partition's end offset as of the latest fetch (missing: no fetch yet)."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[(tp.topic, tp.partition)] = high
        return out

    def connected(self) -> bool:
        manager = self._consumer._manager
        return any(conn.connected for conn in list(manager._conns.values()))


class KafkaReader(_Offsets):
    """Reads bounded ranges of offsets, for replays; its own consumer, apart from the live one."""

    def __init__(self, settings):
        self._consumer = _open_consumer(settings, "kafka-sse-gateway-replay", fetch_bytes=65536)

    def read(self, ranges: dict, deadline_s: float = 30.0) -> list[Record]:
        """Records in [start, until) of each partition, in offset order per partition."""
        from kafka import TopicPartition
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if not wanted:
            return []
        self._consumer.assign(_tps(wanted))
        for (topic, partition), (start, _until) in wanted.items():
            self._consumer.seek(TopicPartition(topic, partition), start)
        out, give_up = [], time.monotonic() + deadline_s
        while wanted and time.monotonic() < give_up:
            for record in _records(self._consumer.poll(timeout_ms=100)):
                key = (record.topic, record.partition)
                if key in wanted and record.offset < wanted[key][1]:
                    out.append(record)
            for key in list(wanted):
                if self._consumer.position(TopicPartition(*key), timeout_ms=1000) >= wanted[key][1]:
                    del wanted[key]
        if wanted:
            logger.warning("replay read gave up on %s after %.0fs", sorted(wanted), deadline_s)
        self._consumer.assign([])
        return out
