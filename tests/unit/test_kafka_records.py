"""kafka_records.FastRecords reads every shape of fetched batch exactly as kafka-python's own
PartitionRecords does: the same records (as kafka_source Records), the same next fetch offset,
the same errors. Batches are built with kafka-python's own builders."""
import struct
from collections import namedtuple

import kafka
import kafka.errors as Errors
import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.util import calc_crc32c

from actors import kafka_records
from actors.kafka_records import FastRecords
from actors.kafka_source import Record, _records

TP = TopicPartition("orders", 3)
Aborted = namedtuple("Aborted", "producer_id first_offset")
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ROWS = [   # key, value, headers
    (b"alice", b'{"type":"a"}', []),
    (None, b'{"type":"no key"}', [("trace", b"t-1"), ("empty", None), ("caf\u00e9", b"\xff")]),
    (b"bob", None, []),                                   # a tombstone
    (b"", b"", [("h", b"")]),
    (b"k" * 300, b"v" * 70_000, [("x" * 200, b"y" * 200)]),     # multi-byte varints
]


def v2_batch(base, rows, codec=0, transactional=False, producer_id=-1, timestamp=1_700_000_000_000):
    builder = DefaultRecordBatchBuilder(2, codec, transactional, producer_id, 0 if producer_id >= 0
                                        else -1, 0 if producer_id >= 0 else -1, 10 ** 8)
    for i, (key, value, headers) in enumerate(rows):
        builder.append(i, timestamp + 7 * i, key, value, headers)
    return _rebase(bytes(builder.build()), base)


def _rebase(batch: bytes, base: int) -> bytes:
    return struct.pack(">q", base) + batch[8:]


def _with_attributes(batch: bytes, extra: int) -> bytes:
    """The batch with attribute bits added (control, log-append time) and its CRC made again."""
    attributes = struct.unpack_from(">h", batch, 21)[0] | extra
    body = struct.pack(">h", attributes) + batch[23:]
    return batch[:17] + struct.pack(">I", calc_crc32c(body)) + body


def marker(base, producer_id, commit: bool) -> bytes:
    key = struct.pack(">hh", 0, 1 if commit else 0)
    batch = v2_batch(base, [(key, struct.pack(">hi", 0, 0), [])], transactional=True,
                     producer_id=producer_id)
    return _with_attributes(batch, 0x20)


def legacy_batch(magic, base, rows):
    builder = LegacyRecordBatchBuilder(magic, 0, 10 ** 8)
    for i, (key, value, _) in enumerate(rows):
        builder.append(base + i, 1_700_000_000_000 + i if magic else None, key, value)
    return bytes(builder.build())


def read(cls, data: bytes, fetch_offset=0, take=None, **kwargs):
    """(records taken, as Records; next fetch offset; drained?; the error raised, if any)."""
    part = cls(fetch_offset, TP, MemoryRecords(data), **kwargs)
    try:
        taken = part.take(take)
        error = None
    except Errors.KafkaError as exc:
        taken, error = [], type(exc)
    return _records({TP: taken}), part.next_fetch_offset, bool(part), error


def same(data: bytes, **kwargs):
    ours, theirs = read(FastRecords, data, **kwargs), read(Fetcher.PartitionRecords, data, **kwargs)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_reads_the_same_records(codec):
    records, next_offset, _, error = same(v2_batch(40, ROWS, CODECS[codec]) + v2_batch(45, ROWS[:2]))
    assert error is None and next_offset == 47
    assert [r.offset for r in records] == [40, 41, 42, 43, 44, 45, 46]
    assert records[1] == Record("orders", 3, 41, 1_700_000_000_007, b'{"type":"no key"}',
                                (("trace", b"t-1"), ("empty", None), ("caf\u00e9", b"\xff")), None)
    assert records[2].value is None and records[4].value == b"v" * 70_000


def test_a_log_append_time_batch_gives_every_record_the_batchs_time():
    records, *_ = same(_with_attributes(v2_batch(0, ROWS[:3]), 0x08))
    assert {r.timestamp_ms for r in records} == {1_700_000_000_014}


def test_a_fetch_from_inside_a_batch_and_a_partial_take_stop_where_the_library_stops():
    data = v2_batch(10, ROWS) + v2_batch(15, ROWS)
    records, next_offset, drained_not, _ = same(data, fetch_offset=12, take=4)
    assert [r.offset for r in records] == [12, 13, 14, 15] and next_offset == 16 and drained_not


@pytest.mark.parametrize("isolation", [IsolationLevel.READ_COMMITTED,
                                       IsolationLevel.READ_UNCOMMITTED])
def test_aborted_transactions_and_markers_are_skipped_as_the_library_skips_them(isolation):
    data = (v2_batch(0, ROWS[:2]) + v2_batch(2, ROWS[:2], transactional=True, producer_id=7)
            + v2_batch(4, ROWS[:1], transactional=True, producer_id=8) + marker(5, 7, False)
            + marker(6, 8, True) + v2_batch(7, ROWS[:1]))
    records, next_offset, _, _ = same(data, isolation_level=isolation,
                                      aborted_transactions=[Aborted(7, 2)])
    expected = [0, 1, 4, 7] if isolation == IsolationLevel.READ_COMMITTED else [0, 1, 2, 3, 4, 7]
    assert [r.offset for r in records] == expected and next_offset == 8


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_formats_are_read_by_the_librarys_loop(magic):
    records, next_offset, _, _ = same(legacy_batch(magic, 20, ROWS[:3]) + v2_batch(23, ROWS[:1]))
    assert [r.offset for r in records] == [20, 21, 22, 23] and next_offset == 24


def test_a_corrupt_record_raises_the_same_error_after_the_same_records():
    data = bytearray(v2_batch(0, ROWS[:3]))
    assert data[61 + 4] == 2 * len(b"alice")      # the first record's key size (zigzag)
    data[61 + 4] = 2              # now 1: the record's sizes no longer add up
    records, _, _, error = same(bytes(data), check_crcs=False)
    assert error is Errors.CorruptRecordError and records == []
    assert same(bytes(data), check_crcs=True)[3] is Errors.CorruptRecordError


def test_a_header_name_that_is_not_utf8_is_read_as_kafkas_java_client_reads_it():
    """Java decodes header names with replacement characters; a strict decode made the record
    "corrupt" and stalled its partition for good (a Go producer can write any bytes there)."""
    data = bytearray(v2_batch(0, [(None, b'{"type":"a"}', [("h\u00e9", b"v")]),
                                  (None, b'{"type":"b"}', [])]))
    name = data.index("h\u00e9".encode())
    data[name + 1:name + 3] = b"\xff\xfe"                  # same size, no longer UTF-8
    records, next_offset, _, error = read(FastRecords, _with_attributes(bytes(data), 0))
    assert error is None and next_offset == 2
    assert [r.headers for r in records] == [(("h\ufffd\ufffd", b"v"),), ()]


def _consumer():
    consumer = type("Consumer", (), {})()
    consumer._fetcher = type("FetcherStub", (), {"PartitionRecords": Fetcher.PartitionRecords})()
    return consumer


def test_install_sets_the_reader_only_on_the_version_it_was_written_for(monkeypatch):
    consumer = _consumer()
    assert kafka_records.install(consumer) and consumer._fetcher.PartitionRecords is FastRecords
    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    other = _consumer()
    assert not kafka_records.install(other)
    assert other._fetcher.PartitionRecords is Fetcher.PartitionRecords


def test_install_keeps_the_librarys_reader_when_a_part_it_uses_is_gone(monkeypatch, caplog):
    monkeypatch.delattr(Fetcher.PartitionRecords, "_is_batch_aborted")
    consumer = _consumer()
    with caplog.at_level("INFO", logger="actors.kafka_records"):
        assert not kafka_records.install(consumer)
    assert consumer._fetcher.PartitionRecords is Fetcher.PartitionRecords
    assert "no PartitionRecords._is_batch_aborted" in caplog.text
