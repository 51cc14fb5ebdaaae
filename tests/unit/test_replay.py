"""The replay actor and its queue, on an unstarted actor with a fake Kafka reader and clock."""
import json
from types import SimpleNamespace

import pytest

from actors import replay as replay_module
from actors import replay_queue
from actors.filters import Filter
from actors.kafka_reads import Record
from actors.messages import (
    CancelReplay, Consumed, ContinueReplay, DisconnectClient, ReadRange, Replayed,
)
from actors.outbox import Outbox
from actors.replay import ReplayActor
from actors.resume import decode
from tests.fakes import FakeRef
from tests.sse import parse_stream

TOPIC = "blog.posts"
P0, P1 = (TOPIC, 0), (TOPIC, 1)


class FakeReader:
    """A Kafka log per partition; each fetch hands out at most `per_poll` records a partition."""

    def __init__(self, log, begin=None, per_poll=2, times=None):
        self.log = log                     # partition -> [Record]
        self.begin = begin or {}
        self.per_poll = per_poll
        self.times = times or {}
        self.fetches = []                  # the ranges of every fetch
        self.handed = 0                    # records handed out
        self.fail = None
        self.closed = False

    def bounds(self, partitions):
        return {p: self.begin.get(p, 0) for p in partitions}, {}

    def unreadable(self, partitions):
        return {}

    def offsets_for_time(self, partitions, since_ms):
        return {p: next((r.offset for r in self.log.get(p, []) if r.timestamp_ms >= since_ms),
                        None) for p in partitions}

    def fetch(self, ranges):
        if self.fail:
            raise self.fail
        self.fetches.append(dict(ranges))
        out, positions = [], {}
        for p, (start, until) in ranges.items():
            got = [r for r in self.log.get(p, []) if start <= r.offset < until][:self.per_poll]
            out += got
            positions[p] = got[-1].offset + 1 if got else until
        self.handed += len(out)
        return out, positions

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _record(partition, offset, type_="blog.post.created", size=10, ts=None):
    value = json.dumps({"id": f"p{partition}-{offset}", "type": type_, "source": "svc",
                        "data": "x" * size}).encode()
    return Record(TOPIC, partition, offset, ts if ts is not None else offset * 10 + partition,
                  value, ())


def _log(per_partition=10, **kw):
    return {(TOPIC, p): [_record(p, o, **kw) for o in range(per_partition)] for p in (0, 1)}


class _Replay(ReplayActor):
    actor_ref = None           # unstarted: its notes to itself go to a FakeRef


def _actor(reader, max_events=10000, clock=None):
    settings = SimpleNamespace(kafka_topics=(TOPIC,), sse_replay_max_events=max_events,
                               sse_max_event_bytes=1 << 20)
    actor = _Replay(settings=settings, reader_factory=lambda s: reader, clock=clock or Clock())
    actor.actor_ref = FakeRef()
    return actor


def _request(client_id, start, until, broker, outbox, address="10.0.0.1", types=None,
             since_ms=None):
    return ReadRange(client_id, Filter.parse(types, None), start, until, broker, since_ms,
                     address, True, outbox)


def _drain(actor, outbox=None, turns=1000):
    """Run slices until the queue is empty, taking what the outbox holds as a client would."""
    taken = b""
    for _ in range(turns):
        if outbox is not None:
            taken += outbox.take(0)[0]
        if not len(actor.queue):
            break
        actor.on_receive(ContinueReplay())
    if outbox is not None:
        taken += outbox.take(0)[0]
    return taken


@pytest.fixture(autouse=True)
def _no_idle_sleep(monkeypatch):
    monkeypatch.setattr(replay_module, "IDLE_S", 0)
    monkeypatch.setattr(replay_module, "IDLE_MAX_S", 0)


# -- the plan ------------------------------------------------------------------------------
def test_plan_starts_at_the_frontier_and_reports_retention_and_limit_gaps():
    reader = FakeReader(_log())
    actor = _actor(reader, max_events=6)
    actor.reader = reader
    request = _request("c", {P0: 1, P1: 4}, {P0: 10, P1: 10}, FakeRef(), Outbox(100))
    start, gaps = actor.plan(request, {P0: 3, P1: 0})
    # retention moves p0 to 3; then 7 + 6 = 13 records exceed 6: keep the newest, proportionally
    # (3 and 2, and the one left over to p1, whose share, 36/13, lost more to rounding down)
    assert start == {P0: 10 - 7 * 6 // 13, P1: 10 - 6 * 6 // 13 - 1}
    assert gaps[0] == ("retention", P0, 1, 3)
    assert {g[0] for g in gaps[1:]} == {"replay_limit"}


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 19, 20, 21])
def test_a_replay_past_its_limit_reads_exactly_the_limit(limit):
    """The newest part of a gap larger than SSE_REPLAY_MAX_EVENTS is replayed: all of the
    limit, however the partitions share it (1 record of 2 partitions of 10 each: not none)."""
    reader = FakeReader(_log(10))
    actor = _actor(reader, max_events=limit)
    actor.reader = reader
    request = _request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, FakeRef(), Outbox(100))
    start, gaps = actor.plan(request, {})
    assert sum(10 - start[p] for p in (P0, P1)) == min(limit, 20)
    assert [(p, s) for _reason, p, _wanted, s in gaps] == [(p, start[p]) for p in (P0, P1)
                                                          if start[p]]


def test_log_starts_looked_up_before_a_topic_was_recreated_are_not_used_after(monkeypatch):
    """The cached first offsets (BOUNDS_TTL_S) belong to the topic's old incarnation: the new
    one starts at 0. Used within the second, they would start a resume of the new topic at
    the old log start (here past its end): its events skipped, and no gap said."""
    import uuid
    from actors import resume
    kafka = resume.Incarnations()
    monkeypatch.setattr(resume, "INCARNATIONS", kafka)
    kafka.learn(TOPIC, uuid.uuid4())
    reader = FakeReader(_log(), begin={P0: 4000, P1: 4000})
    actor = _actor(reader)
    actor.reader = reader
    assert actor.log_start({P0, P1}) == {P0: 4000, P1: 4000}
    kafka.learn(TOPIC, uuid.uuid4())                 # deleted and created again
    reader.begin = {P0: 0, P1: 0}
    request = _request("c", None, {P0: 6, P1: 6}, FakeRef(), Outbox(100))
    start, gaps = actor.plan(request, actor.log_start({P0, P1}))
    assert start == {P0: 0, P1: 0} and gaps == []


def test_plan_for_a_time_starts_at_the_first_record_that_late():
    reader = FakeReader(_log())
    actor = _actor(reader)
    actor.reader = reader
    request = _request("c", None, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=51)
    start, gaps = actor.plan(request, {})
    assert start == {P0: 6, P1: 5} and gaps == []



class _CountingReader(FakeReader):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.asked = []                     # the partitions of each offsets-for-time look-up

    def offsets_for_time(self, partitions, since_ms):
        self.asked.append(set(partitions))
        return super().offsets_for_time(partitions, since_ms)


def _planned(actor, since_ms, until):
    request = _request("c", None, until, FakeRef(), Outbox(100), since_ms=since_ms)
    return actor.plan(request, actor.log_start(set(until)))[0]


def test_streams_asking_for_one_time_together_cost_one_kafka_look_up():
    """The streams a warm start held all read from one time: each asked Kafka in turn, one
    round trip apiece (2,000 held streams waited 1.8-2.2 s for their shared read; 0.2 s with
    one look-up). An answer serves the others for SINCE_TTL_S, then is asked again."""
    clock = Clock()
    reader = _CountingReader(_log())
    actor = _actor(reader, clock=clock)
    actor.reader = reader
    starts = [_planned(actor, 51, {P0: 10, P1: 10}) for _ in range(3)]
    assert starts == [{P0: 6, P1: 5}] * 3 and reader.asked == [{P0, P1}]
    assert _planned(actor, 52, {P0: 10, P1: 10}) == {P0: 6, P1: 6}     # another time: asked
    clock.now += replay_module.SINCE_TTL_S + 0.01
    assert _planned(actor, 51, {P0: 10, P1: 10}) == {P0: 6, P1: 5}
    assert len(reader.asked) == 3
    assert list(actor._at_times) == [51]      # 52's answer, stale, is forgotten


def test_a_partition_with_nothing_that_late_is_asked_again():
    """"Nothing that late" stops being true with the next record: remembered, the stream
    after it would start past that record (here p0's offset 10) and never see it."""
    reader = _CountingReader(_log())
    actor = _actor(reader)
    actor.reader = reader
    assert _planned(actor, 91, {P0: 10, P1: 10}) == {P0: 10, P1: 9}   # p0 ends at ts 90
    reader.log[P0].append(_record(0, 10, ts=200))
    assert _planned(actor, 91, {P0: 11, P1: 10}) == {P0: 10, P1: 9}
    assert reader.asked == [{P0, P1}, {P0}]


def test_time_look_ups_made_before_a_topic_was_recreated_are_not_used_after(monkeypatch):
    import uuid
    from actors import resume
    kafka = resume.Incarnations()
    monkeypatch.setattr(resume, "INCARNATIONS", kafka)
    kafka.learn(TOPIC, uuid.uuid4())
    reader = _CountingReader(_log())
    actor = _actor(reader)
    actor.reader = reader
    assert _planned(actor, 51, {P0: 10, P1: 10}) == {P0: 6, P1: 5}
    kafka.learn(TOPIC, uuid.uuid4())
    reader.log = {P0: [_record(0, 0, ts=60)], P1: []}
    assert _planned(actor, 51, {P0: 1, P1: 1}) == {P0: 0, P1: 1}
    assert len(reader.asked) == 2

# -- one replay ----------------------------------------------------------------------------
def test_a_replay_streams_matching_events_merged_by_time_with_frontier_ids_then_hands_over():
    log = _log(6)
    log[P1][2] = _record(1, 2, type_="link.clicked")
    reader = FakeReader(log)
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 1, P1: 0}, {P0: 5, P1: 6}, broker, outbox,
                              types="blog.*"))
    assert actor.actor_ref.of(ContinueReplay)
    events = parse_stream(_drain(actor, outbox))
    got = [json.loads(e["data"])["id"] for e in events]
    expected = sorted([(o * 10 + 0, f"p0-{o}") for o in range(1, 5)] +
                      [(o * 10 + 1, f"p1-{o}") for o in range(6) if o != 2])
    assert got == [i for _, i in expected]
    frontier = decode((TOPIC,), events[-1]["id"])
    assert frontier == {P0: 5, P1: 6}
    assert decode((TOPIC,), events[0]["id"]) == {P0: 1, P1: 1}     # p1-0 came first
    [final] = broker.of(Replayed)
    assert final.client_id == "c" and final.found and final.events == ()
    assert final.streamed == {TOPIC: len(got)}
    assert len(actor.queue) == 0 and actor.queue.read_of == {}     # nothing kept per client


def test_a_gap_larger_than_sse_replay_max_events_says_so_then_streams_only_the_newest():
    reader = FakeReader(_log(10))
    actor = _actor(reader, max_events=4)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, outbox))
    gap, *events = parse_stream(_drain(actor, outbox))
    assert gap["event"] == "gap"
    assert json.loads(gap["data"]) == {"reason": "replay_limit", "partitions": [
        {"topic": TOPIC, "partition": p, "requested_offset": 0, "resumed_offset": 8,
         "reason": "replay_limit"} for p in (0, 1)]}
    assert decode((TOPIC,), gap["id"]) == {P0: 8, P1: 8}        # resuming from it: no loop
    assert [json.loads(e["data"])["id"] for e in events] == ["p0-8", "p1-8", "p0-9", "p1-9"]
    assert [decode((TOPIC,), e["id"]) for e in events] == [
        {P0: 9, P1: 8}, {P0: 9, P1: 9}, {P0: 10, P1: 9}, {P0: 10, P1: 10}]
    assert reader.handed == 4                                    # the older ones were not read
    [final] = broker.of(Replayed)
    assert final.streamed == {TOPIC: 4}


def test_a_replay_keeps_in_its_ids_a_partition_seen_elsewhere_that_this_instance_lacks():
    """The client saw 500 events of partition 2 on an instance that lists it; this one does
    not yet (added lately, or its leader was down when it started). Ids without it would mean
    "from its beginning": a reconnect would show those 500 events again."""
    p2 = (TOPIC, 2)
    reader = FakeReader(_log(6), begin={P0: 2, P1: 0})
    actor = _actor(reader)
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 1, P1: 3, p2: 500}, {P0: 6, P1: 6}, FakeRef(), outbox))
    gap, *events = parse_stream(_drain(actor, outbox))
    assert gap["event"] == "gap" and len(events) == 4 + 3
    assert all(decode((TOPIC,), e["id"])[p2] == 500 for e in [gap, *events])


def test_a_replay_merges_partitions_by_time_then_partition_and_keeps_each_partitions_order():
    log = {P0: [_record(0, 0, ts=50), _record(0, 1, ts=10), _record(0, 2, ts=60)],
           P1: [_record(1, 0, ts=50), _record(1, 1, ts=-1), _record(1, 2, ts=55)]}
    actor = _actor(FakeReader(log, per_poll=3))
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 3, P1: 3}, FakeRef(), outbox))
    events = parse_stream(_drain(actor, outbox))
    # p0-1 (10) waits behind p0-0 (50); p1-1 has no time (0) and comes before p1-2 (55)
    assert [json.loads(e["data"])["id"] for e in events] == [
        "p0-0", "p0-1", "p1-0", "p1-1", "p1-2", "p0-2"]


def test_a_replay_over_many_partitions_orders_each_record_in_about_log_steps(monkeypatch):
    """The next record in time was found by a look at every partition's first record: over
    300 partitions, 300 looks per record (the square of the partitions in all)."""
    from actors import events
    looks = []

    def counted(record):
        looks.append(record)
        return events.event_time(record), record.topic, record.partition
    monkeypatch.setattr(events, "time_order", counted)
    monkeypatch.setattr(replay_queue, "time_order", counted, raising=False)
    log = {(TOPIC, p): [_record(p, o, ts=1000 + 7 * o + p % 5) for o in range(3)]
           for p in range(300)}
    actor = _actor(FakeReader(log, per_poll=2))
    outbox = Outbox(10_000, max_bytes=1 << 30)
    until = {p: 3 for p in log}
    actor.on_receive(_request("c", {p: 0 for p in log}, until, FakeRef(), outbox))
    events_shown = parse_stream(_drain(actor, outbox))
    shown = [json.loads(e["data"])["id"] for e in events_shown]
    expected = sorted(((r.timestamp_ms, r.partition, r.offset) for rs in log.values() for r in rs))
    assert shown == [f"p{p}-{o}" for _t, p, o in expected]
    assert len(looks) <= 3 * len(shown), len(looks)


class TickingClock(Clock):
    """A millisecond passes at every look at the clock."""

    def __call__(self):
        self.now += 0.001
        return self.now


def test_a_slice_ends_at_its_deadline_however_many_records_wait():
    """A record costs every job of the read (200 clients resuming together): records emitted
    in runs without a look at the clock held the worker's loop for 99-289 ms a slice."""
    log = {P0: [_record(0, o) for o in range(1000)]}
    actor = _actor(FakeReader(log, per_poll=1000), clock=TickingClock())
    outbox = Outbox(10_000, max_bytes=1 << 30)
    actor.on_receive(_request("c", {P0: 0}, {P0: 1000}, FakeRef(), outbox))
    actor.on_receive(ContinueReplay())
    read = actor.queue.read_of["c"]
    assert 0 < read.records <= 1000 * replay_module.SLICE_S + 2, read.records


def test_a_jobs_chunk_stays_within_its_bound_while_its_client_takes_nothing(monkeypatch):
    """Records come in runs; a job whose chunk is full ends the run, so a client that takes
    nothing holds one chunk (and the outbox's), not a run's worth of frames."""
    peak = [0]
    add = replay_queue.Job.add

    def watched(job, frame, sse_id, topic):
        add(job, frame, sse_id, topic)
        peak[0] = max(peak[0], job.chunk_bytes)
    monkeypatch.setattr(replay_queue.Job, "add", watched)
    log = {P0: [_record(0, o, size=4000) for o in range(400)]}
    actor = _actor(FakeReader(log, per_poll=400))
    outbox = Outbox(10_000, max_bytes=1 << 30)
    actor.on_receive(_request("c", {P0: 0}, {P0: 400}, FakeRef(), outbox))
    for _ in range(20):
        actor.on_receive(ContinueReplay())      # the client takes nothing
    frame = len(log[P0][0].value) + 200
    assert replay_queue.CHUNK_BYTES <= peak[0] <= replay_queue.CHUNK_BYTES + frame, peak[0]


def test_a_gap_notice_comes_first():
    reader = FakeReader(_log(), begin={P0: 4})
    actor = _actor(reader)
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 9}, {P0: 6, P1: 10}, FakeRef(), outbox))
    events = parse_stream(_drain(actor, outbox))
    assert events[0]["event"] == "gap"
    assert json.loads(events[0]["data"])["partitions"][0]["resumed_offset"] == 4
    assert [json.loads(e["data"])["id"] for e in events[1:]] == ["p0-4", "p0-5", "p1-9"]


def test_an_empty_range_hands_over_at_once():
    reader = FakeReader(_log())
    actor = _actor(reader)
    broker = FakeRef()
    actor.on_receive(_request("c", {P0: 10, P1: 10}, {P0: 10, P1: 10}, broker, Outbox(100)))
    _drain(actor)
    assert broker.of(Replayed) and reader.fetches == []


def test_offsets_without_records_at_the_end_of_a_range_complete_it():
    reader = FakeReader({P0: [_record(0, o) for o in range(5)], P1: []})   # 5..9: markers
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 10, P1: 3}, broker, outbox))
    events = parse_stream(_drain(actor, outbox))
    assert [json.loads(e["data"])["id"] for e in events] == [f"p0-{o}" for o in range(5)]
    assert broker.of(Replayed) and len(actor.queue) == 0


# -- sharing -------------------------------------------------------------------------------
def test_clients_resuming_from_the_same_place_share_one_read_and_each_stops_at_its_end():
    reader = FakeReader(_log(10))
    actor = _actor(reader)
    broker = FakeRef()
    outboxes = {f"c{i}": Outbox(100) for i in range(50)}
    for i, (client_id, outbox) in enumerate(outboxes.items()):
        until = {P0: 10, P1: 10} if i else {P0: 5, P1: 10}      # c0 subscribed earlier
        actor.on_receive(_request(client_id, {P0: 0, P1: 0}, until, broker, outbox,
                                  address=f"10.0.0.{i % 7}"))
    taken = {c: b"" for c in outboxes}
    for _ in range(500):
        for c, outbox in outboxes.items():
            taken[c] += outbox.take(0)[0]
        if not len(actor.queue):
            break
        actor.on_receive(ContinueReplay())
    assert reader.handed == 20                   # every record read once, for all 50 clients
    full = parse_stream(taken["c1"])
    assert len(full) == 20 and all(parse_stream(taken[c]) == full for c in list(taken)[2:])
    short = parse_stream(taken["c0"])
    assert [json.loads(e["data"])["id"] for e in short] == [
        json.loads(e["data"])["id"] for e in full if json.loads(e["data"])["id"] < "p0-5"
        or json.loads(e["data"])["id"].startswith("p1")]
    # c0's ids never claim what it has not been shown: its p0 frontier stops at its end
    assert all(decode((TOPIC,), e["id"])[P0] <= 5 for e in short)
    assert decode((TOPIC,), short[-1]["id"]) == {P0: 5, P1: 10}
    assert sorted(m.client_id for m in broker.of(Replayed)) == sorted(outboxes)


def test_a_read_from_the_same_place_waits_briefly_for_company_while_one_runs():
    clock = Clock()
    reader = FakeReader(_log(10, size=40_000), per_poll=1)
    actor = _actor(reader, clock=clock)
    broker = FakeRef()
    first = Outbox(100)
    actor.on_receive(_request("a", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, first))
    actor.on_receive(ContinueReplay())            # the first read is under way
    later = [Outbox(100) for _ in range(5)]
    for i, outbox in enumerate(later):
        actor.on_receive(_request(f"b{i}", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, outbox,
                                  address="10.0.0.9"))
    assert len(actor.queue) == 2                  # the five late ones share a second read
    handed = reader.handed
    first.take(0)
    actor.on_receive(ContinueReplay())
    actor.on_receive(ContinueReplay())
    assert all(o.queued == 0 for o in later)      # gathering company
    clock.now += replay_queue.COALESCE_S
    _drain(actor, first)
    assert all(o.queued for o in later) and reader.handed - handed <= 40


# -- cancellation and fairness -------------------------------------------------------------
def test_a_cancelled_replay_stops_at_once():
    reader = FakeReader(_log(1000))
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 1000, P1: 1000}, broker, outbox))
    actor.on_receive(ContinueReplay())
    actor.on_receive(CancelReplay("c"))
    assert len(actor.queue) == 0 and actor.queue.read_of == {}    # at once, not when next run
    fetched = len(reader.fetches)
    _drain(actor)
    assert len(reader.fetches) == fetched and len(actor.queue) == 0 and not broker.of(Replayed)


def test_a_replay_whose_client_closed_is_dropped_without_the_broker():
    reader = FakeReader(_log(1000))
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 1000, P1: 1000}, broker, outbox))
    actor.on_receive(ContinueReplay())
    outbox.close("client went away")
    fetched = len(reader.fetches)
    _drain(actor)
    assert len(reader.fetches) == fetched and len(actor.queue) == 0


def test_addresses_take_turns():
    clock = Clock()
    reader = FakeReader(_log(1000), per_poll=1)
    actor = _actor(reader, clock=clock)
    broker = FakeRef()
    heavy = [Outbox(100) for _ in range(30)]
    for i, outbox in enumerate(heavy):            # 30 replays from different places
        actor.on_receive(_request(f"h{i}", {P0: i, P1: i}, {P0: 1000, P1: 1000}, broker,
                                  outbox, address="10.0.0.1"))
    light = Outbox(100)
    actor.on_receive(_request("light", {P0: 995, P1: 995}, {P0: 1000, P1: 1000}, broker, light,
                              address="10.0.0.2"))
    slices = 0
    while not any(m.client_id == "light" for m in broker.of(Replayed)):
        for outbox in heavy + [light]:
            outbox.take(0)
        actor.on_receive(ContinueReplay())
        clock.now += 0.001
        slices += 1
        assert slices < 100, "the other address's replay did not get its turns"
    assert slices <= 2 * 10 + 2


# -- memory and back-pressure --------------------------------------------------------------
def test_a_client_that_does_not_read_pauses_its_replay_with_little_buffered():
    reader = FakeReader(_log(200, size=200_000), per_poll=1)
    actor = _actor(reader)
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 200, P1: 200}, FakeRef(), outbox))
    for _ in range(50):
        actor.on_receive(ContinueReplay())
    read = actor.queue.read_of["c"]
    buffered = sum(len(r.value) for b in read.buffers.values() for r in b)
    chunk = read.jobs["c"].chunk_bytes
    waiting = len(outbox.take(0)[0])
    assert reader.handed <= 5
    assert buffered + chunk + waiting < 4 * 210_000


def test_a_slow_client_leaves_a_shared_read_and_the_others_go_on():
    clock = Clock()
    reader = FakeReader(_log(100, size=40_000), per_poll=1)
    actor = _actor(reader, clock=clock)
    broker, slow, fast = FakeRef(), Outbox(100), Outbox(100)
    for client_id, outbox in (("slow", slow), ("fast", fast)):
        actor.on_receive(_request(client_id, {P0: 0, P1: 0}, {P0: 100, P1: 100}, broker, outbox))
    fast_got = b""
    for _ in range(2000):
        fast_got += fast.take(0)[0]
        if any(m.client_id == "fast" for m in broker.of(Replayed)):
            break
        actor.on_receive(ContinueReplay())
        clock.now += 0.01
    fast_got += fast.take(0)[0]
    assert [m.client_id for m in broker.of(Replayed)] == ["fast"]
    assert len(parse_stream(fast_got)) == 200
    assert "slow" in actor.queue.read_of                  # it goes on alone, at its own pace
    ids = [json.loads(e["data"])["id"] for e in parse_stream(_drain(actor, slow))]
    assert len(ids) == 200 and len(set(ids)) == 200     # exactly once, from where it stood
    assert [m.client_id for m in broker.of(Replayed)] == ["fast", "slow"]


# -- failures ------------------------------------------------------------------------------
def test_kafka_failing_a_read_disconnects_its_clients_and_drops_the_reader():
    from kafka.errors import KafkaConnectionError
    reader = FakeReader(_log(10))
    actor = _actor(reader)
    broker = FakeRef()
    for client_id in ("c", "d"):
        actor.on_receive(_request(client_id, {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker,
                                  Outbox(100)))
    reader.fail = KafkaConnectionError("broker gone")
    actor.on_receive(ContinueReplay())
    assert sorted(m.client_id for m in broker.of(DisconnectClient)) == ["c", "d"]
    assert all("retry" in m.reason for m in broker.of(DisconnectClient))
    assert reader.closed and actor.reader is None and len(actor.queue) == 0


def test_a_read_failing_otherwise_ends_its_clients_and_keeps_the_reader():
    reader = FakeReader(_log(10))
    actor = _actor(reader)
    broker = FakeRef()
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, Outbox(100)))
    reader.fail = ValueError("a bug")
    actor.on_receive(ContinueReplay())
    [gone] = broker.of(DisconnectClient)
    assert gone.client_id == "c" and not reader.closed and len(actor.queue) == 0


def test_a_read_that_gets_nothing_for_long_fails():
    """Kafka answering nothing for STALL_S is Kafka unreachable: the client is told to retry
    (not that its request failed with Kafka fine), and the next replay opens a new reader (a
    mutation audit: P32)."""
    clock = Clock()
    reader = FakeReader({P0: [], P1: []})
    reader.fetch = lambda ranges: ([], {p: r[0] for p, r in ranges.items()})
    actor = _actor(reader, clock=clock)
    broker = FakeRef()
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, Outbox(100)))
    actor.on_receive(ContinueReplay())
    assert not broker.of(DisconnectClient)
    clock.now += replay_queue.STALL_S + 1
    actor.on_receive(ContinueReplay())
    assert broker.of(DisconnectClient) == [DisconnectClient("c", replay_module.UNAVAILABLE)]
    assert reader.closed and actor.reader is None and len(actor.queue) == 0


# -- the broker's side ---------------------------------------------------------------------
def _resuming_broker():
    from actors.broker import BrokerActor
    from actors.messages import ClientInfo, Consumed, Subscribe
    from tests.fakes import make_event
    history, replay = FakeRef(), FakeRef()
    broker = BrokerActor(history=history, kafka_reader=replay, warm_start=False)
    broker.on_receive(Consumed(tuple(make_event(offset=o) for o in range(4)), (),
                               {("blog.posts", 0): 4}))
    outbox = Outbox(100)
    info = ClientInfo("c", "10.0.0.7", "test", Filter(), False, 0.0)
    broker.on_receive(Subscribe(info, outbox, FakeRef(), {("blog.posts", 0): 1}, True))
    broker.on_receive(Replayed("c", (), False))
    return broker, replay, outbox


def test_the_broker_asks_for_a_replay_into_the_clients_outbox_by_its_address():
    broker, replay, outbox = _resuming_broker()
    [read] = replay.of(ReadRange)
    assert read.outbox is outbox and read.address == "10.0.0.7" and read.named is False


def test_a_client_that_leaves_during_its_kafka_replay_has_it_cancelled():
    from actors.messages import Unsubscribe
    broker, replay, _ = _resuming_broker()
    broker.on_receive(Unsubscribe("c"))
    assert replay.of(CancelReplay) == [CancelReplay("c")]


def test_events_the_replay_streamed_count_as_replayed_and_delivered():
    from actors.messages import GetStats
    broker, _, _ = _resuming_broker()
    broker.on_receive(Replayed("c", (), True, streamed={TOPIC: 3}))
    stats = broker.on_receive(GetStats())
    assert stats.events_replayed == 3 and stats.delivered_per_topic == {TOPIC: 3}


def test_the_queue_forgets_finished_reads():
    reader = FakeReader(_log(10))
    actor = _actor(reader)
    for i in range(5):
        outbox = Outbox(100)
        actor.on_receive(_request(f"c{i}", {P0: i, P1: i}, {P0: 10, P1: 10}, FakeRef(), outbox))
        _drain(actor, outbox)
    queue = actor.queue
    assert (len(queue), queue.unstarted, queue.running, queue.read_of, queue.by_address) == (
        0, {}, {}, {}, {})


def test_a_partition_whose_batch_cannot_be_read_is_skipped_with_a_gap_event():
    from actors.kafka_reader import Unreadable

    class BrokenP0(FakeReader):
        def fetch(self, ranges):
            start = ranges.get(P0, (0, 0))[0]
            if P0 in ranges and start >= 2:
                raise Unreadable({P0: start}, "corrupt batch: crc")
            return super().fetch(ranges)

    reader = BrokenP0(_log(6))
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 6, P1: 6}, broker, outbox))
    events = parse_stream(_drain(actor, outbox))
    ids = [json.loads(e["data"]).get("id") for e in events if e["event"] != "gap"]
    [gap] = [e for e in events if e["event"] == "gap"]
    part = json.loads(gap["data"])["partitions"][0]
    assert (part["reason"], part["requested_offset"], part["resumed_offset"]) == (
        "unreadable", 2, 6)
    assert decode((TOPIC,), gap["id"])[P0] == 6                 # resuming from it skips the batch
    assert [i for i in ids if i.startswith("p0")] == ["p0-0", "p0-1"]
    assert [i for i in ids if i.startswith("p1")] == [f"p1-{o}" for o in range(6)]
    assert decode((TOPIC,), events[-1]["id"]) == {P0: 6, P1: 6}
    assert broker.of(Replayed) and not broker.of(DisconnectClient)


def _holed(lost: str, ends: dict):
    """A replay actor whose reader cannot have p0 from 2 to 6 (`lost`: a batch that cannot be
    read, or records retention deleted meanwhile), and one read shared by clients whose range
    of p0 ends at `ends[client]` (of p1 at 6); with each client's outbox."""
    from actors.kafka_reader import Retained, Unreadable

    class Holed(FakeReader):
        def fetch(self, ranges):
            start = ranges.get(P0, (6, 6))[0]
            if 2 <= start < 6:
                raise (Unreadable({P0: start}, "corrupt batch: crc") if lost == "unreadable"
                       else Retained({P0: (start, 6)}))
            return super().fetch(ranges)

    actor = _actor(Holed(_log(6)))
    outboxes = {client_id: Outbox(100) for client_id in ends}
    for client_id, end in ends.items():
        actor.on_receive(_request(client_id, {P0: 0, P1: 0}, {P0: end, P1: 6}, FakeRef(),
                                  outboxes[client_id]))
    return actor, outboxes


@pytest.mark.parametrize("lost", ["unreadable", "retention"])
def test_a_gap_in_a_shared_read_never_gives_a_client_an_id_past_its_end(lost):
    """Two clients share a read; "a" subscribed earlier (its end in p0 is 4, b's is 6). P0 is
    skipped from 2 to 6 (a batch that cannot be read; records retention deleted meanwhile).
    a's ids must stay at its end, 4: it gets offsets 4 and 5 live, after its replay, and a
    reconnect from an id saying 6 would never show them."""
    actor, outboxes = _holed(lost, {"a": 4, "b": 6})
    taken = {c: b"" for c in outboxes}
    for _ in range(100):
        for c, outbox in outboxes.items():
            taken[c] += outbox.take(0)[0]
        if not len(actor.queue):
            break
        actor.on_receive(ContinueReplay())
    a, b = parse_stream(taken["a"]), parse_stream(taken["b"])
    assert [e["event"] for e in a].count("gap") == 1 and len(a) == 2 + 1 + 6
    assert all(decode((TOPIC,), e["id"])[P0] <= 4 for e in a), [e["id"] for e in a]
    assert decode((TOPIC,), a[-1]["id"]) == {P0: 4, P1: 6}
    assert decode((TOPIC,), b[-1]["id"]) == {P0: 6, P1: 6}


def test_records_retention_deletes_during_a_replay_are_a_retention_gap():
    """Planned from offset 0, but retention deleted p0 up to 4 before the read got there."""
    from actors.kafka_reader import Retained

    class Shrunk(FakeReader):
        def fetch(self, ranges):
            start = ranges.get(P0, (4, 4))[0]
            if start < 4:
                raise Retained({P0: (start, 4)})
            return super().fetch(ranges)

    actor = _actor(Shrunk(_log(6)))
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 6, P1: 6}, broker, outbox))
    events = parse_stream(_drain(actor, outbox))
    [gap] = [e for e in events if e["event"] == "gap"]
    part = json.loads(gap["data"])["partitions"][0]
    assert (part["reason"], part["requested_offset"], part["resumed_offset"]) == ("retention", 0, 4)
    ids = [json.loads(e["data"]).get("id") for e in events if e["event"] != "gap"]
    assert [i for i in ids if i.startswith("p0")] == ["p0-4", "p0-5"]
    assert [i for i in ids if i.startswith("p1")] == [f"p1-{o}" for o in range(6)]
    assert decode((TOPIC,), events[-1]["id"]) == {P0: 6, P1: 6}
    assert broker.of(Replayed) and not broker.of(DisconnectClient)


def test_a_replay_passes_invalid_records_without_showing_them_and_its_ids_pass_them_too():
    log = {P0: [_record(0, 0), Record(TOPIC, 0, 1, 11, b"not json", ()), _record(0, 2)], P1: []}
    actor = _actor(FakeReader(log, per_poll=3))
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 3, P1: 0}, FakeRef(), outbox))
    events = parse_stream(_drain(actor, outbox))
    assert [json.loads(e["data"])["id"] for e in events] == ["p0-0", "p0-2"]
    assert [decode((TOPIC,), e["id"])[P0] for e in events] == [1, 3]


def test_a_record_time_past_the_year_9999_is_passed_like_an_invalid_record_not_a_failed_read():
    """Its date raised ValueError in the replay: every read across it failed, on each retry."""
    future = Record(TOPIC, 0, 1, 253402300800000, b'{"data":1}', ())
    log = {P0: [_record(0, 0), future, _record(0, 2)], P1: []}
    actor, outbox, broker = _actor(FakeReader(log, per_poll=3)), Outbox(100), FakeRef()
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 3, P1: 0}, broker, outbox))
    events = parse_stream(_drain(actor, outbox))
    assert [json.loads(e["data"])["id"] for e in events] == ["p0-0", "p0-2"]
    assert broker.of(Replayed) and not broker.of(DisconnectClient)


def test_an_unreadable_batch_of_a_partition_the_read_does_not_cover_changes_nothing():
    from actors.kafka_reader import Unreadable

    class Odd(FakeReader):
        def fetch(self, ranges):
            if not self.fetches:
                self.fetches.append(dict(ranges))
                raise Unreadable({("other.topic", 0): 4}, "corrupt batch: crc")
            return super().fetch(ranges)

    actor = _actor(Odd(_log(3)))
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 3, P1: 3}, FakeRef(), outbox))
    events = parse_stream(_drain(actor, outbox))
    assert [e["event"] for e in events] == ["blog.post.created"] * 6       # no gap event


def test_a_queued_replay_opens_a_new_reader_when_another_request_found_kafka_down():
    from actors.kafka_client import KafkaUnreachable

    readers = []

    def open_reader(settings):
        readers.append(FakeReader(_log(4)))
        return readers[-1]

    settings = SimpleNamespace(kafka_topics=(TOPIC,), sse_replay_max_events=100,
                               sse_max_event_bytes=1 << 20)
    actor = _Replay(settings=settings, reader_factory=open_reader, clock=Clock())
    actor.actor_ref = FakeRef()
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("a", {P0: 0, P1: 0}, {P0: 4, P1: 4}, broker, outbox))
    readers[0].offsets_for_time = lambda partitions, since_ms: (_ for _ in ()).throw(
        KafkaUnreachable("no broker accepts connections"))
    actor.on_receive(_request("b", None, {P0: 4, P1: 4}, broker, Outbox(100), since_ms=5))
    assert readers[0].closed and actor.reader is None
    [refused] = broker.of(DisconnectClient)
    assert refused.client_id == "b" and "Kafka unreachable" in refused.reason
    events = parse_stream(_drain(actor, outbox))
    assert len(readers) == 2 and len(events) == 8                       # "a" served by a new one
    actor.on_stop()
    assert readers[1].closed and actor.reader is None


def test_a_message_the_replay_actor_does_not_know_is_left_to_pykka():
    actor = _actor(FakeReader({}))
    assert actor.on_receive("what?") is None and len(actor.queue) == 0


# -- private events: a replay shows a subject its own and the public events only ------------
OWNER_KEYS = {0: None, 1: b"alice", 2: b"bob"}        # by offset % 3


def _owned_log(per_partition=6):
    return {(TOPIC, p): [Record(TOPIC, p, o, o * 10 + p, _record(p, o).value, (),
                                OWNER_KEYS[o % 3]) for o in range(per_partition)]
            for p in (0, 1)}


def _owned_actor(reader):
    from actors.auth.subjects import parse_subject_field
    actor = _actor(reader)
    actor.settings.auth_subject_field = parse_subject_field("key")
    return actor


def _replay_request(client_id, subject, outbox, start=None, since_ms=None):
    until = {P0: 6, P1: 6}
    request = _request(client_id, start if since_ms is None else None, until, FakeRef(), outbox,
                       since_ms=since_ms)
    return ReadRange(**{**{f: getattr(request, f) for f in request.__dataclass_fields__},
                        "subject": subject})


def _ids_and_frontiers(taken):
    events = [e for e in parse_stream(taken) if e["event"] != "gap"]
    return ([json.loads(e["data"])["id"] for e in events],
            [decode((TOPIC,), e["id"]) for e in events])


@pytest.mark.parametrize("start, since_ms", [({P0: 0, P1: 0}, None), (None, 0)])
def test_a_kafka_replay_shows_each_subject_its_own_and_the_public_events(start, since_ms):
    reader = FakeReader(_owned_log(), per_poll=6)
    actor = _owned_actor(reader)
    boxes = {who: Outbox(100) for who in ("alice", "bob", "anon")}
    for who, box in boxes.items():
        actor.on_receive(_replay_request(who, None if who == "anon" else who, box, start,
                                         since_ms))
    taken = {who: b"" for who in boxes}
    for _ in range(100):
        for who, box in boxes.items():
            taken[who] += box.take(0)[0]
        if not len(actor.queue):
            break
        actor.on_receive(ContinueReplay())
    for who, box in boxes.items():
        taken[who] += box.take(0)[0]
    mine = {"alice": 1, "bob": 2, "anon": None}
    for who, owner_offset in mine.items():
        ids, frontiers = _ids_and_frontiers(taken[who])
        offsets = sorted({0, 3} | ({owner_offset, owner_offset + 3} if owner_offset else set()))
        assert sorted(ids) == sorted(f"p{p}-{o}" for p in (0, 1) for o in offsets), who
        assert all(all(b[p] >= a[p] for p in (P0, P1)) and a != b     # ids only move forward
                   for a, b in zip(frontiers, frontiers[1:], strict=False)), who
    assert reader.handed == 12                             # one read served all three


def test_a_kafka_replay_never_shows_an_event_owned_by_nobody():
    log = {P0: [Record(TOPIC, 0, o, o, _record(0, o).value, (), b"") for o in range(3)],
           P1: []}
    actor = _owned_actor(FakeReader(log))
    outbox = Outbox(100)
    request = _replay_request("c", "alice", outbox, {P0: 0, P1: 0})
    actor.on_receive(ReadRange(**{**{f: getattr(request, f)
                                     for f in request.__dataclass_fields__},
                                  "until": {P0: 3, P1: 0}}))
    assert _ids_and_frontiers(_drain(actor, outbox))[0] == []


def test_a_since_stream_resumed_with_its_last_event_id_gets_only_what_it_missed():
    """A browser's EventSource reconnects to the same URL, ?since= included, with the
    Last-Event-ID of its last event: it must get the rest, not everything since again."""
    from actors.broker import BrokerActor
    from actors.messages import ClientInfo, Subscribe
    kafka = FakeRef()
    broker = BrokerActor(history=FakeRef(), kafka_reader=kafka, warm_start=False,
                         topics=(TOPIC,))
    broker.on_receive(Consumed((), (), {P0: 10, P1: 10}))
    outbox = Outbox(100)
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, FakeRef(), {P0: 6, P1: 5}, True, 0))
    [request] = kafka.of(ReadRange)
    actor = _actor(FakeReader(_log()))
    actor.on_receive(request)
    events = [e for e in parse_stream(_drain(actor, outbox)) if e["data"]]
    assert [json.loads(e["data"])["id"] for e in events] == [
        "p1-5", "p0-6", "p1-6", "p0-7", "p1-7", "p0-8", "p1-8", "p0-9", "p1-9"]


@pytest.mark.parametrize("since_ms", [10**12, 65])
def test_a_since_stream_resumed_past_its_time_gets_what_it_missed_there_too(since_ms):
    """A since= later than every event starts live (or a producer whose clock is slow writes
    records older than the time after the stream went live): the stream showed such events
    live. Its EventSource, reconnecting to the same URL with the id of its last event, must get
    the ones that came while it was away, not only those stamped after the time."""
    reader = FakeReader(_log())
    actor = _actor(reader)
    actor.reader = reader
    seen = {P0: 6, P1: 5}                   # records are stamped offset * 10 + partition
    request = _request("c", seen, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=since_ms)
    assert actor.plan(request, {P0: 0, P1: 0}) == (seen, [])


@pytest.mark.parametrize("begin", [0, 3])
def test_a_time_before_the_epoch_starts_at_records_without_a_time_too(begin):
    """A record without a Kafka time (-1: a producer that sent none) is at no time at all;
    Kafka's offsets-for-times passes over it, but since=0 means the earliest event."""
    log = {p: [_record(p[1], o, ts=-1 if o == begin else None) for o in range(begin, 10)]
           for p in (P0, P1)}
    reader = FakeReader(log, begin={P0: begin, P1: begin})
    actor = _actor(reader)
    actor.reader = reader
    request = _request("c", None, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=0)
    start, gaps = actor.plan(request, actor.log_start({P0, P1}))
    assert start == {P0: begin, P1: begin}
    assert gaps == ([("retention", p, 0, begin) for p in (P0, P1)] if begin else [])


def _retained_from(first):
    """A log whose records before `first` retention deleted (Kafka's log start offset)."""
    log = {p: [r for r in records if r.offset >= first] for p, records in _log().items()}
    return FakeReader(log, begin={P0: first, P1: first})


@pytest.mark.parametrize("since_ms, seen", [(0, None), (21, None), (40, None), (0, {P0: 2})])
def test_a_time_before_the_oldest_record_kafka_retains_is_a_retention_gap(since_ms, seen):
    """Retention deleted offsets 0-3: a `since` at or before the oldest record left may have
    wanted some of them. Told as a resume from inside the hole is told (from what the client
    had seen, or 0), not started at offset 4 as if nothing had been lost."""
    reader = _retained_from(4)
    actor = _actor(reader)
    actor.reader = reader
    request = _request("c", seen, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=since_ms)
    start, gaps = actor.plan(request, actor.log_start({P0, P1}))
    assert start == {P0: 4, P1: 4}
    assert gaps == [("retention", P0, (seen or {}).get(P0, 0), 4), ("retention", P1, 0, 4)]


@pytest.mark.parametrize("since_ms, seen", [(51, None), (0, {P0: 4, P1: 4})])
def test_a_time_after_what_retention_deleted_or_a_client_past_it_gets_no_gap(since_ms, seen):
    reader = _retained_from(4)
    actor = _actor(reader)
    actor.reader = reader
    request = _request("c", seen, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=since_ms)
    start, gaps = actor.plan(request, actor.log_start({P0, P1}))
    assert gaps == [] and start == ({P0: 6, P1: 5} if seen is None else seen)


def test_a_since_replay_from_before_retention_starts_with_the_gap_event():
    reader = _retained_from(8)
    actor = _actor(reader)
    outbox = Outbox(100)
    actor.on_receive(_request("c", None, {P0: 10, P1: 10}, FakeRef(), outbox, since_ms=0))
    events = parse_stream(_drain(actor, outbox))
    assert events[0]["event"] == "gap"
    assert json.loads(events[0]["data"])["partitions"] == [
        {"topic": TOPIC, "partition": p, "requested_offset": 0, "resumed_offset": 8,
         "reason": "retention"} for p in (0, 1)]
    assert [json.loads(e["data"])["id"] for e in events[1:]] == ["p0-8", "p1-8", "p0-9", "p1-9"]


class _DeletedReader(FakeReader):
    """Kafka without P1's topic: asking about it fails as kafka-python does (no leader)."""

    def bounds(self, partitions):
        assert P1 not in partitions, "asked Kafka about a deleted topic"
        return super().bounds(partitions)

    def offsets_for_time(self, partitions, since_ms):
        assert P1 not in partitions, "asked Kafka about a deleted topic"
        return super().offsets_for_time(partitions, since_ms)


@pytest.mark.parametrize("since_ms", [None, 0])
def test_a_replay_reads_the_topics_kafka_still_has_and_tells_what_a_deleted_one_took(since_ms):
    """A topic of KAFKA_TOPICS deleted while the gateway runs: every replay (a resume past
    the history, any since=) asked Kafka for its offsets, failed as `Kafka unreachable`,
    and the client reconnected into the same failure. Now the others are read, and a client
    whose id had not seen all of the deleted topic is told with a gap."""
    reader = _DeletedReader({P0: _log()[P0]})
    actor = _actor(reader)
    outbox, broker = Outbox(100), FakeRef()
    request = _request("c", {P0: 7, P1: 3}, {P0: 10, P1: 10}, broker, outbox, since_ms=since_ms)
    actor.on_receive(ReadRange(**{**{f: getattr(request, f) for f in request.__dataclass_fields__},
                                  "deleted": frozenset({P1})}))
    events = parse_stream(_drain(actor, outbox))
    assert not broker.of(DisconnectClient)
    assert events[0]["event"] == "gap"
    assert json.loads(events[0]["data"])["partitions"] == [
        {"topic": TOPIC, "partition": 1, "requested_offset": 3, "resumed_offset": 10,
         "reason": "topic_deleted"}]
    assert decode((TOPIC,), events[0]["id"]) == {P0: 7, P1: 10}
    assert [json.loads(e["data"])["id"] for e in events[1:]] == ["p0-7", "p0-8", "p0-9"]


def test_a_new_since_stream_is_not_told_of_a_deleted_topic():
    reader = _DeletedReader({P0: _log()[P0]})
    actor = _actor(reader)
    actor.reader = reader
    request = ReadRange("c", Filter(), None, {P0: 10, P1: 10}, FakeRef(), 85,
                        deleted=frozenset({P1}))
    assert actor.plan(request, actor.log_start({P0})) == ({P0: 9, P1: 10}, [])


COMMENTS = ("blog.comments", 0)


@pytest.mark.parametrize("state, listed, deleted", [
    ("connected", [P0], {COMMENTS}), ("connected", [P0, COMMENTS], set()),
    ("unreachable", [P0], set()), ("connected", [], set())])
def test_the_broker_names_the_partitions_of_topics_kafka_lists_no_more(state, listed, deleted):
    """Only a connected consumer's list says a topic is gone (unreachable: it is old)."""
    from actors.broker import BrokerActor
    from actors.messages import ClientInfo, KafkaStateChanged, Subscribe
    kafka = FakeRef()
    broker = BrokerActor(history=FakeRef(), kafka_reader=kafka, warm_start=False,
                         topics=(TOPIC, COMMENTS[0]))
    broker.on_receive(Consumed((), (), {P0: 10, COMMENTS: 10}))
    broker.on_receive(KafkaStateChanged(state, tuple(listed)))
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, Outbox(100), FakeRef(), {P0: 6, COMMENTS: 5}, True, 0))
    [request] = kafka.of(ReadRange)
    assert request.deleted == deleted


class _LeaderlessReader(FakeReader):
    """Kafka with P1's broker down (a replication factor of 1), or out of the gateway's
    reach: asking about P1 fails as kafka-python does, and a fetch gets nothing of it.
    `hidden`: the reader learns of it only from a look-up that failed (a leader that never
    answered it before)."""

    def __init__(self, log, error, hidden=False):
        super().__init__(log)
        self.error, self.hidden, self.asked = error, hidden, []

    def unreadable(self, partitions):
        if self.hidden:
            return {}
        return {p: "no leader (is its broker down?)" for p in partitions if p == P1}

    def bounds(self, partitions):
        self.asked.append(set(partitions))
        if P1 in partitions:
            self.hidden = False
            raise self.error
        return super().bounds(partitions)

    def offsets_for_time(self, partitions, since_ms):
        if P1 in partitions:
            raise self.error
        return super().offsets_for_time(partitions, since_ms)

    def fetch(self, ranges):
        records, positions = super().fetch({p: r for p, r in ranges.items() if p != P1})
        return records, {**positions, **{p: r[0] for p, r in ranges.items() if p == P1}}


def _unanswered():
    from kafka.errors import KafkaTimeoutError, LeaderNotAvailableError
    return [LeaderNotAvailableError("blog.posts:1 has no leader (is its broker down?)"),
            KafkaTimeoutError("Failed to get offsets by timestamps in 5000 ms")]


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("error", _unanswered(), ids=["leaderless", "unanswered"])
def test_a_resume_reads_the_partitions_it_can_and_keeps_its_place_in_the_others(
        error, hidden, caplog):
    """P1's leader down or out of reach: every replay from Kafka asked about P1, failed as
    `replay unavailable (Kafka unreachable)`, and the client reconnected into the same
    failure, never live, while P0 streamed. Now P0 is replayed, the ids keep P1 where the
    client was (a later resume reads it exactly), and the broker is told so."""
    reader = _LeaderlessReader(_log(), error, hidden=hidden)
    actor = _actor(reader)
    outbox, broker = Outbox(100), FakeRef()
    with caplog.at_level("WARNING"):
        actor.on_receive(_request("c", {P0: 7, P1: 3}, {P0: 10, P1: 10}, broker, outbox))
        events = parse_stream(_drain(actor, outbox))
    assert not broker.of(DisconnectClient)
    assert [json.loads(e["data"])["id"] for e in events] == ["p0-7", "p0-8", "p0-9"]
    assert [decode((TOPIC,), e["id"]) for e in events][-1] == {P0: 10, P1: 3}
    [done] = broker.of(Replayed)
    assert done.short == {P1: 3}
    assert "blog.posts:1 not read" in caplog.text and "Traceback" not in caplog.text
    assert reader.asked[-1] == {P0}


def test_a_since_replay_keeps_an_unreadable_partition_from_its_beginning():
    from kafka.errors import LeaderNotAvailableError
    reader = _LeaderlessReader(_log(), LeaderNotAvailableError("no leader"))
    actor = _actor(reader)
    outbox, broker = Outbox(100), FakeRef()
    actor.on_receive(_request("c", None, {P0: 10, P1: 10}, broker, outbox, since_ms=80))
    events = parse_stream(_drain(actor, outbox))
    assert [json.loads(e["data"])["id"] for e in events] == ["p0-8", "p0-9"]
    assert decode((TOPIC,), events[-1]["id"]) == {P0: 10, P1: 0}     # P1 from its beginning
    assert broker.of(Replayed)[0].short == {P1: 0}


def test_an_unreadable_partition_with_nothing_to_read_leaves_nothing_short():
    from kafka.errors import LeaderNotAvailableError
    reader = _LeaderlessReader(_log(), LeaderNotAvailableError("no leader"))
    actor = _actor(reader)
    outbox, broker = Outbox(100), FakeRef()
    actor.on_receive(_request("c", {P0: 8, P1: 10}, {P0: 10, P1: 10}, broker, outbox))
    events = parse_stream(_drain(actor, outbox))
    assert decode((TOPIC,), events[-1]["id"]) == {P0: 10, P1: 10}
    assert broker.of(Replayed)[0].short == {}


def test_a_partition_whose_leader_goes_away_during_a_read_is_left_to_a_later_resume():
    """P1's broker stops while the replay reads it: the read waited STALL_S (30 s) for it,
    then ended every client of the read with `replay unavailable`. Now, once the read has
    got nothing for a moment and the reader names P1, the others finish and go live, the
    ids keeping P1 where the read had got to."""
    class Dying(FakeReader):
        gone = False

        def unreadable(self, partitions):
            return {P1: "no leader (is its broker down?)"} if self.gone and P1 in partitions else {}

        def fetch(self, ranges):
            if not self.gone:
                self.gone = True            # after this fetch: nothing more of P1
                return super().fetch(ranges)
            records, positions = super().fetch({p: r for p, r in ranges.items() if p != P1})
            return records, {**positions, **{p: r[0] for p, r in ranges.items() if p == P1}}

    reader = Dying(_log())
    clock = Clock()
    actor = _actor(reader, clock=clock)
    outbox, broker = Outbox(100), FakeRef()
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, broker, outbox))
    taken = b""
    for _ in range(200):
        taken += outbox.take(0)[0]
        if not len(actor.queue):
            break
        clock.now += 0.1
        actor.on_receive(ContinueReplay())
    assert clock.now - 1000.0 < replay_queue.STALL_S and not broker.of(DisconnectClient)
    events = parse_stream(taken + outbox.take(0)[0])
    ids = [json.loads(e["data"])["id"] for e in events]
    assert [i for i in ids if i.startswith("p0")] == [f"p0-{o}" for o in range(10)]
    assert [i for i in ids if i.startswith("p1")] == ["p1-0", "p1-1"]
    assert decode((TOPIC,), events[-1]["id"]) == {P0: 10, P1: 2}
    assert broker.of(Replayed)[0].short == {P1: 2}


def test_a_since_stream_resumed_at_offset_0_of_a_partition_gets_what_it_missed_there():
    """A place of 0 was taken for 'not seen' and looked up by time again: the records written
    to a partition that was empty when the stream came, stamped before `since`, were skipped
    without a gap (a replay audit)."""
    reader = FakeReader(_log())              # records stamped offset * 10 + partition
    actor = _actor(reader)
    actor.reader = reader
    # The client came with since= in the future while P1 was empty: it was shown p0 records
    # live (its id: P0 at 6) and P1 at 0 (nothing there yet). P1's 10 records came while it was
    # away, all stamped before `since`: its reconnect (same URL, Last-Event-ID) must read them.
    seen = {P0: 6, P1: 0}
    request = _request("c", seen, {P0: 10, P1: 10}, FakeRef(), Outbox(100), since_ms=10**12)
    start, gaps = actor.plan(request, {P0: 0, P1: 0})
    assert start == {P0: 6, P1: 0}, start
    assert gaps == []


class _Shrunk(FakeReader):
    """Kafka after blog.posts was deleted and created again with one partition fewer: asking
    about partition 1 fails as kafka_reads does (no such partition: no leader)."""

    def _known(self, partitions):
        if P1 in partitions:
            from kafka.errors import LeaderNotAvailableError
            raise LeaderNotAvailableError(f"{TOPIC}:1 has no leader (is its broker down?)")

    def bounds(self, partitions):
        self._known(partitions)
        return super().bounds(partitions)

    def offsets_for_time(self, partitions, since_ms):
        self._known(partitions)
        return super().offsets_for_time(partitions, since_ms)

    def fetch(self, ranges):
        self._known(ranges)
        return super().fetch(ranges)


@pytest.mark.parametrize("since_ms", [None, 0, 5])
def test_a_partition_gone_with_its_topics_recreation_does_not_fail_every_replay(since_ms):
    """Kafka ops audit: a topic re-created with fewer partitions left the vanished one in the
    live positions, at 0; every replay asked Kafka about it and failed as 'Kafka unreachable',
    on every worker, until a restart (one client reconnected 291 times). Nothing is before
    offset 0: such a partition is not asked about, nor read."""
    reader = _Shrunk({P0: [_record(0, o) for o in range(4)]})
    actor = _actor(reader)
    broker, outbox = FakeRef(), Outbox(100)
    actor.on_receive(_request("c", {P0: 1, P1: 0} if since_ms is None else None,
                              {P0: 4, P1: 0}, broker, outbox, since_ms=since_ms))
    events = parse_stream(_drain(actor, outbox))
    first = 0 if since_ms == 0 else 1          # since 5: p0-0 was stamped at 0
    assert [json.loads(e["data"])["id"] for e in events] == [f"p0-{o}" for o in range(first, 4)]
    [final] = broker.of(Replayed)
    assert final.found and not outbox.closed_reason


# -- from a mutation audit: the idle back-off, the log starts' lifetime --------------------
def test_a_replay_waiting_for_its_client_looks_again_at_least_every_idle_max(monkeypatch):
    """A client that stops reading pauses its replay; the pauses between looks double but stay
    at most IDLE_MAX_S, so a client that reads again gets its replay going within 50 ms."""
    monkeypatch.setattr(replay_module, "IDLE_S", 0.005)          # as shipped
    monkeypatch.setattr(replay_module, "IDLE_MAX_S", 0.05)
    pauses = []
    monkeypatch.setattr(replay_module, "time", SimpleNamespace(sleep=pauses.append))
    reader = FakeReader(_log(200, size=200_000), per_poll=1)
    actor = _actor(reader)
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 200, P1: 200}, FakeRef(), outbox))
    for _ in range(50):                                           # it takes nothing
        actor.on_receive(ContinueReplay())
    assert len(pauses) >= 10 and len(actor.queue) == 1
    assert max(pauses) == 0.05


def test_log_starts_are_looked_up_again_after_bounds_ttl_s():
    """Retention deleted blog.posts:0 0..3 after a resume looked up where the log starts: a
    resume from 0 a while later must start at 4 with a retention gap, not ask for what is
    gone (and be told nothing of it)."""
    clock = Clock()
    reader = FakeReader(_log())
    actor = _actor(reader, clock=clock)
    actor.reader = reader
    assert actor.log_start({P0, P1}) == {P0: 0, P1: 0}
    reader.begin = {P0: 4}
    clock.now += replay_module.BOUNDS_TTL_S + 1
    request = _request("c", {P0: 0, P1: 0}, {P0: 10, P1: 10}, FakeRef(), Outbox(100))
    start, gaps = actor.plan(request, actor.log_start({P0, P1}))
    assert start == {P0: 4, P1: 0} and gaps == [("retention", P0, 0, 4)]


# -- from a mutation audit: the merge by time, sharing a read, gaps and ends ---------------
def _served(actor, outboxes, turns=100):
    """Run slices until the queue is empty; what each client took, as parsed events."""
    taken = {c: b"" for c in outboxes}
    for _ in range(turns):
        for c, outbox in outboxes.items():
            taken[c] += outbox.take(0)[0]
        if not len(actor.queue):
            break
        actor.on_receive(ContinueReplay())
    return {c: parse_stream(t) for c, t in taken.items()}


def test_a_partition_run_dry_is_fetched_before_the_merge_by_time_goes_on():
    """p0's two fetched records were emitted and p0 has more to read: the merge must fetch
    them before it goes on, or p1's later events (times 100, 101) came before p0's earlier
    ones (4, 6): a replay out of time order."""
    log = {P0: [_record(0, o, ts=ts) for o, ts in enumerate([0, 2, 4, 6])],
           P1: [_record(1, o, ts=ts) for o, ts in enumerate([1, 100, 101])]}
    actor = _actor(FakeReader(log, per_poll=2))
    outbox = Outbox(100)
    actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 4, P1: 3}, FakeRef(), outbox))
    events = parse_stream(_drain(actor, outbox))
    assert [json.loads(e["data"])["id"] for e in events] == [
        "p0-0", "p1-0", "p0-1", "p0-2", "p0-3", "p1-1", "p1-2"]


def test_resumes_from_one_place_whose_ids_say_different_things_keep_their_own_ids():
    """Both resume from the start of p0 and p1, but b's id also says it saw 500 events of a
    partition this instance lacks. Sharing one read, both got a's ids: b's reconnect would show
    those 500 events again (or, the other way round, a's would skip 500 it never saw)."""
    p2 = (TOPIC, 2)
    actor = _actor(FakeReader(_log(4)))
    outboxes = {"a": Outbox(100), "b": Outbox(100)}
    actor.on_receive(_request("a", {P0: 0, P1: 0}, {P0: 4, P1: 4}, FakeRef(), outboxes["a"]))
    actor.on_receive(_request("b", {P0: 0, P1: 0, p2: 500}, {P0: 4, P1: 4}, FakeRef(),
                              outboxes["b"]))
    got = _served(actor, outboxes)
    assert len(got["a"]) == len(got["b"]) == 8
    assert all(p2 not in decode((TOPIC,), e["id"]) for e in got["a"])
    assert all(decode((TOPIC,), e["id"])[p2] == 500 for e in got["b"])


@pytest.mark.parametrize("lost", ["unreadable", "retention"])
def test_a_client_whose_range_ended_where_a_read_jumps_gets_no_gap(lost):
    """Two clients share a read; a's range of p0 ends at 2, b's at 6. P0 is skipped from 2 to
    6 (a batch that cannot be read; retention deleted it meanwhile): b lost 2..5 and is told,
    a lost nothing and must get no gap event (its app would report lost events, or resync)."""
    actor, outboxes = _holed(lost, {"a": 2, "b": 6})
    got = _served(actor, outboxes)
    assert [e["event"] for e in got["a"]].count("gap") == 0 and len(got["a"]) == 2 + 6
    assert [e["event"] for e in got["b"]].count("gap") == 1
    assert decode((TOPIC,), got["a"][-1]["id"]) == {P0: 2, P1: 6}


def test_a_resume_that_loses_records_is_logged_with_what_to_do(caplog):
    """A client resumed past what retention kept, or further back than SSE_REPLAY_MAX_EVENTS,
    got its gap event and the log said only 'replayed 5 record(s)': nothing told the operator
    that clients lose events (a log audit). A WARNING a minute at most, the rest at INFO."""
    import logging
    caplog.set_level(logging.INFO, logger="actors.replay")
    actor = _actor(_retained_from(8), max_events=1)
    for client in ("c1", "c2"):
        outbox = Outbox(100)
        actor.on_receive(_request(client, {P0: 2, P1: 3}, {P0: 10, P1: 10}, FakeRef(), outbox))
        _drain(actor, outbox)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "will not get" in
            r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    line = said[0][1]
    assert line.startswith("client c1 resumed with a gap: 14 record(s) of its topics it will "
                           "not get"), line
    # retention deleted 2-7 and 3-7 (11); of the 4 left, 1 is replayed (3 over the limit)
    assert "11 deleted by Kafka's retention" in line and "retention.ms" in line, line
    assert "3 over SSE_REPLAY_MAX_EVENTS (1)" in line, line
