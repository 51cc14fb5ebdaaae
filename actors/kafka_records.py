"""A faster reader of fetched records for kafka-python 3.0's consumer.

kafka-python turns each fetched record into three objects (its DefaultRecord, a ConsumerRecord,
then kafka_reads' Record) through a dozen property and function calls: about 13 us of CPU
per record on the bench machine, a quarter of the gateway's cost per private event. FastRecords
replaces only the loop over the records of a message-format v2 batch (every broker since Kafka
0.11): each record goes from the batch's bytes straight to a Record (7 us of CPU per record
read, all included). The rest is kafka-python's own logic, restated step for step: CRC checks,
decompression, aborted transactions and their markers (read_committed), control batches, the
legacy formats, and where the next fetch starts. tests/unit/test_kafka_records.py reads every
kind of batch with both readers and compares. One difference, on purpose: a header name that
is not UTF-8 is decoded with replacement characters, as Kafka's Java client does, where
kafka-python calls the record corrupt (and the gateway would stop reading its partition).

`install(consumer)` puts it on one consumer's fetcher, and only under the kafka-python it was
written against (3.0.x, with every part listed in NEEDS); another keeps the library's reader.
"""
from __future__ import annotations

import logging

import kafka
import kafka.errors as Errors
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

from actors.kafka_reads import Record

logger = logging.getLogger(__name__)

WRITTEN_FOR = "3.0."


# What FastRecords uses of kafka-python beyond its public API.
NEEDS = ((Fetcher.PartitionRecords, ("_unpack_records", "_consume_aborted_transactions_up_to",
                                     "_contains_abort_marker", "_is_batch_aborted")),
         (DefaultRecordBatch, ("_maybe_uncompress", "_buffer", "_pos", "records_count",
                               "first_timestamp", "max_timestamp", "timestamp_type")))


def install(consumer) -> bool:
    """Read `consumer`'s fetches with FastRecords; False (nothing changed) under another
    kafka-python, or one that lacks a part FastRecords uses."""
    fetcher = getattr(consumer, "_fetcher", None)
    missing = [f"{cls.__name__}.{name}" for cls, names in NEEDS for name in names
               if not hasattr(cls, name)]
    if not kafka.__version__.startswith(WRITTEN_FOR) or fetcher is None or missing:
        logger.info("kafka-python %s%s: records are read by its own reader", kafka.__version__,
                    f" (no {', '.join(missing)})" if missing else "")
        return False
    fetcher.PartitionRecords = FastRecords
    return True


class FastRecords(Fetcher.PartitionRecords):
    """kafka-python's PartitionRecords, yielding Records of v2 batches read by `_v2_records`."""

    def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
        if key_deserializer is not None or value_deserializer is not None:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise Errors.CorruptRecordError(
                    "Record batch for partition %s at offset %s failed crc check" % (
                        self.topic_partition, batch.base_offset))
            if batch.magic == 2:
                if not self._readable(batch):
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                yield from self._v2_records(tp, batch)
            else:
                yield from self._legacy_records(tp, batch)
            batch = records.next_batch()
        if last_batch and last_batch.magic == 2:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()

    def _readable(self, batch) -> bool:
        """kafka-python's rules for a v2 batch: False for an aborted transaction's batch and
        for control batches (transaction markers), which are never records."""
        self.leader_epoch = batch.leader_epoch
        if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
            self._consume_aborted_transactions_up_to(batch.last_offset)
            producer_id = batch.producer_id
            if self._contains_abort_marker(batch):
                self.aborted_producer_ids.discard(producer_id)
            elif self._is_batch_aborted(batch):
                return False
        return not batch.is_control_batch

    def _v2_records(self, tp, batch: DefaultRecordBatch):
        """The records of a v2 batch, decoded from its bytes (the layout of kafka-python's
        DefaultRecordBatch._read_msg, with the same CorruptRecordError for a bad one)."""
        batch._maybe_uncompress()
        buf, pos, count = batch._buffer, batch._pos, batch.records_count
        topic, partition, base = tp.topic, tp.partition, batch.base_offset
        log_append = batch.timestamp_type == DefaultRecordBatch.LOG_APPEND_TIME
        first_ts, max_ts = batch.first_timestamp, batch.max_timestamp
        varint, new = decode_varint, tuple.__new__     # a Record without its Python __new__
        for _ in range(count):
            try:
                length, pos = varint(buf, pos)
                start = pos
                if buf[pos] < 0x80:     # attributes (unused): one byte unless a future flag
                    pos += 1
                else:
                    _, pos = varint(buf, pos)
                ts_delta, pos = varint(buf, pos)
                offset_delta, pos = varint(buf, pos)
                key, pos = _nullable_bytes(buf, pos)
                value, pos = _nullable_bytes(buf, pos)
                if buf[pos] == 0:       # no headers: a zero varint
                    headers = ()
                    pos += 1
                else:
                    headers, pos = _headers(buf, pos)
            except (ValueError, IndexError) as err:
                raise Errors.CorruptRecordError(
                    f"Found invalid record structure: {err!r}") from None
            if pos - start != length:
                raise Errors.CorruptRecordError(
                    "Invalid record size: expected to read {} bytes in record payload, but "
                    "instead read {}".format(length, pos - start))
            offset = base + offset_delta
            self.records_read += 1
            self.next_fetch_offset = offset + 1
            yield new(Record, (topic, partition, offset,
                               max_ts if log_append else first_ts + ts_delta, value, headers, key))
        if pos != len(buf):
            raise Errors.CorruptRecordError(
                f"{len(buf) - pos} unconsumed bytes after all records consumed")

    def _legacy_records(self, tp, batch):
        """Records of the v0/v1 formats: kafka-python's own loop."""
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise Errors.CorruptRecordError(
                    "Record for partition %s at offset %s failed crc check" % (
                        self.topic_partition, record.offset))
            self.records_read += 1
            self.next_fetch_offset = record.offset + 1
            yield ConsumerRecord(
                tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp,
                record.timestamp_type, record.key, record.value, record.headers,
                record.checksum, -1, -1, -1)


def _headers(buf, pos) -> tuple[tuple, int]:
    count, pos = decode_varint(buf, pos)
    if count < 0:
        raise Errors.CorruptRecordError(f"Found invalid number of record headers {count}")
    if not count:
        return (), pos
    headers = []
    for _ in range(count):
        size, pos = decode_varint(buf, pos)
        if size < 0:
            raise Errors.CorruptRecordError(f"Invalid negative header key size {size}")
        name = buf[pos:pos + size].decode("utf-8", "replace")     # as Kafka's Java client
        value, pos = _nullable_bytes(buf, pos + size)
        headers.append((name, value))
    return tuple(headers), pos


def _nullable_bytes(buf, pos) -> tuple[bytes | None, int]:
    """A varint size, then that many bytes; a negative size is null (no bytes follow)."""
    size, pos = decode_varint(buf, pos)
    if size < 0:
        return None, pos
    return bytes(buf[pos:pos + size]), pos + size
