"""actors/kafka_source.py, kafka_reader.py and kafka_reads.py on a stand-in KafkaConsumer: how
records are read, how a partition whose batch cannot be read is set aside and retried, and the
replay reader's bounded fetch.
(Against a real broker: tests/e2e/test_kafka_records.py and test_kafka_modes.py.)"""
from collections import deque
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka import errors as kafka_errors

from actors import kafka_client, kafka_reader, kafka_reads, kafka_source
from actors.kafka_client import KafkaRefused, KafkaUnreachable
from actors.kafka_reader import KafkaReader, Retained, Unreadable
from actors.kafka_reads import Record
from actors.kafka_source import KafkaSource, Stall
from actors.messages import Skip

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Message(SimpleNamespace):
    pass


def _message(tp, offset, value=b"{}", headers=None):
    return Message(topic=tp.topic, partition=tp.partition, offset=offset, timestamp=offset * 10,
                   value=value, headers=headers, key=b"k")


class FakeCluster:
    def __init__(self):
        self.topics, self.updates = (), 0
        self.partitions = {"t": {0, 1}}
        self.ids = {"t": "id-1"}
        self.unauthorized_topics = set()

    def set_topics(self, topics):
        self.topics = tuple(topics)

    def partitions_for_topic(self, topic):
        return self.partitions.get(topic)

    def topic_id(self, topic):
        return self.ids.get(topic)

    def request_update(self):
        self.updates += 1


class FakeFetcher:
    def __init__(self):
        self._next_partition_records = None
        self._next_in_line_exception_metadata = None
        self._paused_partition_records = {}
        self._paused_completed_fetches = {}
        self._completed_fetches = deque()


class FakeConsumer:
    """The parts of kafka.KafkaConsumer that kafka_source uses."""

    def __init__(self):
        self._cluster = FakeCluster()
        self._fetcher = FakeFetcher()
        self._subscription = SimpleNamespace(assignment={})
        self._manager = SimpleNamespace(_conns={"n1": SimpleNamespace(connected=True)}, config={})
        self.batches = deque()       # what each poll() returns, or raises
        self.seeks, self.paused, self.resumed = [], [], []
        self.high = {}
        self.closed = False

    def assign(self, tps):
        self._subscription.assignment = {
            tp: self._subscription.assignment.get(tp, SimpleNamespace(position=None))
            for tp in tps}

    def assignment(self):
        return set(self._subscription.assignment)

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self._subscription.assignment[tp] = SimpleNamespace(position=SimpleNamespace(offset=offset))

    def position(self, tp, timeout_ms=None):
        return self._subscription.assignment[tp].position.offset

    def poll(self, timeout_ms):
        batch = self.batches.popleft() if self.batches else {}
        if isinstance(batch, Exception):
            raise batch
        for tp, messages in batch.items():
            if messages:                               # the consumer moves on (not a seek)
                self._subscription.assignment[tp] = SimpleNamespace(
                    position=SimpleNamespace(offset=messages[-1].offset + 1))
        return batch

    def pause(self, tp):
        self.paused.append(tp)

    def resume(self, tp):
        self.resumed.append(tp)

    def highwater(self, tp):
        return self.high.get(tp)

    def beginning_offsets(self, tps, timeout_ms):
        return {tp: 2 for tp in tps}

    def end_offsets(self, tps, timeout_ms):
        return {tp: 9 for tp in tps}

    def offsets_for_times(self, query, timeout_ms):
        return {tp: (SimpleNamespace(offset=5) if tp.partition == 0 else None) for tp in query}

    def close(self, autocommit, timeout_ms):
        if self.closed:
            raise RuntimeError("closed twice")
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def consumer(monkeypatch):
    fake = FakeConsumer()
    for module in (kafka_source, kafka_reader):
        monkeypatch.setattr(module, "open_consumer", lambda settings, role, **kw: fake)
    return fake


SETTINGS = SimpleNamespace(kafka_topics=("t",))
ORIGINAL_OPEN = kafka_client.open_consumer


# -- pure helpers -----------------------------------------------------------------------------

def test_records_keep_every_field_of_a_kafka_message():
    batches = {T0: [_message(T0, 4, headers=[("type", b"x")])], T1: [_message(T1, 1, None)]}
    assert kafka_reads.as_records(batches) == [
        Record("t", 0, 4, 40, b"{}", (("type", b"x"),), b"k"),
        Record("t", 1, 1, 10, None, (), b"k")]


@pytest.mark.parametrize("error, reason", [
    (kafka_errors.TopicAuthorizationFailedError({"t"}), "not authorized to read this topic"),
    (kafka_errors.UnsupportedCodecError("lz4"), "batch compressed with a codec this gateway lacks"),
    (kafka_errors.CorruptRecordError("crc"), "corrupt batch: "),
    (ValueError("odd"), "cannot read the next batch: ValueError: odd"),
])
def test_a_read_failure_is_explained(error, reason):
    explained = kafka_reads.reason_of(error)
    assert explained.startswith(reason)
    assert "not authorized" in reason or str(error.args[0]) in explained     # and the detail


def test_a_denied_partition_is_retried_sooner_than_an_undecodable_one():
    denied = Stall(3, "not authorized to read this topic", 0.0)
    broken = Stall(3, "corrupt batch: crc", 0.0)
    assert kafka_source._retry_after(denied) < kafka_source._retry_after(broken)


def test_the_partitions_a_poll_error_is_about_are_found_where_the_fetcher_left_them():
    fake = FakeConsumer()
    fake.assign([T0, T1])
    assert kafka_reads.failed_partitions(fake, ValueError("x")) == []
    assert kafka_reads.failed_partitions(fake, ValueError({T1: 4})) == [T1]
    assert sorted(kafka_reads.failed_partitions(fake, ValueError({"t"}))) == [T0, T1]
    fake._fetcher._next_in_line_exception_metadata = SimpleNamespace(partition=T0)
    assert kafka_reads.failed_partitions(fake, ValueError("x")) == [T0]
    fake._fetcher._next_partition_records = SimpleNamespace(topic_partition=T1)
    assert kafka_reads.failed_partitions(fake, ValueError("x")) == [T1]


class _Drained(SimpleNamespace):
    """kafka-python's PartitionRecords once all its records were taken: falsy."""

    def __bool__(self):
        return False


def test_a_drained_partition_is_not_blamed_for_a_poll_error():
    """The fetcher keeps the last partition it read after taking all its records; a poll error
    about another partition was blamed on that one: the healthy partition was set aside (its
    events late by a minute), the one whose batch failed was polled again and again."""
    fake = FakeConsumer()
    fake.assign([T0, T1])
    fake._fetcher._next_partition_records = _Drained(topic_partition=T1)
    fake._fetcher._next_in_line_exception_metadata = SimpleNamespace(partition=T0)
    assert kafka_reads.failed_partitions(fake, ValueError("x")) == [T0]


def test_forgetting_a_partition_drops_everything_the_fetcher_holds_of_it():
    fake = FakeConsumer()
    fetcher = fake._fetcher
    fetcher._next_partition_records = SimpleNamespace(topic_partition=T0)
    fetcher._next_in_line_exception_metadata = SimpleNamespace(partition=T0)
    fetcher._paused_partition_records = {T0: 1, T1: 1}
    fetcher._paused_completed_fetches = {T0: 1}
    fetcher._completed_fetches = deque([SimpleNamespace(topic_partition=T0),
                                        SimpleNamespace(topic_partition=T1)])
    kafka_reads.forget(fake, T0)
    assert fetcher._next_partition_records is None
    assert fetcher._next_in_line_exception_metadata is None
    assert fetcher._paused_partition_records == {T1: 1} and fetcher._paused_completed_fetches == {}
    assert [c.topic_partition for c in fetcher._completed_fetches] == [T1]
    assert kafka_reads.position_of(fake, T0) == 0             # not assigned: unknown


# -- the live source --------------------------------------------------------------------------
def test_the_source_watches_its_topics_and_reads_from_the_given_offsets(consumer):
    source = KafkaSource(SETTINGS, clock=Clock())
    assert consumer._cluster.topics == ("t",)
    assert source.partitions() == {("t", 0), ("t", 1)}
    assert source.topic_ids() == {"t": "id-1"}
    consumer._cluster.unauthorized_topics = {"t", "other"}
    assert source.unauthorized_topics() == {"t"}
    source.refresh()
    assert consumer._cluster.updates == 1
    source.assign({("t", 0), ("t", 1)}, {("t", 0): 3})
    assert consumer.seeks == [(T0, 3)] and consumer._cluster.topics == ("t",)
    consumer.batches.append({T0: [_message(T0, 3), _message(T0, 4)]})
    assert [r.offset for r in source.poll(10)] == [3, 4]
    assert source.positions() == {("t", 0): 5}                  # t:1 has no position yet
    consumer.high = {T0: 9}
    assert source.highwaters() == {("t", 0): 9}
    assert source.bounds({("t", 0)}) == ({("t", 0): 2}, {("t", 0): 9})
    assert source.offsets_for_time({("t", 0), ("t", 1)}, 50) == {("t", 0): 5, ("t", 1): None}
    assert source.connected()
    source.close()
    source.close()                                             # a failing close is only logged
    assert consumer.closed


def test_an_unassigned_source_waits_instead_of_polling(consumer, monkeypatch):
    slept = []
    monkeypatch.setattr(kafka_source.time, "sleep", slept.append)
    consumer.batches.append(RuntimeError("must not poll"))
    assert KafkaSource(SETTINGS).poll(20) == [] and slept == [0.02]


def test_a_partition_whose_batch_cannot_be_read_is_set_aside_then_retried(consumer, caplog):
    clock = Clock()
    source = KafkaSource(SETTINGS, clock=clock)
    source.assign({("t", 0), ("t", 1)}, {("t", 0): 7, ("t", 1): 0})
    consumer._fetcher._next_partition_records = SimpleNamespace(topic_partition=T0)
    consumer.batches.append(kafka_errors.CorruptRecordError("crc"))
    assert source.poll(10) == []
    [(key, stall)] = source.stalled().items()
    assert key == ("t", 0) and stall.offset == 7 and stall.reason.startswith("corrupt batch: ")
    assert consumer.paused == [T0] and consumer._fetcher._next_partition_records is None
    assert "not reading t:0 from offset 7" in caplog.text
    assert source.positions() == {("t", 1): 0}                 # the other one goes on
    clock.now += kafka_source.STALL_RETRY_S
    source.poll(10)                                            # the retry: seek back, resume
    assert (T0, 7) in consumer.seeks and consumer.resumed == [T0]
    assert source.stalled()[("t", 0)].retrying_since == clock.now
    caplog.clear()
    consumer._fetcher._next_partition_records = SimpleNamespace(topic_partition=T0)
    consumer.batches.append(kafka_errors.CorruptRecordError("crc"))
    source.poll(10)                                            # the same failure again
    assert "not reading" not in caplog.text                    # said once
    clock.now += kafka_source.STALL_RETRY_S
    source.poll(10)
    consumer.batches.append({T0: [_message(T0, 7)]})
    assert [r.offset for r in source.poll(10)] == [7]          # read again: no longer stalled
    assert source.stalled() == {}


def test_a_partition_told_to_go_on_is_read_from_there_whatever_stopped_it(consumer):
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0), ("t", 1)}, {("t", 0): 7, ("t", 1): 0})
    consumer._fetcher._next_partition_records = SimpleNamespace(topic_partition=T0)
    consumer.batches.append(kafka_errors.CorruptRecordError("crc"))
    source.poll(10)
    assert ("t", 0) in source.stalled()
    source.go_on({("t", 0): 20})
    assert source.stalled() == {} and (T0, 20) in consumer.seeks and consumer.resumed == [T0]


def test_a_retried_partition_without_new_errors_is_no_longer_stalled(consumer):
    clock = Clock()
    source = KafkaSource(SETTINGS, clock=clock)
    source.assign({("t", 0)}, {("t", 0): 0})
    consumer.batches.append(kafka_errors.TopicAuthorizationFailedError({"t"}))
    source.poll(10)
    assert "not authorized" in source.stalled()[("t", 0)].reason
    assert source.poll(10) == []                               # all set aside: nothing to poll
    clock.now += kafka_source.DENIED_RETRY_S
    source.poll(10)
    clock.now += kafka_source.RECOVERED_AFTER_S
    source.poll(10)
    assert source.stalled() == {}


def test_a_topic_refused_by_an_acl_is_one_line_that_says_what_to_do(consumer, caplog):
    """READ denied on a topic of 12 partitions: 12 ERROR lines, one per partition, each saying
    'not authorized to read this topic' and none what to do (a log audit)."""
    source = KafkaSource(SETTINGS)
    source.assign({("t", p) for p in range(12)}, {("t", p): 0 for p in range(12)})
    consumer.batches.append(kafka_errors.TopicAuthorizationFailedError({"t"}))
    source.poll(10)
    assert len(source.stalled()) == 12
    (line,) = [r.getMessage() for r in caplog.records if "not reading" in r.getMessage()]
    assert line.startswith("not reading 12 partition(s) of t (t:0 from offset 0, "), line
    assert "and 8 more" in line and "grant" in line and "KAFKA_TOPICS" in line, line


def test_a_poll_error_about_no_partition_is_raised(consumer):
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {})
    consumer.batches.append(RuntimeError("network"))
    with pytest.raises(RuntimeError, match="network"):
        source.poll(10)


# -- the replay reader ------------------------------------------------------------------------
def test_the_reader_fetches_only_its_ranges_and_keeps_its_place(consumer):
    reader = KafkaReader(SETTINGS)
    assert reader.fetch({("t", 0): (4, 4)}) == ([], {("t", 0): 4})   # nothing wanted
    consumer.batches.append({T0: [_message(T0, o) for o in (2, 3, 4, 5)]})
    records, positions = reader.fetch({("t", 0): (3, 5)})
    assert [r.offset for r in records] == [3, 4] and positions == {("t", 0): 6}
    assert consumer.seeks == [(T0, 3)]
    consumer.batches.append({T0: [_message(T0, 6)]})
    reader.fetch({("t", 0): (6, 9)})
    assert consumer.seeks == [(T0, 3)]                         # went on without a seek


def test_the_reader_seeks_when_a_read_starts_elsewhere_in_a_partition(consumer):
    """Another replay of a partition the reader already reads, from an earlier offset: without a
    seek it went on from where the last read stopped, and the resumed stream missed events."""
    reader = KafkaReader(SETTINGS)
    consumer.batches.append({T0: [_message(T0, o) for o in (3, 4)]})
    reader.fetch({("t", 0): (3, 5)})
    consumer.batches.append({T0: [_message(T0, o) for o in (0, 1)]})
    records, _ = reader.fetch({("t", 0): (0, 2)})          # another resume, from earlier
    assert consumer.seeks == [(T0, 3), (T0, 0)] and [r.offset for r in records] == [0, 1]


def test_a_fetch_over_many_partitions_costs_in_proportion_to_them(consumer, monkeypatch):
    """kafka-python 3.0's position() checks every assigned partition for a reset or a
    validation at each call: asked once per partition, a fetch over 344 partitions took about
    1 s of CPU, without a yield (live streams stalled for seconds while one client resumed)."""
    checked = []

    def position(tp, timeout_ms=None):
        checked.append(len(consumer._subscription.assignment))
        return consumer._subscription.assignment[tp].position.offset

    monkeypatch.setattr(consumer, "position", position)
    reader = KafkaReader(SETTINGS)
    tps = [TopicPartition("t", n) for n in range(300)]
    consumer.batches.append({tp: [_message(tp, 7)] for tp in tps[:100]})
    records, positions = reader.fetch({(tp.topic, tp.partition): (7, 9) for tp in tps})
    assert len(records) == 100
    assert positions == {("t", n): 8 if n < 100 else 7 for n in range(300)}
    assert sum(checked) <= len(tps)


def test_a_position_retention_deleted_is_retained_with_the_first_offset_kept(consumer):
    """The replay consumer does not reset by itself (it would skip without a word)."""
    reader = KafkaReader(SETTINGS)
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 1}))
    with pytest.raises(Retained) as gone:
        reader.fetch({("t", 0): (1, 5)})
    assert gone.value.offsets == {("t", 0): (1, 2)}             # Kafka keeps from 2 on
    consumer.batches.append({T0: [_message(T0, 2)]})
    records, _ = reader.fetch({("t", 0): (2, 5)})
    assert [r.offset for r in records] == [2] and consumer.seeks[-1] == (T0, 2)
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 9}))   # past the end
    with pytest.raises(kafka_errors.OffsetOutOfRangeError):
        reader.fetch({("t", 0): (9, 12)})


def test_an_unreadable_batch_names_its_partitions_and_where_they_stand(consumer):
    reader = KafkaReader(SETTINGS)
    consumer._fetcher._next_partition_records = SimpleNamespace(topic_partition=T1)
    consumer.batches.append(kafka_errors.UnsupportedCodecError("zstd"))
    with pytest.raises(Unreadable) as raised:
        reader.fetch({("t", 0): (0, 5), ("t", 1): (2, 5)})
    assert raised.value.offsets == {("t", 1): 2} and "zstd" in raised.value.reason
    consumer.batches.append(RuntimeError("down"))
    with pytest.raises(RuntimeError, match="down"):
        reader.fetch({("t", 0): (0, 5)})


# -- positions Kafka no longer has (the live source) ------------------------------------------
def test_the_live_consumer_never_resets_its_position_by_itself(consumer, monkeypatch):
    import kafka
    opened = {}
    monkeypatch.setattr(kafka_client, "connect_failures", lambda brokers: [])
    monkeypatch.setattr(kafka, "KafkaConsumer", lambda **kw: opened.update(kw) or consumer)
    monkeypatch.setattr(kafka_source, "open_consumer", ORIGINAL_OPEN)
    monkeypatch.setattr("actors.kafka_records.install", lambda c: None)
    monkeypatch.setattr("actors.kafka_diagnosis.install", lambda: None)
    monkeypatch.setattr("actors.prompt.selector_class", lambda: None)
    monkeypatch.setattr("actors.prompt.patch_kafka", lambda: None)
    monkeypatch.setattr(kafka_client, "consumer_args", lambda settings, role: {})
    KafkaSource(SimpleNamespace(kafka_topics=("t",), kafka_brokers=["h:1"],
                                kafka_metadata_refresh_ms=1000))
    assert opened["auto_offset_reset"] == "none"       # "earliest" would skip without a word


def test_a_live_position_deleted_by_retention_goes_on_from_the_oldest_kept(consumer, caplog):
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0), ("t", 1)}, {("t", 0): 1, ("t", 1): 4})
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 1}))
    assert source.poll(10) == []
    assert source.skipped() == [Skip("retention", ("t", 0), 1, 2)]    # Kafka keeps from 2 on
    assert consumer.seeks[-1] == (T0, 2) and source.stalled() == {}
    assert source.skipped() == []                                   # told once
    [line] = [r for r in caplog.records if "retention" in r.getMessage()]
    assert line.levelname == "WARNING" and "t:0 offsets 1 to 2" in line.getMessage()
    assert "raise the topic's retention.ms" in line.getMessage()
    consumer.batches.append({T0: [_message(T0, 2)]})
    assert [r.offset for r in source.poll(10)] == [2]


def test_a_live_position_past_the_end_goes_on_from_the_end_without_looping(consumer, caplog):
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {("t", 0): 12})
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 12}))
    source.poll(10)
    assert source.skipped() == [Skip("truncated", ("t", 0), 12, 9)]    # the log ends at 9
    assert consumer.seeks[-1] == (T0, 9) and "truncated" in caplog.text
    consumer.batches.append(kafka_errors.LogTruncationError({T0: None}))
    consumer.seek(T0, 11)
    source.poll(10)
    assert source.skipped() == [Skip("truncated", ("t", 0), 11, 9)]
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 5}))   # in range after all
    source.poll(10)
    assert source.skipped() == [] and consumer.seeks[-1] == (T0, 5)


@pytest.mark.parametrize("position, diverged, resumed", [(8, 5, 5), (12, 5, 5), (8, 0, 2)])
def test_a_log_that_diverged_is_read_again_from_where_it_diverged(
        consumer, caplog, position, diverged, resumed):
    """After an unclean leader election the new leader's log parts from what the gateway read
    at `diverged` (kafka-python's LogTruncationError says where), and may have grown past the
    position again with records of its own: they were skipped without a gap (from the
    position, or from the new log's end at 9). It reads on from the divergence (or the oldest
    record kept, 2), and the gap event says so (an upstream audit)."""
    from kafka.structs import OffsetAndMetadata
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {("t", 0): position})
    consumer.batches.append(kafka_errors.LogTruncationError(
        {T0: OffsetAndMetadata(diverged, "", 3)}))
    assert source.poll(10) == []
    assert source.skipped() == [Skip("truncated", ("t", 0), position, resumed)]
    assert consumer.seeks[-1] == (T0, resumed)
    assert f"t:0 was truncated at offset {resumed}, before this gateway's position" in caplog.text


def test_a_divergence_is_gone_back_to_even_when_kafka_does_not_answer_the_offsets(
        consumer, monkeypatch):
    """kafka-python tells a divergence once (the position then counts as checked): the offsets
    look-up timing out right after an election lost it, and the new leader's records before
    the position were skipped for good (a review)."""
    from kafka.structs import OffsetAndMetadata
    def unanswered(tps, timeout_ms):
        raise kafka_errors.KafkaTimeoutError("no answer")
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {("t", 0): 8})
    monkeypatch.setattr(consumer, "beginning_offsets", unanswered)
    consumer.batches.append(kafka_errors.LogTruncationError({T0: OffsetAndMetadata(5, "", 3)}))
    assert source.poll(10) == []
    assert source.skipped() == [Skip("truncated", ("t", 0), 8, 5)]
    assert consumer.seeks[-1] == (T0, 5)
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 5}))   # refused again later
    with pytest.raises(kafka_reads.OffsetsUnanswered):
        source.poll(10)


def test_a_truncation_kafka_cannot_place_is_said_and_read_on_from_the_position(consumer, caplog):
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {("t", 0): 8})
    consumer.batches.append(kafka_errors.LogTruncationError({T0: None}))
    assert source.poll(10) == []
    assert source.skipped() == [] and consumer.seeks[-1] == (T0, 8)
    assert "t:0 was truncated under this gateway's position 8" in caplog.text
    assert "without saying where" in caplog.text


def test_a_position_refused_in_a_topic_created_again_is_not_taken_for_a_truncated_log(
        consumer, caplog, monkeypatch):
    """Kafka's metadata may list the topic's new incarnation before the consumer's next look
    at it: the position in the old one is then past the new log's end. That is no unclean
    leader election (a warning per partition, and a `truncated` gap to every live stream, for
    a 48-partition topic created again with 4 partitions): the partition waits, unread, for
    the consumer to read the topic anew."""
    from actors import resume
    monkeypatch.setattr(resume, "INCARNATIONS", resume.Incarnations())
    resume.INCARNATIONS.learn("t", "id-1")
    source = KafkaSource(SETTINGS)
    source.assign({("t", 0)}, {("t", 0): 60})
    consumer._cluster.ids["t"] = "id-2"                    # deleted and created again
    consumer.batches.append(kafka_errors.OffsetOutOfRangeError({T0: 60}))
    assert source.poll(10) == []
    assert source.skipped() == [] and "truncated" not in caplog.text
    assert consumer.paused == [T0] and consumer.seeks[-1] == (T0, 60)
    source.assign({("t", 0)}, {("t", 0): 0})               # the consumer reads it anew
    assert consumer.seeks[-1] == (T0, 0) and consumer.resumed == [T0]


@pytest.mark.parametrize("lookup", ["bounds", "offsets_for_time"])
def test_an_offset_lookup_on_a_partition_without_a_leader_is_a_kafka_error(consumer, lookup):
    """kafka-python 3.0 raises a bare KeyError there; the replay took it for its own bug (a
    traceback per resuming client, 'replay failed for this request') while a broker was down."""
    def no_leader(query, timeout_ms):
        raise KeyError(T1)
    consumer.beginning_offsets = consumer.end_offsets = consumer.offsets_for_times = no_leader
    reader = KafkaReader(SETTINGS)
    call = reader.bounds if lookup == "bounds" else (lambda ps: reader.offsets_for_time(ps, 0))
    with pytest.raises(kafka_errors.KafkaError, match="t:1 has no leader") as raised:
        call({("t", 0), ("t", 1)})
    from actors.replay import _kafka_down
    assert _kafka_down(raised.value)      # the replay says "unavailable; retry", no traceback


def test_the_replay_reader_watches_the_metadata_of_every_topic(consumer):
    """Its assign() narrowed kafka-python's metadata to the topics it read last; a refresh
    then dropped the others, and a look-up over both failed (a KeyError): every resume that
    needed them ended 'replay unavailable'. Watching all of them, assign() keeps them."""
    settings = SimpleNamespace(kafka_topics=("t", "u"))
    KafkaReader(settings)
    assert consumer._cluster.topics == ("t", "u")


# -- connection attempts while the brokers refuse us ------------------------------------------
def _opened_with(monkeypatch, consumer, fail=None, **source_args):
    """The KafkaConsumer arguments KafkaSource opens with (`fail`: its constructor raises)."""
    import kafka
    opened = {}

    def construct(**kw):
        opened.update(kw)
        if fail is not None:
            raise fail
        return consumer

    consumer._manager.config = {}
    monkeypatch.setattr(kafka_client, "connect_failures", lambda brokers: [])
    monkeypatch.setattr(kafka, "KafkaConsumer", construct)
    monkeypatch.setattr(kafka_source, "open_consumer", ORIGINAL_OPEN)
    monkeypatch.setattr("actors.kafka_records.install", lambda c: None)
    monkeypatch.setattr("actors.kafka_diagnosis.install", lambda: None)
    monkeypatch.setattr("actors.prompt.selector_class", lambda: None)
    monkeypatch.setattr("actors.prompt.patch_kafka", lambda: None)
    monkeypatch.setattr(kafka_client, "consumer_args", lambda settings, role: {})
    settings = SimpleNamespace(kafka_topics=("t",), kafka_brokers=["h:1"],
                               kafka_metadata_refresh_ms=1000)
    return opened, (lambda: KafkaSource(settings, **source_args))


def test_a_first_bootstrap_retries_quickly_and_a_patient_one_tries_each_broker_once(
        consumer, monkeypatch):
    opened, open_source = _opened_with(monkeypatch, consumer)
    open_source()
    assert opened["reconnect_backoff_ms"] == 50
    assert opened["reconnect_backoff_ms"] * 4 < opened["bootstrap_timeout_ms"]
    opened, open_source = _opened_with(monkeypatch, consumer, patient=True)
    open_source()
    # a second attempt at the same broker would come after the bootstrap's time-out
    assert opened["reconnect_backoff_ms"] * 2 * 0.8 >= opened["bootstrap_timeout_ms"]
    # once in, a lost connection is retried quickly again (a broker restart)
    assert consumer._manager.config == {"reconnect_backoff_ms": 50,
                                        "reconnect_backoff_max_ms": 2000,
                                        "socket_connection_setup_timeout_ms": 3000,
                                        "socket_connection_setup_timeout_max_ms": 10000}


def test_a_bootstrap_kafka_refused_is_told_apart_from_no_broker_listening(consumer, monkeypatch):
    _opened, open_source = _opened_with(
        monkeypatch, consumer, fail=kafka_errors.KafkaTimeoutError("Unable to bootstrap"))
    with pytest.raises(KafkaRefused, match="bootstrap failed: .*Unable to bootstrap"):
        open_source()
    assert issubclass(KafkaRefused, KafkaUnreachable)


def test_while_refused_kafka_python_waits_up_to_a_minute_between_attempts(consumer, monkeypatch):
    _opened, open_source = _opened_with(monkeypatch, consumer)
    source = open_source()
    source.back_off(True)
    assert consumer._manager.config["reconnect_backoff_max_ms"] == 60000
    source.back_off(False)
    assert consumer._manager.config["reconnect_backoff_max_ms"] == 2000


# -- a leader the gateway cannot reach while other brokers let it in ------------------------------
def _leaders(consumer, leaders, brokers):
    consumer._cluster.leader_for_partition = lambda tp: leaders.get((tp.topic, tp.partition))
    consumer._cluster.broker_metadata = lambda node: brokers.get(node)
    consumer._manager._backoff, consumer._manager._auth_failures = {}, {}


def test_a_leader_that_refuses_or_fails_again_and_again_is_said_with_its_partitions(consumer):
    from kafka.errors import SaslAuthenticationFailedError
    source = KafkaSource(SETTINGS, clock=Clock())
    source.assign({("t", 0), ("t", 1)}, {})
    _leaders(consumer, {("t", 0): 1, ("t", 1): 2},
             {1: SimpleNamespace(host="k1", port=9092), 2: SimpleNamespace(host="k2", port=9093)})
    consumer._manager._conns = {1: SimpleNamespace(connected=True)}
    consumer._manager._backoff = {2: (2, 0.0, 0)}
    assert source.unreached() == []                     # two failures: perhaps a blip
    consumer._manager._backoff = {2: (3, 0.0, 0)}
    assert source.unreached() == [kafka_reads.Unreached(2, "k2:9093", (("t", 1),), "")]
    refusal = SaslAuthenticationFailedError("Authentication failed for user alice")
    consumer._manager._backoff, consumer._manager._auth_failures = {}, {2: refusal}
    assert source.unreached() == [kafka_reads.Unreached(2, "k2:9093", (("t", 1),), str(refusal))]
    consumer._manager._conns[2] = SimpleNamespace(connected=True)
    assert source.unreached() == []


def test_a_leader_that_refused_the_login_is_tried_again_not_given_up_for_ever(consumer):
    """kafka-python keeps a node's login refusal and raises it at every later connect without
    trying: the broker's partitions would stay unread after its credentials were mended."""
    from kafka.errors import SaslAuthenticationFailedError
    clock = Clock()
    source = KafkaSource(SETTINGS, clock=clock)
    source.assign({("t", 0)}, {})
    _leaders(consumer, {("t", 0): 2}, {2: SimpleNamespace(host="k2", port=9093)})
    consumer._manager._auth_failures = {2: SaslAuthenticationFailedError("no")}
    source.poll(10)
    assert 2 in consumer._manager._auth_failures                  # not at once: the broker's log
    clock.now += kafka_source.REFUSED_RETRY_S
    source.poll(10)
    assert consumer._manager._auth_failures == {}                 # the next fetch connects again
    consumer._manager._auth_failures = {2: SaslAuthenticationFailedError("still no")}
    clock.now += kafka_source.REFUSED_RETRY_S / 2
    source.poll(10)
    assert 2 in consumer._manager._auth_failures
    clock.now += kafka_source.REFUSED_RETRY_S / 2
    source.poll(10)
    assert consumer._manager._auth_failures == {}


def test_the_replay_reader_names_the_partitions_it_cannot_ask_kafka_about(consumer):
    """No leader (-1), or one that failed again and again or refused the login; a partition
    its metadata does not know yet (None) is looked up as usual."""
    from kafka.errors import SaslAuthenticationFailedError
    reader = KafkaReader(SETTINGS)
    _leaders(consumer, {("t", 0): 1, ("t", 1): -1, ("t", 2): 2},
             {1: SimpleNamespace(host="k1", port=9092), 2: SimpleNamespace(host="k2", port=9093)})
    consumer._manager._conns = {1: SimpleNamespace(connected=True)}
    everything = {("t", p) for p in range(4)}
    assert reader.unreadable(everything) == {("t", 1): "no leader (is its broker down?)"}
    consumer._manager._backoff = {2: (3, 0.0, 0)}
    assert (reader.unreadable(everything)[("t", 2)]
            == "its leader, broker 2 at k2:9093, does not answer")
    consumer._manager._backoff = {}
    consumer._manager._auth_failures = {2: SaslAuthenticationFailedError("no")}
    assert "refuses the gateway" in reader.unreadable(everything)[("t", 2)]
    assert reader.unreadable(set()) == {}


def test_partitions_are_named_in_runs_so_a_thousand_fit_a_short_log_line():
    """'assigned 1000 new partition(s): p1000:0, p1000:1, ...' was one line of 10,982
    characters (a Kafka-scale audit): log shippers split lines past 16 KiB, which breaks
    LOG_FORMAT=json. Runs are written as ranges, in numeric order."""
    assert kafka_reads.named({("p1000", n) for n in range(1000)}) == "p1000:0-999"
    assert kafka_reads.named({("u", 7), ("t", 10), ("u", 2), ("u", 5), ("u", 6), ("t", 9),
                              ("t", 1)}) == "t:1,9-10, u:2,5-7"
    assert kafka_reads.named({("t", 3)}) == "t:3" and kafka_reads.named(()) == ""
    spread = {(f"topic-{k:02}", n) for k in range(20) for n in range(0, 64, 2)}
    assert len(kafka_reads.named(spread)) < 4000     # 640 partitions, none in a run
