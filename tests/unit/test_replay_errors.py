"""The replay actor's shared Kafka reader survives a bad request; only Kafka errors drop it
(issue 11, item 7). On an unstarted actor with a fake reader."""
from types import SimpleNamespace

import pytest

from actors.filters import Filter
from actors.kafka_client import KafkaUnreachable
from actors.messages import DisconnectClient, ReadRange
from actors.replay import ReplayActor
from tests.fakes import FakeRef

P0 = ("blog.posts", 0)


class FakeReader:
    """No records; refuses negative times as kafka-python does; can be told to fail."""

    def __init__(self, fail=None):
        self.fail = fail
        self.asked_times = []
        self.closed = False

    def bounds(self, partitions):
        return {p: 0 for p in partitions}, {p: 0 for p in partitions}

    def unreadable(self, partitions):
        return {}

    def offsets_for_time(self, partitions, timestamp_ms):
        self.asked_times.append(timestamp_ms)
        if self.fail is not None:
            raise self.fail
        if timestamp_ms < 0:
            raise ValueError(f"The target time for partition {P0} is {timestamp_ms}. "
                             "The target time cannot be negative.")
        return {p: None for p in partitions}

    def read(self, ranges, deadline_s=30.0):
        return []

    def fetch(self, ranges):
        return [], {p: until for p, (_start, until) in ranges.items()}

    def close(self):
        self.closed = True


class _Replay(ReplayActor):
    actor_ref = None           # unstarted: its notes to itself go to a FakeRef


def _actor(reader):
    settings = SimpleNamespace(kafka_topics=("blog.posts",), sse_replay_max_events=100,
                               sse_max_event_bytes=1 << 20)
    actor = _Replay(settings=settings, reader_factory=lambda s: reader)
    actor.actor_ref = FakeRef()
    return actor


def _since(broker, since_ms, client_id="c1"):
    return ReadRange(client_id=client_id, filter=Filter.parse(None, None), start=None,
                     until={P0: 5}, reply_to=broker, since_ms=since_ms)


@pytest.mark.parametrize("since_ms", [-1000, 0])
def test_a_time_before_the_epoch_starts_at_the_log_start_without_asking_a_time(since_ms):
    """Kafka refuses negative times, and its answer for 0 passes over records without a time:
    the earliest event is the log start, which the replay looks up anyway."""
    reader, broker = FakeReader(), FakeRef()
    actor = _actor(reader)
    actor.on_receive(_since(broker, since_ms))
    assert reader.asked_times == []
    assert broker.of(DisconnectClient) == [] and not reader.closed


def test_a_failure_of_one_request_keeps_the_shared_reader():
    reader, broker = FakeReader(fail=ValueError("a bad request")), FakeRef()
    actor = _actor(reader)
    actor.on_receive(_since(broker, 5, "c1"))
    [told] = broker.of(DisconnectClient)
    assert told.client_id == "c1" and "Kafka unreachable" not in told.reason
    assert "this request" in told.reason
    assert actor.reader is reader and not reader.closed
    reader.fail = None
    actor.on_receive(_since(broker, 5, "c2"))       # the next client is served by it
    assert len(broker.of(DisconnectClient)) == 1 and reader.asked_times == [5, 5]


@pytest.mark.parametrize("error", [KafkaUnreachable("no broker"), ConnectionResetError(),
                                   "KafkaTimeoutError"])
def test_a_kafka_error_drops_the_reader_and_says_so(error):
    if isinstance(error, str):
        import kafka.errors
        error = getattr(kafka.errors, error)("timed out")
    reader, broker = FakeReader(fail=error), FakeRef()
    actor = _actor(reader)
    actor.on_receive(_since(broker, 5))
    [told] = broker.of(DisconnectClient)
    assert "Kafka unreachable" in told.reason
    assert actor.reader is None and reader.closed


def test_kafka_down_is_logged_once_per_interval_not_once_per_resuming_client(caplog):
    """During an outage every browser's resume attempt logged the same warning: 20 clients
    made 800 lines a minute (a thousand would make 50,000)."""
    import logging
    from actors import replay
    clock = SimpleNamespace(now=0.0)
    reader, broker = FakeReader(), FakeRef()
    actor = _actor(reader)
    actor.clock = lambda: clock.now
    actor.reader_factory = lambda s: (_ for _ in ()).throw(
        KafkaUnreachable("no broker of k:9092 accepts connections"))
    caplog.set_level(logging.WARNING, "actors.replay")
    for n in range(100):                                  # 100 resumes over 50 s
        clock.now = n * 0.5
        actor.on_receive(_since(broker, 5, f"c{n}"))
    assert len(broker.of(DisconnectClient)) == 100        # every client is still told
    lines = [r.getMessage() for r in caplog.records]
    assert 1 < len(lines) <= 50 / replay.DOWN_LOG_INTERVAL_S + 1, lines
    assert "no broker of k:9092 accepts connections" in lines[0]
    assert "more since the last report" in lines[1]
