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


class KafkaSource:
    """Manually assigned partitions of fixed topics; no consumer group, no commits."""

    def __init__(self, settings):
        if not reachable(settings.kafka_brokers):
            raise KafkaUnreachable(f"no broker of {','.join(settings.kafka_brokers)} accepts connections")
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=list(settings.kafka_brokers),
                client_id="kafka-sse-gateway",
                group_id=None,
                enable_auto_commit=False,
                # Small fetches keep one catch-up fetch from blocking the hub for long.
                max_partition_fetch_bytes=16384,
                fetch_max_bytes=65536,
                max_poll_records=200,
                fetch_max_wait_ms=100,
                metadata_max_age_ms=settings.kafka_metadata_refresh_ms,
                reconnect_backoff_max_ms=2000,
                bootstrap_timeout_ms=10000,
            )
        except KafkaError as exc:
            raise KafkaUnreachable(f"bootstrap failed: {exc}") from None
        self._topics = tuple(settings.kafka_topics)
        self._consumer._cluster.set_topics(self._topics)
        self._assigned: set = set()

    def partitions(self) -> set[tuple[str, int]]:
        """Partitions of our topics known from the latest metadata (refreshed in the background)."""
        cluster = self._consumer._cluster
        found = set()
        for topic in self._topics:
            for partition in cluster.partitions_for_topic(topic) or ():
                found.add((topic, partition))
        return found

    def refresh(self) -> None:
        self._consumer._cluster.request_update()

    def assign(self, partitions: set, *, new_at_end: bool) -> None:
        from kafka import TopicPartition
        added = {TopicPartition(t, p) for t, p in partitions - self._assigned}
        self._assigned = set(partitions)
        self._consumer.assign([TopicPartition(t, p) for t, p in sorted(partitions)])
        # assign() narrows the metadata to assigned topics; keep watching all of ours.
        self._consumer._cluster.set_topics(self._topics)
        if added:
            if new_at_end:
                self._consumer.seek_to_end(*added)
            else:
                self._consumer.seek_to_beginning(*added)

    def poll(self, timeout_ms: int) -> list[Record]:
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return []
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        records = []
        for messages in batches.values():
            for m in messages:
                records.append(Record(m.topic, m.partition, m.offset, m.timestamp,
                                      m.value, tuple(m.headers or ())))
        return records

    def connected(self) -> bool:
        manager = self._consumer._manager
        return any(conn.connected for conn in list(manager._conns.values()))

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=2000)
        except Exception as exc:  # noqa: BLE001
            logger.warning("closing the kafka consumer: %s", exc)
