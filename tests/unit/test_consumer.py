import json
import logging

import pytest

from actors import consumer, warm_start
from actors.consumer import KafkaConsumerActor
from actors.events import InvalidRecord, Position, time_order
from actors.kafka_client import KafkaUnreachable
from actors.kafka_reads import Record
from actors.kafka_source import Stall
from actors.messages import Consumed, KafkaLag, KafkaStateChanged, Poll
from actors.resume import decode
from actors.settings import Settings
from tests.fakes import FakeRef, FakeSource

TOPICS = ("blog.posts",)
SETTINGS = Settings.defaults(kafka_topics=TOPICS, kafka_metadata_refresh_ms=1000,
                             sse_history_size=3)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _now(run):
    run()           # the bootstrap, which the actor runs apart, ends at once


def _actor(source, clock=None, factory=None):
    broker = FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS, broker=broker,
                               source_factory=factory or (lambda settings: source),
                               clock=clock or Clock(), sleep=lambda s: None, spawn=_now)
    return actor, broker


def _step_later(actor):
    """A step once every partition's leader is due to be looked at again (WALK_EVERY_S)."""
    actor.clock.now += consumer.WALK_EVERY_S
    actor.step()


def _record(offset, value, partition=0, ts=1736164800000):
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    return Record("blog.posts", partition, offset, ts, value, ())


def test_first_assignment_reads_back_the_history_then_later_partitions_from_the_beginning():
    p0, p1, p2 = (("blog.posts", p) for p in range(3))
    source = FakeSource({p0, p1}, begin={p0: 0, p1: 5}, end={p0: 10, p1: 6})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    # each its share of 3 (2 of 2 partitions) back, not before begin
    assert source.assignments == [({p0, p1}, {p0: 8, p1: 5})]
    source.available.add(p2)
    source.begin[p2] = 2
    clock.now = 1.5
    actor.step()
    assert source.assignments[-1] == ({p0, p1, p2}, {p2: 2})
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected" and len(state.partitions) == 3


def test_warm_start_fills_the_history_with_the_newest_events_then_goes_live():
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 3, p1: 2})
    actor, broker = _actor(source)
    actor.step()
    [announce] = broker.of(Consumed)
    assert announce.events == () and announce.starts == announce.frontier == {p0: 3, p1: 2}
    source.queue = [_record(0, {"type": "a"}, 0, ts=1), _record(1, {"type": "b"}, 0, ts=3),
                    _record(2, b"bad", 0, ts=4), _record(0, {"type": "c"}, 1, ts=2),
                    _record(1, {"type": "d"}, 1, ts=5), _record(3, {"type": "live"}, 0, ts=9)]
    actor.step()
    _, warm, live = broker.of(Consumed)
    assert warm.warm and [e.type for e in warm.events] == ["c", "b", "d"]   # newest 3 by time
    assert warm.starts == {p0: 1, p1: 0}          # the history holds everything from here
    assert decode(TOPICS, warm.events[0].sse_id) == {p0: 1, p1: 1}
    assert decode(TOPICS, warm.events[-1].sse_id) == {p0: 2, p1: 2}
    assert [e.type for e in live.events] == ["live"] and not live.warm
    assert decode(TOPICS, live.events[0].sse_id) == {p0: 4, p1: 2}
    assert live.frontier == {p0: 4, p1: 2}


def test_a_full_warm_history_says_from_when_it_holds_every_event():
    """Streams held during the warm start came at some time: the broker must know whether
    the history holds every event stamped since, or left some out as too old for its size."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    full = FakeSource({p0, p1}, end={p0: 3, p1: 2})
    actor, broker = _actor(full)
    actor.step()
    full.queue = [_record(0, {"type": "a"}, 0, ts=1), _record(1, {"type": "b"}, 0, ts=3),
                  _record(2, {"type": "e"}, 0, ts=6), _record(0, {"type": "c"}, 1, ts=2),
                  _record(1, {"type": "d"}, 1, ts=5)]
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["b", "d", "e"] and warm.complete_after_ms == 3
    roomy = FakeSource({p0}, end={p0: 2})
    actor, broker = _actor(roomy)
    actor.step()
    roomy.queue = [_record(0, {"type": "a"}, 0, ts=1), _record(1, {"type": "b"}, 0, ts=3)]
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert len(warm.events) == 2 and warm.complete_after_ms is None     # room for more


def test_a_warm_start_done_in_its_first_poll_leaves_the_history_covering_its_events():
    """The live starts (the ends) were announced after the warm start's events then, and the
    history took them as where it covers from: every resume into it went to Kafka, and a new
    stream opened at a position past the history it was then sent."""
    from actors.history import HistoryActor
    from actors.messages import Remember
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 2, p1: 1})
    source.queue = [_record(0, {"type": "a"}, 0, ts=1), _record(1, {"type": "b"}, 0, ts=3),
                    _record(0, {"type": "c"}, 1, ts=2)]
    actor, broker = _actor(source)
    actor.step()
    history = HistoryActor(size=3, topics=TOPICS)
    for message in broker.of(Consumed):
        history.on_receive(Remember(message.events, message.starts))
    assert history.covered == {p0: 0, p1: 0}
    assert history.holds({p0: 1, p1: 0})          # a resume into it is served from it


def test_ids_carry_the_frontier_and_bad_records_are_counted_but_advance_it():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.queue = [_record(0, {"type": "a.b", "data": 1}), _record(1, b"{broken"),
                    _record(2, b"[]"), _record(3, {"type": "c.d"})]
    actor.step()
    batch = broker.of(Consumed)[-1]
    assert [e.type for e in batch.events] == ["a.b", "c.d"]
    assert batch.invalid_topics == ("blog.posts", "blog.posts")
    assert [decode(TOPICS, e.sse_id) for e in batch.events] == [{p0: 1}, {p0: 4}]


def test_an_unreachable_kafka_is_reported_and_retried_with_backoff():
    attempts = []

    def factory(settings):
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaUnreachable("no broker accepts connections")
        return FakeSource({("blog.posts", 0)})

    clock = Clock()
    actor, broker = _actor(None, clock=clock, factory=factory)
    actor.sleep = clock.sleep
    actor.on_start()
    while len(attempts) < 2:
        actor.step()
    assert actor.source is None and actor.backoff == 2.0
    while actor.source is None:
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
    assert [m.state for m in broker.of(KafkaStateChanged)] == ["connected", "unreachable",
                                                               "connected"]


def test_a_transaction_marker_moves_the_frontier_and_the_lag_without_an_event():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.queue = [_record(0, {"type": "a"})]
    source.position = {p0: 2}           # offset 1 is the commit marker: never a record
    source.end = {p0: 2}
    actor.step()
    batch = broker.of(Consumed)[-1]
    assert [e.type for e in batch.events] == ["a"] and batch.frontier == {p0: 2}
    assert decode(TOPICS, batch.events[0].sse_id) == {p0: 1}   # the id stays the event's own
    source.position = {p0: 4}           # an aborted batch and its marker: no record at all
    actor.step()
    stepped = broker.of(Consumed)[-1]
    assert stepped.events == () and stepped.frontier == {p0: 4}


def test_the_lag_report_carries_kafkas_ends_beside_the_lag():
    """The broker judges a stream resumed past a partition's end by those ends."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 7, p1: 2})
    actor, broker = _actor(source)
    actor.step()
    [report] = broker.of(KafkaLag)
    assert report.ends == {p0: 7, p1: 2}
    assert report.lag == {p: end - actor.frontier.offsets.get(p, end)
                          for p, end in report.ends.items()}


def test_the_warm_start_ends_when_positions_pass_a_trailing_marker():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 3})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.queue = [_record(1, {"type": "a"})]      # offset 2 is a marker, never returned
    source.position = {p0: 3}
    actor.step()
    warm = [m for m in broker.of(Consumed) if m.warm]
    assert warm and [e.type for e in warm[0].events] == ["a"] and clock.now == 0.0


def test_the_warm_start_reads_further_back_until_the_history_is_full():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 7})
    actor, broker = _actor(source)
    actor.step()
    assert source.assignments == [({p0}, {p0: 4})]
    source.queue = [_record(4, {"type": "c"}), _record(5, b"bad")]   # offset 6: a marker
    source.position = {p0: 7}
    actor.step()
    assert not [m for m in broker.of(Consumed) if m.warm]   # one event of three: not yet
    assert source.assignments[-1] == ({p0}, {p0: 1})          # read again, twice as far back
    source.queue = [_record(1, None), _record(2, b"bad"), _record(3, {"type": "b"}),
                    _record(4, {"type": "c"}), _record(5, b"bad"), _record(7, {"type": "live"})]
    actor.step()                                              # 4 and 5 again: read already
    assert source.assignments[-1] == ({p0}, {p0: 0})
    source.queue = [_record(0, {"type": "a"}), _record(1, None)]
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["a", "b", "c"] and warm.starts == {p0: 0}
    assert [e.type for e in broker.of(Consumed)[-1].events] == ["live"]


def test_the_warm_start_stops_reading_back_at_the_first_retained_offset():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, begin={p0: 2}, end={p0: 7})
    actor, broker = _actor(source)
    actor.step()
    source.queue = [_record(6, {"type": "c"})]
    source.position = {p0: 7}
    actor.step()
    assert source.assignments[-1] == ({p0}, {p0: 2})
    source.queue = [_record(3, {"type": "b"})]
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["b", "c"] and len(source.assignments) == 2


def test_a_read_further_back_cut_short_by_the_time_limit_leaves_no_hole_in_the_history():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 7})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.queue = [_record(4, {"type": "c"})]
    source.position = {p0: 7}
    actor.step()
    assert source.assignments[-1] == ({p0}, {p0: 1})
    source.queue = [_record(1, {"type": "x"})]                # 2 and 3 not read in time
    source.position = {p0: 2}
    clock.now = warm_start.MAX_SECONDS
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["c"] and warm.starts == {p0: 4}


def test_a_partition_not_read_up_to_its_end_in_time_is_not_said_to_be_in_the_history():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 7})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.queue = [_record(4, {"type": "c"})]
    source.position = {p0: 5}                    # 5 and 6 not read in time
    clock.now = warm_start.MAX_SECONDS
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["c"]
    assert decode(TOPICS, warm.events[0].sse_id) == {p0: 5}
    assert warm.starts == {p0: 7}        # a resume from before 7 reads Kafka: 5 and 6 are there


def test_a_warm_start_reading_far_back_holds_only_the_newest_events_of_a_partition():
    p0 = ("blog.posts", 0)
    start = warm_start.WarmStart(SETTINGS, {p0: 0}, {p0: 1000}, now=0.0)
    low, high = 997, 1000
    while low:                                # nothing but invalid records down to offset 0
        start.add([_record(o, b"bad") for o in range(low, high)])
        start.reached({p0: high})
        assert start.done(0.0)
        low, high = start.read_back(0.0)[p0], low
    start.add([_record(o, {"type": f"e{o}"}) for o in range(high)])    # 232 events
    assert len(start.records[p0]) < 2 * SETTINGS.sse_history_size
    start.reached({p0: high})
    assert start.done(0.0) and start.read_back(0.0) == {}
    events, covered, _ = start.finish(TOPICS)
    assert high == 232 and [e.type for e in events] == ["e229", "e230", "e231"]
    assert covered == {p0: 229}


def _warm_read(start, log, end) -> tuple[list, int]:
    """Run a WarmStart over `log` (partition -> its records) to its end: (events, records read)."""
    ranges, read = start.seeks(), 0
    while ranges:
        for p, first in ranges.items():
            got = log[p][first:start.until[p]]
            read += len(got)
            start.add(got)
        start.reached(dict(end))
        assert start.done(0.0)
        ranges = start.read_back(0.0)
    return start.finish(TOPICS)[0], read


def test_a_warm_start_over_many_partitions_reads_about_what_the_history_needs():
    """The history is the newest SSE_HISTORY_SIZE events of all partitions: reading that many
    from each of them read 200,000 records for a history of 1,000 over 200 partitions, gave up
    after its 10 s on 91 of them, and filled the history with old events of the others (the
    newest partitions had none in it). Each partition is read for its share first, and further
    back only while it may hold events newer than the history's oldest."""
    settings = Settings.defaults(kafka_topics=TOPICS, sse_history_size=100)
    parts = [("blog.posts", n) for n in range(200)]
    end = {p: 1000 for p in parts}
    start = warm_start.WarmStart(settings, {p: 0 for p in parts}, end, now=0.0)
    log = {p: [_record(o, {"type": "t", "data": o}, p[1], ts=o * 200 + p[1]) for o in range(1000)]
           for p in parts}
    events, read = _warm_read(start, log, end)
    newest = sorted((r for rs in log.values() for r in rs), key=lambda r: r.timestamp_ms)[-100:]
    assert [(e.position, e.timestamp_ms) for e in events] == [
        (Position(r.topic, r.partition, r.offset), r.timestamp_ms) for r in newest]
    assert read <= 4 * settings.sse_history_size      # 20,000 when each partition gave 100


@pytest.mark.parametrize("partitions", [1, 2, 8])
def test_a_warm_start_whose_history_comes_from_one_partition_reads_no_further(partitions):
    """One partition, or one hot partition among idle ones, holding far more than the
    history: once its newest SSE_HISTORY_SIZE events are read nothing before them can be in
    the history, yet the partition was read further back until its start (100,000 records
    for a history of 1,000)."""
    settings = Settings.defaults(kafka_topics=TOPICS, sse_history_size=1000)
    parts = [("blog.posts", n) for n in range(partitions)]
    end = {p: 100_000 if p[1] == 0 else 100 for p in parts}
    start = warm_start.WarmStart(settings, {p: 0 for p in parts}, end, now=0.0)
    log = {p: [_record(o, {"type": "t"}, p[1], ts=o if p[1] == 0 else 1 + o * 10_000 // 100)
               for o in range(end[p])] for p in parts}
    events, read = _warm_read(start, log, end)
    newest = sorted((r for rs in log.values() for r in rs), key=time_order)[-1000:]
    assert [e.position for e in events] == [Position(r.topic, r.partition, r.offset)
                                            for r in newest]
    assert read <= 3 * settings.sse_history_size, read


def test_tombstones_are_counted_apart_from_invalid_records():
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.queue = [_record(0, None), _record(1, b"nope"), _record(2, {"type": "a"})]
    actor.step()
    batch = broker.of(Consumed)[-1]
    assert batch.tombstone_topics == ("blog.posts",)
    assert batch.invalid_topics == ("blog.posts",)
    assert [e.type for e in batch.events] == ["a"]


def test_a_stalled_partition_is_reported_and_a_denied_topic_is_unauthorized():
    from actors.kafka_source import Stall
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.stalls = {p0: Stall(7, "corrupt batch: crc", 0.0)}
    actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected"
    assert "blog.posts:0 stopped at offset 7: corrupt batch" in state.detail
    assert state.unread == (p0,)            # the broker is told which partitions are not read
    source.denied = {"blog.posts"}
    actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "unauthorized"
    assert "not authorized to read topic blog.posts" in state.detail
    count = len(broker.of(KafkaStateChanged))
    actor.step()
    assert len(broker.of(KafkaStateChanged)) == count          # reported once per change


def _state_after_bootstrap(factory) -> KafkaStateChanged:
    """The state the consumer reports after one step whose bootstrap runs `factory`."""
    actor, broker = _actor(None, factory=factory)
    actor.step()
    return broker.of(KafkaStateChanged)[-1]


def test_a_bootstrap_failure_names_the_reason_kafka_python_logged():
    import logging
    from actors import kafka_diagnosis
    kafka_diagnosis.install()

    def factory(settings):
        logging.getLogger("kafka.net.manager").error(
            "Bootstrap attempt to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
            "Authentication failed during authentication due to invalid credentials")
        raise KafkaUnreachable("bootstrap failed: Unable to bootstrap")

    state = _state_after_bootstrap(factory)
    assert state.state == "unreachable" and state.detail.startswith("authentication failed")


def test_the_cause_kafka_python_logged_wins_over_its_closing_bootstrap_timeout_line():
    import logging

    from actors import kafka_diagnosis
    kafka_diagnosis.install()

    def factory(settings):
        logging.getLogger("kafka.net.manager").error(
            "Bootstrap attempt to bootstrap-0 failed: [SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: self-signed certificate in certificate chain")
        logging.getLogger("kafka.net.manager").error(   # its errback, after the cause
            "Bootstrap failed: Unable to bootstrap from [('127.0.0.1', 9093, 2)]")
        raise KafkaUnreachable("bootstrap failed: KafkaTimeoutError: Unable to bootstrap from "
                               "[('127.0.0.1', 9093, 2)]")

    state = _state_after_bootstrap(factory)
    assert state.state == "unreachable"
    assert state.detail.startswith("TLS: certificate verify failed")


def test_a_bootstrap_that_times_out_silently_says_the_broker_was_slow_not_the_exception():
    def factory(settings):
        raise KafkaUnreachable("bootstrap failed: KafkaTimeoutError: Unable to bootstrap from "
                               "[('127.0.0.1', 9093, <AddressFamily.AF_INET: 2>)]")

    state = _state_after_bootstrap(factory)
    assert state.state == "unreachable"
    assert state.detail.startswith("the broker did not answer in time")
    assert "AddressFamily" not in state.detail


def test_a_topic_deleted_and_created_again_is_read_anew_and_said_so(monkeypatch):
    import uuid
    from actors import resume
    monkeypatch.setattr(resume, "INCARNATIONS", resume.Incarnations())
    import actors.consumer as consumer_module
    monkeypatch.setattr(consumer_module, "INCARNATIONS", resume.INCARNATIONS)
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, begin={p0: 17}, end={p0: 20})    # no record older than 17
    source.ids = {"blog.posts": uuid.UUID(int=1)}   # ids whose tags differ (random: 1 in 255 equal)
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.position = {p0: 20}
    actor.step()                                   # warm start over: live from 20
    source.available = set()                       # deleted
    clock.now = 1.5
    actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert state.partitions == () and "topic blog.posts no longer exists" in state.detail
    source.available, source.ids = {p0}, {"blog.posts": uuid.UUID(int=2)}
    source.begin, source.end, source.position = {p0: 0}, {p0: 0}, {p0: 0}
    clock.now = 3.0
    actor.step()
    assert source.assignments[-1] == ({p0}, {p0: 0})            # from the new beginning
    reset = broker.of(Consumed)[-1]
    assert reset.reset_topics == ("blog.posts",) and reset.starts == {p0: 0}
    assert reset.frontier == {p0: 0}
    state = broker.of(KafkaStateChanged)[-1]
    assert state.partitions == (p0,) and "was deleted and created again" in state.detail
    clock.now = 3.0 + 3600                  # an hour on: /health no longer says so (it did
    actor.step()                            # for the worker's life; an operations audit)
    assert "created again" not in broker.of(KafkaStateChanged)[-1].detail
    source.queue = [_record(0, {"type": "new"})]
    source.position = {p0: 1}
    actor.step()
    event = broker.of(Consumed)[-1].events[0]
    assert decode(TOPICS, event.sse_id) == {p0: 1}


def test_a_recreation_whose_offsets_lookup_fails_once_is_still_read_anew(monkeypatch):
    import uuid
    from actors import resume
    import actors.consumer as consumer_module
    monkeypatch.setattr(resume, "INCARNATIONS", resume.Incarnations())
    monkeypatch.setattr(consumer_module, "INCARNATIONS", resume.INCARNATIONS)
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 20})
    source.ids = {"blog.posts": uuid.UUID(int=1)}
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.position = {p0: 20}
    actor.step()
    source.ids = {"blog.posts": uuid.UUID(int=2)}              # deleted and created again
    source.begin, source.end, source.position = {p0: 0}, {p0: 0}, {p0: 0}
    bounds, failures = source.bounds, []

    def flaky_bounds(partitions):
        if not failures:
            failures.append(partitions)
            raise RuntimeError("NotLeaderForPartitionError")   # the new topic is still electing
        return bounds(partitions)

    source.bounds = flaky_bounds
    clock.now = 1.5
    try:
        actor.step()
    except RuntimeError:
        pass                                       # on_receive logs it and polls again
    meanwhile = actor.frontier.token()             # an id issued before the retry
    clock.now = 3.0
    actor.step()
    assert failures and source.assignments[-1] == ({p0}, {p0: 0})
    assert broker.of(Consumed)[-1].reset_topics == ("blog.posts",)
    assert resume.read(TOPICS, meanwhile).recreated == {p0: 20}   # its offset is the old one's


def test_a_partition_of_a_recreated_topic_that_comes_back_late_is_read_anew(monkeypatch):
    import uuid
    from actors import resume
    import actors.consumer as consumer_module
    monkeypatch.setattr(resume, "INCARNATIONS", resume.Incarnations())
    monkeypatch.setattr(consumer_module, "INCARNATIONS", resume.INCARNATIONS)
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 20, p1: 30})
    source.ids = {"blog.posts": uuid.UUID(int=1)}
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.position = {p0: 20, p1: 30}
    actor.step()
    source.available, source.ids = {p0}, {"blog.posts": uuid.UUID(int=2)}   # p1 not yet
    source.begin, source.end, source.position = {p0: 0, p1: 0}, {p0: 0, p1: 0}, {p0: 0}
    clock.now = 1.5
    actor.step()
    assert source.assignments[-1] == ({p0}, {p0: 0})     # the old p1 is not read meanwhile
    assert resume.read(TOPICS, actor.frontier.token()).offsets == {p0: 0, p1: 0}
    source.available = {p0, p1}
    clock.now = 3.0
    actor.step()
    assert source.assignments[-1] == ({p0, p1}, {p1: 0})        # its new beginning too
    assert broker.of(Consumed)[-1].frontier == {p0: 0, p1: 0}


def test_a_failing_poll_is_logged_and_polling_goes_on(caplog):
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    slept = []

    class Unstarted(KafkaConsumerActor):
        actor_ref = None           # its notes to itself go to a FakeRef

    actor = Unstarted(settings=SETTINGS, broker=FakeRef(), source_factory=lambda settings: source,
                      clock=Clock(), sleep=slept.append, spawn=_now)
    actor.actor_ref = FakeRef()
    source.poll = lambda timeout_ms: 1 / 0
    actor.on_receive(Poll())
    assert "kafka poll failed, retrying" in caplog.text and slept == [1.0]
    assert actor.actor_ref.of(Poll)                 # polls again
    for _ in range(30):             # a fault that lasts: a traceback a minute, not a second
        actor.on_receive(Poll())
    assert caplog.text.count("kafka poll failed") == 1 and len(slept) == 31
    actor.clock.now += 60
    actor.on_receive(Poll())
    assert caplog.text.count("kafka poll failed") == 2 and "(+30 more since" in caplog.text
    source.poll = lambda timeout_ms: {}["other"]       # another fault: its traceback at once
    actor.on_receive(Poll())
    assert caplog.text.count("kafka poll failed") == 3 and "KeyError" in caplog.text
    source.poll = lambda timeout_ms: []                 # and when polls work again, said so
    actor.on_receive(Poll())
    actor.on_receive(Poll())
    assert caplog.text.count("kafka polls work again, after 33 failed") == 1, caplog.text
    actor.on_stop()
    assert source.closed


def test_a_crashing_consumer_closes_its_source(caplog):
    source = FakeSource()
    actor, _ = _actor(source)
    actor.step()
    actor.on_failure(ZeroDivisionError, ZeroDivisionError("x"), None)
    assert source.closed and "kafka consumer failed" in caplog.text


def _reading_one_of(*topics):
    """A consumer of KAFKA_TOPICS `topics` whose Kafka has only the first, one partition."""
    p0 = (topics[0], 0)
    source, clock, broker = FakeSource({p0}, end={p0: 0}), Clock(), FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS.replace(kafka_topics=topics), broker=broker,
                               source_factory=lambda settings: source, clock=clock,
                               sleep=lambda s: None, spawn=_now)
    return actor, source, clock, broker


def test_a_missing_topic_created_where_an_acl_hides_it_is_not_said_to_stream(caplog):
    import logging
    actor, source, clock, _broker = _reading_one_of("blog.posts", "blog.late")
    caplog.set_level(logging.INFO, "actors.consumer")
    for second in range(40):
        clock.now = float(second)
        actor.step()
    assert "topic blog.late of KAFKA_TOPICS does not exist" in caplog.text
    source.denied = {"blog.late"}                  # created, and an ACL hides it from us
    clock.now = 41.0
    actor.step()
    (line,) = [r.getMessage() for r in caplog.records if "exists now" in r.getMessage()]
    assert line.endswith("exists now, but the gateway's Kafka user may not read it"), line


def test_the_warm_start_gives_up_waiting_after_its_deadline(caplog):
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 5})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.queue = [_record(2, {"type": "a"})]      # 3 and 4 never come
    actor.step()
    assert not [m for m in broker.of(Consumed) if m.warm]
    clock.now = warm_start.MAX_SECONDS
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert [e.type for e in warm.events] == ["a"] and "gave up waiting" in caplog.text
    # what it means, not only which partitions (a log audit)
    assert "gave up waiting after 10 s for blog.posts:0" in caplog.text, caplog.text
    assert "not in the history (new streams do not get them" in caplog.text, caplog.text


def test_invalid_records_are_logged_at_most_once_per_interval(caplog):
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    clock = Clock()
    actor, _ = _actor(source, clock)
    actor.step()
    source.queue = [_record(0, b"x"), _record(1, b"y")]
    actor.step()
    assert caplog.text.count("skipped invalid record") == 1
    clock.now += consumer.INVALID_LOG_INTERVAL_S
    source.queue = [_record(2, b"z")]
    actor.step()
    assert "skipped invalid record at blog.posts:0:2" in caplog.text
    assert "(+1 more since the last report)" in caplog.text


def test_invalid_records_the_warm_start_skips_are_counted_and_logged_as_live_ones(caplog):
    """SSE_MAX_EVENT_BYTES=64 and records of 112 bytes in the topic at start: the history
    was empty, /stats said invalid_events 0 and no line said why; only the live ones that
    followed were counted and logged."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 2, p1: 1})
    clock = Clock()
    broker = FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS.replace(sse_max_event_bytes=64), broker=broker,
                               source_factory=lambda settings: source, clock=clock,
                               sleep=lambda s: None, spawn=_now)
    actor.step()
    large = {"type": "a", "data": "x" * 87}                           # 112 bytes
    source.queue = [_record(0, large), _record(1, b"{not json"), _record(0, large, 1)]
    actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert warm.events == () and warm.invalid_topics == ("blog.posts",) * 3
    assert caplog.text.count("skipped invalid record") == 1          # one LogBudget: no flood
    assert "skipped invalid record at blog.posts:0:0 (warm start): value of 112 bytes " \
           "exceeds SSE_MAX_EVENT_BYTES=64" in caplog.text
    source.queue = [_record(2, large)]
    actor.step()
    assert broker.of(Consumed)[-1].invalid_topics == ("blog.posts",)
    clock.now += consumer.INVALID_LOG_INTERVAL_S
    source.queue = [_record(3, large)]
    actor.step()
    assert "skipped invalid record at blog.posts:0:3: value of 112" in caplog.text
    assert "(+3 more since the last report)" in caplog.text, caplog.text
    assert sum(len(m.invalid_topics) for m in broker.of(Consumed)) == 5


def test_the_warm_start_counts_the_invalid_records_of_what_its_history_covers_once():
    """Counted: those from where the history starts in each partition (its share of the
    history at least) up to the end; not those read further back than the history reaches,
    while looking for events, nor those read twice."""
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 7})
    actor, broker = _actor(source)
    actor.step()
    assert source.assignments == [({p0}, {p0: 4})]
    source.queue = [_record(4, {"type": "c"}), _record(5, b"bad"), _record(6, b"[]")]
    actor.step()
    assert source.assignments[-1] == ({p0}, {p0: 1})          # one event of three: further back
    source.queue = [_record(1, b"older"), _record(2, {"type": "a"}), _record(3, {"type": "b"}),
                    _record(4, {"type": "c"}), _record(5, b"bad"), _record(6, b"[]"),
                    _record(7, b"live")]                      # 4 to 6 again: read already
    actor.step()
    warm, live = [m for m in broker.of(Consumed) if m.warm or m.invalid_topics][-2:]
    assert warm.warm and [e.type for e in warm.events] == ["a", "b", "c"]
    assert warm.starts == {p0: 2}
    assert warm.invalid_topics == ("blog.posts", "blog.posts")      # 5 and 6, not 1
    assert live.invalid_topics == ("blog.posts",) and not live.warm   # 7


def test_a_warm_start_says_which_invalid_records_its_history_covers():
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    start = warm_start.WarmStart(SETTINGS, {p0: 2, p1: 0}, {p0: 6, p1: 3}, now=0.0)
    assert start.seeks() == {p0: 4, p1: 1}
    start.add([_record(4, b"bad"), _record(5, {"type": "a"}, ts=5)])
    start.add([_record(1, None, 1), _record(2, b"bad", 1)])     # a tombstone: not invalid
    start.reached({p0: 6, p1: 3})
    assert start.done(0.0) and start.read_back(0.0) == {p0: 2, p1: 0}
    start.add([_record(2, {"type": "b"}, ts=2), _record(3, b"bad"), _record(4, b"bad")])  # 4 again
    start.add([_record(0, b"bad", 1)])                          # before p1's share: not counted
    start.reached({p0: 4, p1: 1})
    assert start.done(0.0) and start.read_back(0.0) == {}
    events, covered, _ = start.finish(TOPICS)
    assert [e.type for e in events] == ["b", "a"] and covered == {p0: 2, p1: 3}
    assert [(r.partition, r.offset) for r, _ in start.invalid] == [(0, 3), (0, 4), (1, 2)]
    assert all(isinstance(why, InvalidRecord) for _, why in start.invalid)


def test_the_tests_make_event_is_the_event_the_consumer_sends():
    from tests.fakes import make_event, make_record
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.queue = [make_record(offset=0, data={"k": 1})]
    actor.step()
    [event] = broker.of(Consumed)[-1].events
    assert event == make_event(offset=0, data={"k": 1})         # the id included


def test_events_carry_the_owner_the_subject_field_reads_live_and_in_the_warm_start():
    from actors.auth.subjects import parse_subject_field
    p0 = ("blog.posts", 0)
    settings = Settings.defaults(kafka_topics=TOPICS, kafka_metadata_refresh_ms=1000,
                                 sse_history_size=3,
                                 auth_subject_field=parse_subject_field("data.user"))
    source = FakeSource({p0}, end={p0: 2})
    broker = FakeRef()
    actor = KafkaConsumerActor(settings=settings, broker=broker,
                               source_factory=lambda s: source, clock=Clock(),
                               sleep=lambda s: None, spawn=_now)
    actor.step()
    source.queue = [_record(0, {"type": "a", "data": {"user": "alice"}}),
                    _record(1, {"type": "b", "data": {}})]
    actor.step()
    source.queue = [_record(2, {"type": "c", "data": {"user": "bob"}}),
                    _record(3, {"type": "d", "data": {"user": 1.5}})]
    actor.step()
    warm, live = [m for m in broker.of(Consumed) if m.events]
    assert warm.warm and [e.owner for e in warm.events] == ["alice", None]
    assert [e.owner for e in live.events] == ["bob", ""]           # 1.5: unusable, NOBODY


def test_a_topic_of_kafka_topics_that_does_not_exist_is_logged_once_and_shown(caplog):
    """KAFKA_TOPICS=blog.posts,blog.typo: blog.posts streamed, /readyz said ready and
    nothing anywhere said that blog.typo was never read."""
    import logging
    p0 = ("blog.posts", 0)
    actor, source, clock, broker = _reading_one_of("blog.posts", "blog.typo")
    caplog.set_level(logging.INFO, "actors.consumer")
    actor.step()                                   # metadata may not list it yet: no verdict
    assert "blog.typo" not in broker.of(KafkaStateChanged)[-1].detail
    for second in range(1, 40):
        clock.now = float(second)
        actor.step()
    detail = broker.of(KafkaStateChanged)[-1].detail
    assert "topic blog.typo does not exist" in detail and "KAFKA_TOPICS" in detail
    warnings = [r.getMessage() for r in caplog.records if "blog.typo" in r.getMessage()]
    assert len(warnings) == 1 and "create it or correct KAFKA_TOPICS" in warnings[0], warnings
    source.available.add(("blog.typo", 0))         # created: read, and the note goes
    clock.now = 41.0
    actor.step()
    assert "blog.typo" not in broker.of(KafkaStateChanged)[-1].detail
    assert source.assignments[-1][0] == {p0, ("blog.typo", 0)}
    # said at the warning's level: LOG_LEVEL=WARNING saw only that it did not exist (a log audit)
    (back,) = [r for r in caplog.records if "exists now" in r.getMessage()]
    assert back.levelname == "WARNING" and "blog.typo" in back.getMessage()


def test_a_position_deleted_by_retention_is_told_to_the_broker_before_what_follows():
    from actors.messages import Skip
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, begin={p0: 4}, end={p0: 4})
    actor, broker = _actor(source)
    actor.step()
    source.skips = [Skip("retention", p0, 4, 9)]    # offsets 4 to 8 deleted before being read
    source.position = {p0: 9}
    actor.step()
    gap = broker.of(Consumed)[-1]
    assert gap.skips == (Skip("retention", p0, 4, 9),) and gap.events == ()
    assert gap.frontier == {p0: 9}
    source.queue = [_record(9, {"type": "a"})]
    actor.step()
    later = broker.of(Consumed)[-1]
    assert later.skips == () and decode(TOPICS, later.events[0].sse_id) == {p0: 10}


def test_a_truncated_log_moves_the_frontier_back_to_its_end():
    from actors.messages import Skip
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, begin={p0: 4}, end={p0: 4})
    actor, broker = _actor(source)
    actor.step()
    actor.step()
    source.skips = [Skip("truncated", p0, 4, 2)]
    actor.step()
    assert broker.of(Consumed)[-1].frontier == {p0: 2}


def test_a_refusal_before_a_bootstrap_that_succeeded_is_not_the_reason_of_a_later_outage():
    import logging
    from actors import kafka_diagnosis
    kafka_diagnosis.install()
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})

    def factory(settings):       # kafka-python's first attempt refused, its retry let in
        logging.getLogger("kafka.net.manager").error(
            "Bootstrap attempt to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
            "Authentication failed during authentication due to invalid credentials")
        return source

    actor, broker = _actor(None, factory=factory)
    actor.step()
    assert broker.of(KafkaStateChanged)[-1].state == "connected"
    source.is_connected = False                      # hours later the broker goes away
    actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "unreachable"
    assert "authentication" not in state.detail, state.detail


def test_a_partition_without_a_leader_at_start_waits_alone_and_joins_at_its_end(caplog):
    """A replication-factor-1 partition whose broker is down: the others stream, /health says
    which waits and why, and it is read from its end (not its beginning) once it has a leader."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, begin={p0: 0, p1: 0}, end={p0: 5, p1: 40})
    source.without_leader = {p1}
    clock = Clock()
    actor, broker = _actor(source, clock)
    for _ in range(3):
        actor.step()
    assert [parts for parts, _seeks in source.assignments] == [{p0}]
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected" and state.partitions == (p0,)
    assert "blog.posts:1 has no leader" in state.detail
    assert caplog.text.count("without a leader") == 1       # one warning, not one per step
    source.without_leader = set()
    clock.now = 5.0
    actor.step()
    assert source.assignments[-1] == ({p0, p1}, {p1: 40})   # its end: live from now on
    state = broker.of(KafkaStateChanged)[-1]
    assert state.partitions == (p0, p1) and "no leader" not in state.detail


class LogSource(FakeSource):
    """A source that reads a partition's log as Kafka does: from its position on, `per_poll`
    records a poll; a seek moves the position (offsets without a record are markers)."""

    def __init__(self, log: dict, per_poll: int, corrupt=(), **kwargs):
        super().__init__(**kwargs)
        self.log, self.per_poll, self.corrupt = log, per_poll, set(corrupt)

    def assign(self, partitions, seeks):
        super().assign(partitions, seeks)
        self.position.update(seeks)

    def poll(self, timeout_ms):
        [(p, position)] = self.position.items()
        if p in self.stalls:                        # set aside until a retry (a minute)
            return []
        if position in self.corrupt:
            self.stalls[p] = Stall(position, "corrupt batch", 0.0)
            return []
        end = max(self.log) + 1
        records = [self.log[o] for o in range(position, end) if o in self.log][:self.per_poll]
        self.position[p] = records[-1].offset + 1 if records else max(position, end)
        return records


@pytest.mark.parametrize("per_poll", [1, 2])    # 1: e4 read again, 2: the live event
def test_after_reading_further_back_the_consumer_goes_live_where_it_had_read_up_to(per_poll):
    p0 = ("blog.posts", 0)
    log = {o: _record(o, {"type": f"e{o}"}) for o in range(5)}
    log.update({o: _record(o, b"bad") for o in (5, 6)})          # the last 3: one event
    log[7] = _record(7, {"type": "live"})
    source = LogSource(log, per_poll=per_poll, partitions={p0}, end={p0: 7})
    actor, broker = _actor(source)
    for _ in range(12):
        actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    live = [e.type for m in broker.of(Consumed) if not m.warm for e in m.events]
    assert [e.type for e in warm.events] == ["e2", "e3", "e4"]
    assert live == ["live"], "events of the history were published again as live events"
    # 5 and 6, in what the history covers (from e2 on): counted once, by the warm start
    assert sum(len(m.invalid_topics) for m in broker.of(Consumed)) == 2


def test_a_batch_the_warm_start_cannot_read_further_back_does_not_stop_the_live_stream():
    p0 = ("blog.posts", 0)
    log = {o: _record(o, {"type": f"e{o}"}) for o in range(5)}
    log.update({o: _record(o, b"bad") for o in (5, 6)})          # the last 3: one event
    log[7] = _record(7, {"type": "live"})
    source = LogSource(log, per_poll=1, corrupt={2}, partitions={p0}, end={p0: 7})
    actor, broker = _actor(source)
    for _ in range(12):
        actor.step()
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    live = [e.type for m in broker.of(Consumed) if not m.warm for e in m.events]
    assert [e.type for e in warm.events] == ["e4"] and warm.starts == {p0: 4}
    assert live == ["live"], "the partition stayed set aside at the batch read further back"


def _refusing_actor(refusals, rng=lambda: 0.5, error=None):
    """An actor whose bootstraps are refused `refusals` times (a wrong password), then let in;
    returns it, its broker, the time and keyword arguments of each attempt, and its clock
    (its sleeps advance it)."""
    from actors.kafka_client import KafkaRefused
    clock, calls = Clock(), []
    source = FakeSource({("blog.posts", 0)})

    def factory(settings, **kwargs):
        calls.append((clock.now, kwargs))
        if len(calls) <= refusals:
            raise error or KafkaRefused("bootstrap failed: KafkaTimeoutError: Unable to bootstrap")
        return source

    broker = FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS, broker=broker, source_factory=factory,
                               clock=clock, sleep=clock.sleep, rng=rng, spawn=_now)
    return actor, broker, calls, clock


def _gaps(calls):
    return [round(b[0] - a[0], 6) for a, b in zip(calls, calls[1:], strict=False)]


def _attempts(actor, calls, count):
    for _ in range(100000):
        if len(calls) >= count or actor.source is not None:
            return
        actor.step()
    raise AssertionError("no bootstrap attempt")


def test_a_refused_bootstrap_is_retried_ever_more_slowly_up_to_a_minute():
    actor, broker, calls, _clock = _refusing_actor(12)
    _attempts(actor, calls, 13)
    assert _gaps(calls) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    # kafka-python tries once per bootstrap after a refusal, not every 2 s of its time-out
    assert [kwargs for _t, kwargs in calls] == [{}] + [{"patient": True}] * 12
    assert [m.state for m in broker.of(KafkaStateChanged)] == ["unreachable", "connected"]


def test_the_retry_delays_are_spread_by_a_fifth_either_way():
    for draw, factor in ((0.0, 0.8), (1.0, 1.2)):
        actor, _broker, calls, _clock = _refusing_actor(9, rng=lambda d=draw: d)
        _attempts(actor, calls, 10)
        assert _gaps(calls) == pytest.approx([d * factor for d in
                                              (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0)])


def test_a_backoff_never_holds_up_a_stop_or_the_state_reports():
    actor, _broker, calls, clock = _refusing_actor(12)
    _attempts(actor, calls, 10)
    before = clock.now
    actor.step()                # a turn while waiting a minute: its message loop turns on
    assert 0 < clock.now - before <= consumer.POLL_TIMEOUT_MS / 1000


def test_the_backoff_starts_over_once_connected():
    actor, _broker, calls, _clock = _refusing_actor(3)
    _attempts(actor, calls, 5)
    assert _gaps(calls) == [0.5, 1.0, 2.0] and actor.source is not None
    assert actor.backoff == 0.5
    actor.source = None          # a later bootstrap lets kafka-python retry quickly again
    actor.step()
    assert calls[-1][1] == {}


def test_no_listening_broker_is_probed_again_within_seconds():
    actor, _broker, calls, _clock = _refusing_actor(
        7, error=KafkaUnreachable("no broker of localhost:9092 accepts connections"))
    _attempts(actor, calls, 7)
    assert _gaps(calls) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    # nothing was refused: kafka-python may retry quickly within its bootstrap
    assert all(kwargs == {} for _t, kwargs in calls)


def test_a_refusal_after_a_connection_makes_kafka_python_back_off_until_connected_again():
    import logging
    from actors import kafka_diagnosis
    kafka_diagnosis.install()
    source = FakeSource({("blog.posts", 0)})
    actor, broker = _actor(source)
    actor.step()
    source.is_connected = False             # the password was changed at the broker
    logging.getLogger("kafka.net.connection").error(
        "<KafkaConnection node_id=1 host=[127.0.0.1:9093]>: Connection lost: [Error 58] "
        "SaslAuthenticationFailedError: Authentication failed during authentication")
    actor.step()
    actor.step()
    assert source.backing_off == [True]
    assert broker.of(KafkaStateChanged)[-1].detail.startswith("authentication failed")
    source.is_connected = True
    actor.step()
    assert source.backing_off == [True, False]


def test_a_plain_outage_keeps_kafka_python_reconnecting_quickly():
    source = FakeSource({("blog.posts", 0)})
    actor, _broker = _actor(source)
    actor.step()
    source.is_connected = False             # the broker restarts: no refusal logged
    actor.step()
    source.is_connected = True
    actor.step()
    assert source.backing_off == []


def test_a_bootstrap_runs_apart_so_the_actor_keeps_turning_and_stops_at_once():
    """kafka-python's bootstrap blocks for up to its 10 s time-out (a refused login is retried
    until then): run in the actor, it held up a SIGTERM past the stop's 5 s deadline."""
    clock, started = Clock(), []
    source = FakeSource({("blog.posts", 0)})
    actor = KafkaConsumerActor(settings=SETTINGS, broker=FakeRef(),
                               source_factory=lambda settings: source, clock=clock,
                               sleep=clock.sleep, spawn=started.append)
    actor.step()
    actor.step()
    assert len(started) == 1 and actor.source is None       # one bootstrap, still running
    assert clock.now <= 2 * consumer.POLL_TIMEOUT_MS / 1000
    started[0]()                                            # it ends
    actor.step()
    assert actor.source is source and len(started) == 1


def test_a_source_a_bootstrap_opens_after_the_stop_is_closed():
    started, source = [], FakeSource({("blog.posts", 0)})
    actor = KafkaConsumerActor(settings=SETTINGS, broker=FakeRef(),
                               source_factory=lambda settings: source, clock=Clock(),
                               sleep=lambda s: None, spawn=started.append)
    actor.step()
    actor.on_stop()
    started[0]()
    assert source.closed


def test_a_source_opened_just_before_the_stop_but_not_yet_taken_is_closed():
    started, source = [], FakeSource({("blog.posts", 0)})
    actor = KafkaConsumerActor(settings=SETTINGS, broker=FakeRef(),
                               source_factory=lambda settings: source, clock=Clock(),
                               sleep=lambda s: None, spawn=started.append)
    actor.step()
    started[0]()              # Kafka let us in; the stop comes before the actor's next turn
    actor.on_stop()
    assert source.closed


def test_partitions_whose_leader_refuses_the_gateway_are_reported_not_silent(caplog):
    from actors.kafka_reads import Unreached
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 0, p1: 0})
    actor, broker = _actor(source)
    actor.step()
    source.unreached_leaders = [Unreached(2, "k2:9093", (p1,),
                                          "[Error 58] SaslAuthenticationFailedError: "
                                          "Authentication failed during authentication due to "
                                          "invalid credentials with SASL mechanism PLAIN")]
    with caplog.at_level("WARNING"):
        _step_later(actor)
        _step_later(actor)
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected"
    assert ("blog.posts:1 not read: its leader, broker 2 at k2:9093, refuses the gateway"
            in state.detail)
    assert state.detail.endswith("refuses the gateway: authentication failed (SASL): check "
                                 "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, and that the "
                                 "listener enables SASL")
    warnings = [r for r in caplog.records if "broker 2 at k2:9093" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    source.unreached_leaders = [Unreached(2, "k2:9093", (p1,), "")]
    _step_later(actor)
    assert "broker 2 at k2:9093, does not answer" in broker.of(KafkaStateChanged)[-1].detail
    assert broker.of(KafkaStateChanged)[-1].unread == (p1,)
    source.unreached_leaders = []
    _step_later(actor)
    assert "not read" not in broker.of(KafkaStateChanged)[-1].detail
    assert broker.of(KafkaStateChanged)[-1].unread == ()        # read again: the broker knows


def test_a_leader_that_never_answers_holds_back_only_its_partitions(caplog):
    """One broker up for Kafka but out of the gateway's reach (its advertised address wrong for
    us, a firewall): the offsets look-up of the first assignment waited on it and failed every
    time, so no partition was ever read. Now its partitions wait, said, and the others stream."""
    from actors.kafka_reads import Unreached
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 4, p1: 7})
    source.unanswered = {p1}
    actor, broker = _actor(source)
    with caplog.at_level("WARNING"):
        actor.step()
    assert source.assignments == [] and "Traceback" not in caplog.text
    assert "offsets" in caplog.text and "blog.posts:0-1" in caplog.text
    source.unreached_leaders = [Unreached(3, "k3:9094", (p1,), "")]     # what the look-up left
    actor.next_refresh = 0.0
    actor.step()
    assert source.assignments[-1][0] == {p0}
    assert "blog.posts:1 not read: its leader, broker 3 at k3:9094" in broker.of(
        KafkaStateChanged)[-1].detail
    source.unanswered, source.unreached_leaders = set(), []
    actor.next_refresh = 0.0
    actor.step()
    assert source.assignments[-1] == ({p0, p1}, {p1: 7})        # from its end, as at start


def test_kafka_gone_as_a_whole_is_not_blamed_on_partitions_without_a_leader(caplog):
    """A single broker stopped: every partition lost its leader in the metadata a moment
    before the connection was lost, and a warning said 'each reads on ..., the others stream
    meanwhile' when none did, besides the 'unreachable' line (an operations audit)."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 5, p1: 9})
    actor, broker = _actor(source)
    actor.step()
    source.without_leader = {p0, p1}
    with caplog.at_level("WARNING"):
        actor.step()
        source.is_connected = False
        actor.step()
    assert "without a leader" not in caplog.text
    assert broker.of(KafkaStateChanged)[-1].state == "unreachable"


def test_a_partition_whose_leader_goes_away_while_read_is_said_not_silent(caplog):
    """Its broker stops (a replication factor of 1): the partition was assigned already, so
    /health said nothing ('connected', no detail) while it was not read. Now it says so, and
    the log once; it reads on from where it stopped once Kafka elects a leader."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 5, p1: 9})
    actor, broker = _actor(source)
    actor.step()
    source.without_leader = {p1}
    with caplog.at_level("WARNING"):
        for _ in range(3):
            _step_later(actor)
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "connected" and "blog.posts:1 has no leader" in state.detail
    assert state.unread == (p1,)
    assert caplog.text.count("without a leader") == 1
    source.without_leader = set()
    _step_later(actor)
    assert "no leader" not in broker.of(KafkaStateChanged)[-1].detail
    assert broker.of(KafkaStateChanged)[-1].unread == ()
    assert source.assignments[-1][0] == {p0, p1}        # never assigned anew: read on


def test_a_batch_read_but_not_delivered_stops_the_actor_instead_of_being_lost(monkeypatch,
                                                                              caplog):
    """A failure after poll() returned records (a bug, a MemoryError while making events):
    Kafka's position is past them, so the retry went on after them and they were lost for
    every stream (and their ids moved past them: no resume brought them back), while /health
    said ok. The actor now dies of it: the watchdog retires the worker, whose streams resume
    from their last ids on its replacement."""
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})

    class Unstarted(KafkaConsumerActor):
        actor_ref = None           # its notes to itself go to a FakeRef

    broker = FakeRef()
    actor = Unstarted(settings=SETTINGS, broker=broker, source_factory=lambda settings: source,
                      clock=Clock(), sleep=lambda s: None, spawn=_now)
    actor.actor_ref = FakeRef()
    actor.on_receive(Poll())                       # assigned; the warm start is over: live
    actor.on_receive(Poll())
    real = consumer.events_from_records

    def failing(records, *args, **kwargs):
        raise MemoryError("while making events")
    monkeypatch.setattr(consumer, "events_from_records", failing)
    source.queue = [_record(0, {"type": "a"})]
    with pytest.raises(Exception) as failed:       # pykka stops the actor
        actor.on_receive(Poll())
    assert "1 record(s) read from Kafka were not delivered" in str(failed.value)
    monkeypatch.setattr(consumer, "events_from_records", real)
    assert "kafka poll failed, retrying" not in caplog.text
    assert [e.type for m in broker.of(Consumed) for e in m.events] == []


def test_a_deleted_topic_is_said_once_as_deleted_not_as_a_broker_down(caplog):
    """Deleted in Kafka, a topic's partitions are in no metadata, so kafka-python knows no
    leader for them: the log blamed a broker ('partitions without a leader (is their broker
    down?)', /health too) and never said that the topic was gone."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 5, p1: 5})
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.position = {p0: 5, p1: 5}
    actor.step()                                   # warm start over: live
    caplog.clear()
    source.available, source.without_leader = set(), {p0, p1}     # deleted
    for now in (1.5, 3.0, 4.5):
        clock.now = now
        actor.step()
    # WARNING and up: an INFO line shows here or not by the level an earlier test left
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in lines] == ["WARNING"], [r.getMessage() for r in lines]
    said = lines[0].getMessage()
    assert "topic blog.posts of KAFKA_TOPICS was deleted" in said, said
    assert "broker" not in said and "leader" not in said, said
    state = broker.of(KafkaStateChanged)[-1]
    assert "topic blog.posts no longer exists" in state.detail
    assert "leader" not in state.detail, state.detail


def test_partitions_read_again_after_a_broker_outage_are_said_so(caplog):
    """One broker of three killed and started again (real cluster): the last line about it was
    its start-up 'c.b:0 not read: its leader, broker 2 ..., does not answer', while /health was
    already clean; nothing said that the partition was read again."""
    from actors.kafka_reads import Unreached
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 0, p1: 0})
    actor, broker = _actor(source)
    actor.step()
    caplog.set_level("INFO", logger="actors.consumer")
    caplog.clear()
    source.without_leader = {p1}                  # its broker down, no other replica
    _step_later(actor)
    source.without_leader = set()                 # the broker back, elected, not answering yet
    source.unreached_leaders = [Unreached(2, "k2:9093", (p1,), "")]
    _step_later(actor)
    source.unreached_leaders = []                 # answering
    _step_later(actor)
    _step_later(actor)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"], lines
    assert lines[2][1].startswith("reading blog.posts:1 again"), lines[2][1]


def test_every_partitions_leader_is_looked_at_once_a_walk_not_at_every_poll():
    """With 1,000 partitions, looking up each one's leader and its broker after every poll was
    a tenth of the worker's samples, idle and under load. The looks are now WALK_EVERY_S apart
    (a new assignment still looks at once); a lost connection is still said at the next poll."""
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    source = FakeSource({p0, p1}, end={p0: 5, p1: 9})
    looks = []
    leaderless = source.leaderless
    source.leaderless = lambda partitions: looks.append(1) or leaderless(partitions)
    actor, broker = _actor(source)
    actor.step()
    looked = len(looks)
    assert looked                               # the assignment looked at once
    for _ in range(5):
        actor.step()
    assert len(looks) == looked                 # the same instant: nothing looked at again
    source.without_leader = {p1}
    _step_later(actor)
    assert len(looks) > looked and "blog.posts:1 has no leader" in broker.of(
        KafkaStateChanged)[-1].detail
    source.is_connected = False
    actor.step()
    assert broker.of(KafkaStateChanged)[-1].state == "unreachable"


def test_a_lost_connection_names_the_brokers_it_reconnects_to():
    """Real Kafka killed under a running gateway: 'kafka connected -> unreachable: lost the
    connection to Kafka; reconnecting', without saying which Kafka, where the start-up line
    ('no broker of 127.0.0.1:29400 accepts connections') did."""
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})
    actor, broker = _actor(source)
    actor.step()
    source.is_connected = False
    actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert state.state == "unreachable"
    assert state.detail == ("lost the connection to Kafka (KAFKA_BROKERS="
                            f"{','.join(SETTINGS.kafka_brokers)}); reconnecting"), state.detail


def test_when_no_topic_existed_at_start_the_first_one_created_is_read_from_its_beginning():
    """No topic of KAFKA_TOPICS at start: the first to appear was warm-started from its end,
    and the streams held meanwhile lost what was written before the gateway noticed it (an
    e2e audit: 200 events produced, 5 delivered)."""
    p0 = ("blog.posts", 0)
    source, clock = FakeSource(set(), begin={p0: 0}, end={p0: 200}), Clock()
    actor, broker = _actor(source, clock)
    for second in range(0, 8):                     # connected; the topic is missing
        clock.now = float(second)
        actor.step()
    assert source.assignments == [] and not broker.of(Consumed)
    source.available.add(p0)
    clock.now = 9.0
    actor.step()
    assert source.assignments == [({p0}, {p0: 0})]
    [announced] = broker.of(Consumed)
    assert announced.warm and announced.events == () and announced.starts == {p0: 0}


def test_a_topic_there_at_start_but_listed_late_is_still_warm_started_from_its_end():
    p0 = ("blog.posts", 0)
    source, clock = FakeSource(set(), begin={p0: 0}, end={p0: 200}), Clock()
    actor, broker = _actor(source, clock)
    actor.step()                                   # the first metadata may not list it yet
    source.available.add(p0)
    clock.now = 1.0
    actor.step()
    assert source.assignments == [({p0}, {p0: 197})]          # SSE_HISTORY_SIZE=3 back


def test_a_warm_start_cut_short_at_its_deadline_goes_on_live_from_the_announced_start():
    """The warm start gave up on a partition it had read to offset 3 of 5 and told the broker
    live starts at 5; the consumer read on from 3, so 3 and 4 came as live events below that
    start: ids went backwards, and a stream resumed meanwhile (replayed from Kafka up to 5)
    got them twice (a Kafka audit found it)."""
    p0 = ("blog.posts", 0)
    source, clock = FakeSource({p0}, end={p0: 5}), Clock()
    actor, broker = _actor(source, clock)
    actor.step()                                    # assigned, reading back from offset 2
    source.queue, source.position = [_record(2, {"type": "a", "data": 2})], {p0: 3}
    actor.step()                                    # 3 and 4 are slow to come
    clock.now = warm_start.MAX_SECONDS
    actor.step()                                    # the warm start gives up
    [warm] = [m for m in broker.of(Consumed) if m.warm]
    assert warm.frontier[p0] == 5 and warm.starts[p0] == 5
    assert source.went_on == [{p0: 5}]
    # The history lacks 3 and 4, whatever their times: streams held meanwhile read Kafka
    # (with None, "it holds every event it read", one with history lost them).
    assert warm.complete_after_ms == consumer.MAX_TIMESTAMP_MS


def _hidden_actor(source, clock):
    """blog.posts and blog.hidden, the gateway first connected at 1736164800 s (wall clock)."""
    broker = FakeRef()
    actor = KafkaConsumerActor(settings=SETTINGS.replace(kafka_topics=("blog.posts",
                                                                       "blog.hidden")),
                               broker=broker, source_factory=lambda settings: source, clock=clock,
                               sleep=lambda s: None, spawn=_now, wall=lambda: 1736164800.0)
    return actor, broker


def test_a_topic_an_acl_hides_is_unauthorized_never_missing_nor_flapping(caplog):
    """A topic the gateway's user may not DESCRIBE: Kafka lists none of its partitions, and
    it was said not to exist ('create it or correct KAFKA_TOPICS') within an unauthorized
    state that flapped to connected at each assignment (an ACL audit)."""
    import logging
    p0 = ("blog.posts", 0)
    source, clock = FakeSource({p0}, end={p0: 4}), Clock()
    source.denied = {"blog.hidden"}
    actor, broker = _hidden_actor(source, clock)
    caplog.set_level(logging.INFO, "actors.consumer")
    for second in range(0, 40):
        clock.now = float(second)
        actor.step()
    states = [(m.state, m.detail) for m in broker.of(KafkaStateChanged)]
    assert {s for s, _d in states} == {"unauthorized"}, states
    assert states[-1][1] == "not authorized to read topic blog.hidden"
    assert "does not exist" not in caplog.text


def test_a_topic_an_acl_hid_at_start_is_read_from_where_it_stood_then_not_its_beginning():
    """Once the ACL allowed it, the topic was taken as newly created and read from offset 0:
    every live stream got its whole retained log. Kafka answers no offsets of a topic it
    hides, so it is read from the first record written after the gateway started."""
    p0, h0, h1 = ("blog.posts", 0), ("blog.hidden", 0), ("blog.hidden", 1)
    source, clock = FakeSource({p0}, end={p0: 4, h0: 50, h1: 7}), Clock()
    source.denied = {"blog.hidden"}
    actor, broker = _hidden_actor(source, clock)
    for second in range(0, 20):
        clock.now = float(second)
        actor.step()
    source.denied = set()
    source.available |= {h0, h1}
    source.by_time = {h0: 42}                     # h1: nothing written since the start
    clock.now = 25.0
    actor.step()
    assert source.times_asked == [1736164800000]
    assert source.assignments[-1] == ({p0, h0, h1}, {h0: 42, h1: 7})
    assert broker.of(Consumed)[-1].starts == {h0: 42, h1: 7}
    assert [m.state for m in broker.of(KafkaStateChanged)][-1] == "connected"


def test_a_topic_created_after_the_start_is_still_read_from_its_beginning():
    p0, n0 = ("blog.posts", 0), ("blog.hidden", 0)
    source, clock = FakeSource({p0}, end={p0: 4, n0: 9}), Clock()
    actor, _broker = _hidden_actor(source, clock)
    for second in range(0, 10):
        clock.now = float(second)
        actor.step()
    source.available.add(n0)
    clock.now = 12.0
    actor.step()
    assert source.assignments[-1] == ({p0, n0}, {n0: 0}) and source.times_asked == []


def test_when_every_topic_was_hidden_at_start_the_streams_get_them_from_the_start_on():
    h0 = ("blog.hidden", 0)
    settings = SETTINGS.replace(kafka_topics=("blog.hidden",))
    source, clock, broker = FakeSource(set(), end={h0: 50}), Clock(), FakeRef()
    source.denied = {"blog.hidden"}
    actor = KafkaConsumerActor(settings=settings, broker=broker,
                               source_factory=lambda settings: source, clock=clock,
                               sleep=lambda s: None, spawn=_now, wall=lambda: 1736164800.0)
    for second in range(0, 10):
        clock.now = float(second)
        actor.step()
    source.denied, source.available, source.by_time = set(), {h0}, {h0: 45}
    clock.now = 12.0
    actor.step()
    assert source.assignments == [({h0}, {h0: 45})]
    [announced] = broker.of(Consumed)                # the held streams go live from there
    assert announced.warm and announced.starts == {h0: 45}


def test_a_topic_an_acl_hides_while_it_is_read_is_not_said_deleted(caplog):
    p0, h0 = ("blog.posts", 0), ("blog.hidden", 0)
    source, clock = FakeSource({p0, h0}, end={p0: 4, h0: 5}), Clock()
    actor, broker = _hidden_actor(source, clock)
    actor.step()
    source.available, source.denied = {p0}, {"blog.hidden"}
    for second in range(1, 10):
        clock.now = float(second)
        actor.step()
    state = broker.of(KafkaStateChanged)[-1]
    assert (state.state, state.detail) == ("unauthorized",
                                           "not authorized to read topic blog.hidden")
    assert "deleted" not in caplog.text and "does not exist" not in caplog.text
    assigned = len(source.assignments)
    source.available, source.denied = {p0, h0}, set()
    clock.now = 12.0
    actor.step()
    assert len(source.assignments) == assigned     # read on from where it stopped: no seek
    assert broker.of(KafkaStateChanged)[-1].partitions == (h0, p0)


def _tls_actor(ca):
    settings = SETTINGS.replace(kafka_security_protocol="SSL", kafka_ssl_ca_file=str(ca))
    source, broker = FakeSource({("blog.posts", 0)}), FakeRef()
    actor = KafkaConsumerActor(settings=settings, broker=broker,
                               source_factory=lambda settings: source, clock=Clock(),
                               sleep=lambda s: None, spawn=_now)
    actor.step()
    source.is_connected = False
    return actor, broker, source


def test_a_tls_file_gone_while_kafka_is_lost_is_named_until_it_is_back(tmp_path):
    """A secret remounted or rotated with a gap while the broker restarted: /health said only
    'lost the connection to Kafka ...; reconnecting', and nothing at INFO or above said why
    (the broker logs each new reason of an outage once: test_broker)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA\n")
    actor, broker, source = _tls_actor(ca)
    actor.step()
    assert broker.of(KafkaStateChanged)[-1].detail.startswith("lost the connection to Kafka")
    ca.rename(tmp_path / "away.pem")
    for _ in range(3):
        actor.step()
    changes = broker.of(KafkaStateChanged)
    state = changes[-1]
    assert state.state == "unreachable" and len(changes) == 3       # one change per reason
    assert state.detail.startswith(f"KAFKA_SSL_CA_FILE={str(ca)!r} cannot be read (No such file")
    assert state.detail.endswith("restore the file or correct the setting; reconnecting")
    (tmp_path / "away.pem").rename(ca)
    actor.step()                                  # back, Kafka not yet: the file is not blamed
    assert broker.of(KafkaStateChanged)[-1].detail.startswith("lost the connection to Kafka")
    source.is_connected = True
    actor.step()
    assert broker.of(KafkaStateChanged)[-1].state == "connected"


def test_a_tls_file_gone_as_kafka_is_lost_is_the_reason_of_the_state_change(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA\n")
    actor, broker, _source = _tls_actor(ca)
    ca.unlink()
    actor.step()
    actor.step()
    [_, lost] = broker.of(KafkaStateChanged)
    assert lost.state == "unreachable" and lost.detail.startswith("KAFKA_SSL_CA_FILE=")


def test_a_recreated_topic_and_its_new_start_are_told_the_history_once(monkeypatch):
    """A topic deleted and created again: the history is told once to forget the old topic and
    to cover the new one from its beginning. Told again with every batch, it dropped the events
    it had kept (or took the beginning for covered after evicting it), and a stream resuming
    from an id of a few batches back silently missed the events in between."""
    import uuid
    from actors import resume
    import actors.consumer as consumer_module
    monkeypatch.setattr(resume, "INCARNATIONS", resume.Incarnations())
    monkeypatch.setattr(consumer_module, "INCARNATIONS", resume.INCARNATIONS)
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, begin={p0: 17}, end={p0: 20})    # no record older than 17
    source.ids = {"blog.posts": uuid.UUID(int=1)}
    clock = Clock()
    actor, broker = _actor(source, clock)
    actor.step()
    source.position = {p0: 20}
    actor.step()                                   # warm start over: live from 20
    source.ids = {"blog.posts": uuid.UUID(int=2)}              # deleted and created again
    source.begin, source.end, source.position = {p0: 0}, {p0: 0}, {p0: 0}
    clock.now = 1.5
    actor.step()
    reset = broker.of(Consumed)[-1]
    assert reset.reset_topics == ("blog.posts",) and reset.starts == {p0: 0}
    for offset in (0, 1):
        source.queue = [_record(offset, {"type": "new"})]
        source.position = {p0: offset + 1}
        actor.step()
        later = broker.of(Consumed)[-1]
        assert [decode(TOPICS, e.sse_id) for e in later.events] == [{p0: offset + 1}]
        assert later.reset_topics == () and later.starts == {}


def test_a_kafka_fault_in_a_poll_that_read_nothing_is_retried_not_a_lost_batch(caplog):
    """A Kafka fault after a poll that returned no record (its positions could not be read):
    nothing was lost, so the consumer logs it and polls again. Taken for a batch read but not
    delivered, it stopped the actor: the worker was retired and all its streams dropped."""
    p0 = ("blog.posts", 0)
    source = FakeSource({p0}, end={p0: 0})

    class Unstarted(KafkaConsumerActor):
        actor_ref = None           # its notes to itself go to a FakeRef

    actor = Unstarted(settings=SETTINGS, broker=FakeRef(), source_factory=lambda settings: source,
                      clock=Clock(), sleep=lambda s: None, spawn=_now)
    actor.actor_ref = FakeRef()
    actor.on_receive(Poll())                       # assigned; the warm start is over: live

    def failing():
        raise RuntimeError("position unknown")
    source.positions = failing
    actor.on_receive(Poll())
    assert "kafka poll failed, retrying every second: position unknown" in caplog.text
    assert len(actor.actor_ref.of(Poll)) == 2       # polls again


def test_a_read_further_back_cut_at_the_deadline_keeps_the_events_of_the_reads_it_finished():
    """Only the unfinished read is left out of the history: the events read further back
    before it, without a gap up to the end, must still fill it."""
    p0 = ("blog.posts", 0)
    start = warm_start.WarmStart(SETTINGS, {p0: 0}, {p0: 1000}, now=0.0)
    start.add([_record(o, b"bad") for o in range(997, 1000)])
    start.reached({p0: 1000})
    assert start.done(0.0) and start.read_back(0.0) == {p0: 994}
    start.add([_record(994, b"bad"), _record(995, b"bad"), _record(996, {"type": "kept"})])
    start.reached({p0: 997})
    assert start.done(0.0) and start.read_back(0.0) == {p0: 988}   # still short of 3 events
    start.add([_record(990, {"type": "unfinished"})])                # 991..993 not in time
    assert start.done(warm_start.MAX_SECONDS)
    events, covered, _ = start.finish(TOPICS)
    assert [e.type for e in events] == ["kept"] and covered == {p0: 996}


def test_a_record_of_a_partition_the_warm_start_does_not_read_is_kept_as_a_live_one():
    """A partition assigned after the warm start began comes in its reads: its records are
    live ones, to be published after the history, not dropped."""
    p0 = ("blog.posts", 0)
    start = warm_start.WarmStart(SETTINGS, {p0: 0}, {p0: 10}, now=0.0)
    other = _record(0, {"type": "new"}, partition=1)
    start.add([other, *(_record(o, {"type": "old"}) for o in range(7, 10))])
    start.reached({p0: 10})
    assert start.done(0.0) and start.read_back(0.0) == {}
    events, _covered, live = start.finish(TOPICS)
    assert [e.type for e in events] == ["old"] * 3 and live == [other]


def test_a_thread_the_worker_cannot_start_is_not_said_to_be_kafka():
    """ulimit -u reached: the state said `unreachable: can't start new thread`, as if Kafka
    were down (the resource-exhaustion audit)."""
    def factory(settings):
        raise RuntimeError("can't start new thread")

    state = _state_after_bootstrap(factory)
    assert state.detail.startswith("not Kafka: this worker cannot start a thread")
    assert "ulimit -u" in state.detail and "TasksMax" in state.detail
