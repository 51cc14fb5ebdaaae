"""Bounded ranges of offsets read from Kafka for replays (KafkaReader), on a kafka-python
consumer of their own, apart from the live one (actors/kafka_source.py). A batch that cannot be
read, or positions Kafka no longer holds, are raised as Unreadable or Retained, partition by
partition, for the replay actor to answer.

kafka-python is imported lazily (see actors/kafka_client.py).
"""
from __future__ import annotations

from actors.kafka_client import open_consumer
from actors.kafka_reads import (
    Offsets, Record, as_records, failed_partitions, forget, offset_of, position_of, reason_of,
)


class Unreadable(RuntimeError):
    """Batches of these partitions cannot be read from these offsets (why: `reason`)."""

    def __init__(self, offsets: dict, reason: str):
        super().__init__(f"cannot read {sorted(offsets)}: {reason}")
        self.offsets, self.reason = offsets, reason


class Retained(RuntimeError):
    """Kafka no longer holds these positions (retention deleted them): for each partition,
    (the offset asked for, the first one it still holds)."""

    def __init__(self, offsets: dict):
        super().__init__(f"deleted by retention: {sorted(offsets.items())}")
        self.offsets = offsets


class KafkaReader(Offsets):
    """Reads bounded ranges of offsets, for replays; its own consumer, apart from the live one."""

    def __init__(self, settings):
        self._consumer = open_consumer(settings, "replay")
        # Its metadata watches all our topics: assign() then never narrows it (kafka-python
        # replaces the watched topics only when given one it lacks). Narrowed to the topics
        # read last, a refresh dropped the others, and an offsets look-up over both kinds
        # failed (kafka-python 3.0 leaves an unknown partition out of its answer: KeyError).
        self._consumer._cluster.set_topics(settings.kafka_topics)
        self._at: dict = {}        # where the consumer stands in each partition it reads

    def unreadable(self, partitions) -> dict:
        """Those of `partitions` this reader cannot ask Kafka about, and why: no leader in
        its latest metadata (the broker down, a replication factor of 1), or a leader that
        does not let it in (see KafkaSource.unreached)."""
        from kafka import TopicPartition
        cluster = self._consumer._cluster
        out = {p: "no leader (is its broker down?)" for p in partitions
               if cluster.leader_for_partition(TopicPartition(*p)) == -1}
        for u in self._unreached(set(partitions) - set(out)):
            out.update({p: u.leader() for p in u.partitions})
        return out

    def fetch(self, ranges: dict, timeout_ms: int = 50) -> tuple[list[Record], dict]:
        """One poll's records in [start, until) of each partition, and each partition's next
        offset after it (it steps over transaction markers). The consumer keeps its place
        between calls, so going on from where the last call stopped costs no seek."""
        from kafka import TopicPartition
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if not wanted:
            return [], {p: r[0] for p, r in ranges.items()}
        tps = {p: TopicPartition(*p) for p in wanted}
        self._consumer.assign(list(tps.values()))    # keeps the place of partitions it still reads
        self._at = {p: o for p, o in self._at.items() if p in wanted}
        for p, (start, _until) in wanted.items():
            if self._at.get(p) != start:
                self._consumer.seek(tps[p], start)
                self._at[p] = start
        from kafka.errors import OffsetOutOfRangeError
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except OffsetOutOfRangeError as exc:
            raise self._retained(exc.args[0] if exc.args else {}) from None
        except Exception as exc:  # noqa: BLE001 - one partition's batch, or re-raised
            failed = failed_partitions(self._consumer, exc)
            if not failed:
                raise
            offsets = {}
            for tp in failed:
                forget(self._consumer, tp)
                offsets[(tp.topic, tp.partition)] = position_of(self._consumer, tp)
            raise Unreadable(offsets, reason_of(exc)) from None
        out = []
        for record in as_records(batches):
            start, until = wanted.get((record.topic, record.partition), (0, 0))
            if start <= record.offset < until:
                out.append(record)
        assignment = self._consumer._subscription.assignment     # see offset_of
        for p, tp in tps.items():
            offset = offset_of(assignment.get(tp))
            if offset is not None:
                self._at[p] = offset
        return out, dict(self._at)

    def _retained(self, asked: dict) -> Exception:
        """Retained for the positions Kafka refused as out of range (each is sought again on
        the next fetch); an offset past the end is not retention: re-raised as it came."""
        offsets = {(tp.topic, tp.partition): offset for tp, offset in asked.items()}
        begin, end = self.bounds(set(offsets))
        for p in offsets:
            self._at.pop(p, None)
        if not offsets or any(offsets[p] >= end.get(p, 0) for p in offsets):
            from kafka.errors import OffsetOutOfRangeError
            return OffsetOutOfRangeError(asked)
        return Retained({p: (offsets[p], begin.get(p, offsets[p])) for p in offsets})
