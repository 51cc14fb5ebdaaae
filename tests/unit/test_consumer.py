import json

from actors.consumer import KafkaConsumerActor
from actors.kafka_source import KafkaUnreachable, Record
from actors.messages import Consumed, KafkaStateChanged
from actors.settings import Settings
from tests.fakes import FakeRef, FakeSource

SETTINGS = Settings.defaults(kafka_topics=("blog.posts",), kafka_metadata_refresh_ms=1000)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _actor(source, clock=None, factory=None):
    broker = FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS, broker=broker,
                               source_factory=factory or (lambda settings: source),
                               clock=clock or Clock(), sleep=lambda s: None)
    return actor, broker


def _record(offset, value):
    return Record("blog.posts", 0, offset, 1736164800000, value, ())


def test_first_assignment_starts_at_the_end_later_partitions_at_the_beginning():
    source, clock = FakeSource({("blog.posts", 0), ("blog.posts", 1)}), Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    assert source.assignments == [({("blog.posts", 0), ("blog.posts", 1)}, True)]
    source.available.add(("blog.posts", 2))
    actor.step()                       # before the refresh interval: nothing new
    clock.now = 1.5
    actor.step()
    assert source.assignments[-1] == ({("blog.posts", p) for p in range(3)}, False)
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected" and len(state.partitions) == 3


def test_records_become_one_batch_and_bad_ones_are_counted():
    source = FakeSource({("blog.posts", 0)})
    actor, broker = _actor(source)
    source.queue = [_record(0, json.dumps({"type": "a.b", "data": 1}).encode()),
                    _record(1, b"{broken"),
                    _record(2, b"[]"),
                    _record(3, json.dumps({"type": "c.d"}).encode())]
    actor.step()
    [batch] = broker.of(Consumed)
    assert [e.type for e in batch.events] == ["a.b", "c.d"]
    assert batch.invalid_topics == ("blog.posts", "blog.posts")


def test_an_unreachable_kafka_is_reported_and_retried_with_backoff():
    attempts = []

    def factory(settings):
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaUnreachable("no broker accepts connections")
        return FakeSource({("blog.posts", 0)})

    actor, broker = _actor(None, factory=factory)
    actor.on_start()
    actor.step()
    actor.step()
    assert actor.source is None and actor.backoff == 2.0
    actor.step()
    states = [m.state for m in broker.of(KafkaStateChanged)]
    assert states == ["connecting", "unreachable", "connected"]


def test_losing_the_connection_is_reported_once():
    source = FakeSource({("blog.posts", 0)})
    actor, broker = _actor(source)
    actor.step()
    source.is_connected = False
    actor.step()
    actor.step()
    source.is_connected = True
    actor.step()
    assert [m.state for m in broker.of(KafkaStateChanged)] == ["connected", "unreachable", "connected"]
