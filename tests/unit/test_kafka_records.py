"""kafka_records.FastRecords reads every shape of fetched batch exactly as kafka-python's own
PartitionRecords does: the same records (as kafka_reads Records), the same next fetch offset,
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
from kafka.record.util import calc_crc32c, encode_varint

from actors import kafka_records
from actors.kafka_records import FastRecords
from actors.kafka_reads import Record, as_records

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
    return as_records({TP: taken}), part.next_fetch_offset, bool(part), error


def same(data: bytes, **kwargs):
    ours, theirs = read(FastRecords, data, **kwargs), read(Fetcher.PartitionRecords, data, **kwargs)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_reads_the_same_records(codec):
    data = v2_batch(40, ROWS, CODECS[codec]) + v2_batch(45, ROWS[:2])
    records, next_offset, _, error = same(data)
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


# -- where the next fetch starts, and what is refused (from a mutation audit) -----------------
def _with_crc(batch: bytes) -> bytes:
    """The batch with its CRC (over the bytes after it) made again."""
    return batch[:17] + struct.pack(">I", calc_crc32c(batch[21:])) + batch[21:]


def _one_record(headers=b"\x00", length_more=0) -> bytes:
    """A v2 batch of one hand-made record: no key, value b"v", then `headers` (the header count
    and headers as written); its length prefix says `length_more` bytes more than it has."""
    body = bytes([0, 0, 0, 1, 2]) + b"v" + headers     # attributes, ts, offset, key -1, size 1
    record = bytearray()
    encode_varint(len(body) + length_more, record.append)
    batch = bytearray(v2_batch(0, [(None, b"v", [])])[:61]) + record + body
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    return _with_crc(bytes(batch))


def test_a_batch_whose_last_records_were_compacted_away_is_fetched_past_its_end():
    """A compacted topic keeps a batch's offset range though its last records are gone: fetching
    on from the last record left would get the same batch again, and the partition would
    wedge, refetching it for ever, its later events never delivered."""
    batch = bytearray(v2_batch(10, ROWS[:2]))
    struct.pack_into(">i", batch, 23, 4)           # last offset delta 4: 12..14 compacted away
    records, next_offset, _, error = same(_with_crc(bytes(batch)))
    assert error is None and [r.offset for r in records] == [10, 11] and next_offset == 15


def test_a_legacy_format_batch_moves_the_next_fetch_past_its_records():
    """A topic still holding v0/v1 messages (written by a pre-0.11 client): without the next
    fetch offset moved past them, the same messages were fetched again and again."""
    for magic in (0, 1):
        records, next_offset, _, error = same(legacy_batch(magic, 20, ROWS[:3]))
        assert error is None and [r.offset for r in records] == [20, 21, 22]
        assert next_offset == 23


def test_a_producers_commit_after_its_own_abort_is_delivered():
    """A transactional producer that aborted once and then committed: under read_committed the
    committed events must be delivered; kept in the aborted set, they were silently lost."""
    data = (v2_batch(0, ROWS[:1], transactional=True, producer_id=7) + marker(1, 7, False)
            + v2_batch(2, ROWS[:1], transactional=True, producer_id=7) + marker(3, 7, True))
    records, next_offset, _, _ = same(data, isolation_level=IsolationLevel.READ_COMMITTED,
                                      aborted_transactions=[Aborted(7, 0)])
    assert [r.offset for r in records] == [2] and next_offset == 4


def test_a_batch_damaged_in_a_value_byte_fails_its_crc_check():
    """A bit flipped on the wire or on disk: with check_crcs the batch is refused as corrupt,
    never delivered to subscribers as an event with a damaged payload."""
    batch = bytearray(v2_batch(0, ROWS[:1]))
    batch[-3] ^= 1                                 # inside the value: the CRC no longer matches
    assert same(bytes(batch), check_crcs=True)[3] is Errors.CorruptRecordError


def test_a_hand_made_record_reads_as_the_library_reads_it():
    """The hand-made record is sound: the corrupt ones below fail for their one flaw."""
    records, next_offset, _, error = same(_one_record(), check_crcs=False)
    assert error is None and records[0].value == b"v" and next_offset == 1


def test_a_record_whose_length_does_not_add_up_is_corrupt():
    """A record whose length prefix disagrees with its fields is corrupt (as kafka-python says),
    not read on from the wrong place into garbage events."""
    data = _one_record(length_more=1)
    assert same(data, check_crcs=False)[3] is Errors.CorruptRecordError


def test_a_negative_header_count_is_corrupt():
    """A header count of -1 is corrupt, as kafka-python says, not a record without headers."""
    data = _one_record(headers=b"\x01")            # zigzag varint -1
    assert same(data, check_crcs=False)[3] is Errors.CorruptRecordError


def test_a_negative_header_name_size_is_corrupt():
    """A header name of size -1 is corrupt, as kafka-python says, not read as an empty name."""
    data = _one_record(headers=b"\x02\x01")        # one header, its name size -1
    assert same(data, check_crcs=False)[3] is Errors.CorruptRecordError
