import json

import pytest

from actors.broker import SLOW_CLIENT, BrokerActor
from actors.filters import Filter
from actors.messages import (
    SendHeartbeats, ClientInfo, Close, CloseAll, Consumed, DisconnectClient, GetClients, GetHealth,
    GetStats, KafkaStateChanged, ReadRange, Remember, Replay, Replayed, Subscribe, Unsubscribe,
)
from actors.outbox import Outbox
from actors.events import events_from_records
from actors.resume import Frontier
from tests.fakes import FakeRef, make_event, make_record
from tests.sse import parse_stream

POST = make_event("blog.post.created", "blog-service", offset=1)
CLICK = make_event("link.clicked", "link-service", topic="link.clicks", offset=1)
CHAT = make_event("twitchbot.message.created", "twitchbot-service", topic="tw", offset=2)


def _broker(warm_start=False):
    history = FakeRef()
    return BrokerActor(history=history, warm_start=warm_start), history


def _join(broker, client_id, types=None, sources=None, capacity=100, named=True,
          with_history=False, at=0.0, opened=None):
    outbox, ref = Outbox(capacity), FakeRef()
    info = ClientInfo(client_id, "10.0.0.1", "test", Filter.parse(types, sources), named, at,
                      opened=at if opened is None else opened)
    broker.on_receive(Subscribe(info, outbox, ref, None, with_history))
    return outbox, ref


def _ids(outbox):
    """The ids of all that waits (a take gives at most outbox.JOIN_BYTES of small chunks)."""
    data = b""
    while outbox.waiting:
        data += outbox.take(0)[0]
    return [e["id"] for e in parse_stream(data)]


def _id(offset):
    """The id of the event at blog.posts:0:`offset` (the frontier right after it)."""
    return make_event(offset=offset).sse_id


def test_each_client_gets_only_matching_events_in_one_chunk():
    broker, history = _broker()
    blog, _ = _join(broker, "blog", "blog.*")
    links, _ = _join(broker, "links", "link.*")
    every, _ = _join(broker, "all")
    broker.on_receive(Consumed((POST, CLICK, CHAT)))
    assert _ids(blog) == [POST.sse_id]
    assert _ids(links) == [CLICK.sse_id]
    assert _ids(every) == [POST.sse_id, CLICK.sse_id, CHAT.sse_id]
    assert history.of(Remember) == [Remember((POST, CLICK, CHAT))]


def test_clients_with_the_same_filter_share_a_group():
    broker, _ = _broker()
    a, _ = _join(broker, "a", "blog.*,link.*")
    b, _ = _join(broker, "b", "link.*,blog.*")
    broker.on_receive(Consumed((POST,)))
    assert len(broker.live.groups) == 1
    assert _ids(a) == _ids(b) == [POST.sse_id]


def test_unnamed_clients_get_frames_without_event_lines():
    broker, _ = _broker()
    plain, _ = _join(broker, "p", named=False)
    broker.on_receive(Consumed((POST,)))
    [event] = parse_stream(plain.take(0)[0])
    assert event["event"] == "message"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("step", [-3600.0, 1.7e9])
def test_the_uptime_does_not_move_with_the_wall_clock(step):
    """NTP steps the wall clock (by an hour; or by decades on a board without a real-time
    clock that booted in 1970): the worker has still run 30 s, not -3,570 s or 54 years."""
    wall, ticks = Clock(), Clock()
    wall.now, ticks.now = 1.0e9, 500.0
    broker = BrokerActor(history=FakeRef(), warm_start=False, clock=wall, monotonic=ticks)
    wall.now += 30 + step
    ticks.now += 30
    assert broker.on_receive(GetStats()).uptime_seconds == 30


def test_a_burst_far_over_the_buffer_reaches_idle_clients_whole():
    broker, _ = _broker()
    outboxes = [_join(broker, f"c{i}", capacity=100)[0] for i in range(5)]
    burst = tuple(make_event(offset=o) for o in range(1000))
    for start in range(0, 1000, 200):                 # five polls, before any stream writes
        broker.on_receive(Consumed(burst[start:start + 200]))
    assert all(len(_ids(box)) == 1000 for box in outboxes)
    stats = broker.on_receive(GetStats())
    assert stats.slow_disconnects == 0 and stats.events_delivered == 5000


def test_a_socket_that_stops_taking_events_disconnects_the_slow_client_only():
    clock = Clock()
    broker = BrokerActor(history=FakeRef(), warm_start=False, monotonic=clock)
    slow, slow_ref = _join(broker, "slow", capacity=2)
    fast, _ = _join(broker, "fast", capacity=100)
    broker.on_receive(Consumed((POST, CLICK)))
    broker.on_receive(Consumed((CHAT,)))              # 3 > 2 wait, but only just
    assert slow_ref.of(Close) == [] and len(_ids(fast)) == 3
    clock.now = 5.0                                   # still waiting 5 s later
    broker.on_receive(Consumed((CHAT,)))
    assert slow_ref.of(Close) == [Close(SLOW_CLIENT)]
    assert slow.dropped == 1 and "slow" not in broker.subscribers
    assert len(_ids(fast)) == 1
    stats = broker.on_receive(GetStats())
    assert stats.events_dropped == 1 and stats.slow_disconnects == 1


def _resume(broker, client_id, known, since_ms=None):
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo(client_id, "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, known, True, since_ms))
    return outbox


def _batch(*offsets, partition=0):
    events = tuple(make_event(offset=o, partition=partition) for o in offsets)
    frontier = {("blog.posts", partition): offsets[-1] + 1} if offsets else {}
    return Consumed(events, (), frontier)


def test_replay_hands_over_to_live_without_gap_or_duplicate():
    broker, history = _broker()
    outbox, _ = _join(broker, "c", with_history=True)
    [request] = history.of(Replay)
    assert request.client_id == "c" and request.reply_to.ref is broker.actor_ref
    old = make_event(offset=0)
    broker.on_receive(_batch(1, 2))                 # arrives while history answers
    assert outbox.queued == 0
    broker.on_receive(Replayed("c", (old,), True))
    assert _ids(outbox) == [old.sse_id, _id(1), _id(2)]
    broker.on_receive(_batch(3))
    assert _ids(outbox) == [_id(3)]


def test_a_resume_the_history_cannot_serve_is_read_from_kafka_up_to_the_subscribe_point():
    history, replay = FakeRef(), FakeRef()
    broker = BrokerActor(history=history, kafka_reader=replay, warm_start=False)
    broker.on_receive(_batch(0, 1, 2, 3))
    outbox = _resume(broker, "c", {("blog.posts", 0): 1})
    broker.on_receive(_batch(4))
    broker.on_receive(Replayed("c", (), False))
    [read] = replay.of(ReadRange)
    assert read.start == {("blog.posts", 0): 1} and read.until == {("blog.posts", 0): 4}
    from_kafka = tuple(make_event(offset=o) for o in (1, 2, 3))
    broker.on_receive(Replayed("c", from_kafka, True, b"event: gap\ndata: {}\n\n"))
    data = outbox.take(0)[0]
    assert data.startswith(b"event: gap")
    assert [e["id"] for e in parse_stream(data)][1:] == [_id(o) for o in (1, 2, 3, 4)]
    assert broker.on_receive(GetStats()).kafka_replays == 1


def test_since_goes_straight_to_kafka():
    history, replay = FakeRef(), FakeRef()
    broker = BrokerActor(history=history, kafka_reader=replay, warm_start=False)
    broker.on_receive(_batch(0))
    _resume(broker, "c", None, since_ms=1234)
    [read] = replay.of(ReadRange)
    assert read.since_ms == 1234 and read.start is None and history.of(Replay) == []


def test_a_client_ahead_of_this_instance_gets_no_duplicates():
    broker, _ = _broker()
    broker.on_receive(_batch(0, 1))
    outbox = _resume(broker, "c", {("blog.posts", 0): 4})   # it saw up to 3 elsewhere
    broker.on_receive(Replayed("c", (), True))
    broker.on_receive(_batch(2, 3, 4))
    assert _ids(outbox) == [_id(4)]
    broker.on_receive(_batch(5))
    assert _ids(outbox) == [_id(5)] and "c" in broker.live.groups[(Filter(), True)]


def test_replays_wait_for_the_warm_start():
    broker, history = _broker(warm_start=True)
    _join(broker, "early", with_history=True)
    assert history.of(Replay) == []
    broker.on_receive(Consumed((make_event(offset=4),), (), {}, {("blog.posts", 0): 4}, warm=True))
    assert [r.client_id for r in history.of(Replay)] == ["early"]
    assert history.mailbox.index(history.of(Replay)[0]) > history.mailbox.index(
        history.of(Remember)[-1])


def test_a_client_that_leaves_while_held_is_forgotten_when_the_warm_start_ends():
    broker, history = _broker(warm_start=True)
    outbox, _ = _join(broker, "early", with_history=True)
    broker.on_receive(Unsubscribe("early"))
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 4}, {("blog.posts", 0): 4}, warm=True))
    assert history.of(Replay) == [] and broker.subscribers == {} and broker.live.groups == {}
    assert outbox.take(0)[0] == b""


def test_resumes_held_during_the_warm_start_read_up_to_the_live_frontier():
    history, replay = FakeRef(), FakeRef()
    broker = BrokerActor(history=history, kafka_reader=replay)     # warm start pending
    _resume(broker, "since", None, since_ms=5)
    _resume(broker, "old", {("blog.posts", 0): 1})
    assert replay.of(ReadRange) == [] and history.of(Replay) == []
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 9}, {("blog.posts", 0): 9}))
    broker.on_receive(Consumed((), (), {}, {("blog.posts", 0): 9}, warm=True))
    [since] = replay.of(ReadRange)
    assert since.until == {("blog.posts", 0): 9} and since.since_ms == 5
    [old] = history.of(Replay)
    broker.on_receive(Replayed("old", (), False))
    assert replay.of(ReadRange)[-1].until == {("blog.posts", 0): 9}
    assert old.known == {("blog.posts", 0): 1}


def test_warm_batches_fill_the_history_without_fan_out():
    broker, history = _broker()
    outbox, _ = _join(broker, "a")
    warm = Consumed((make_event(offset=0),), (), {("blog.posts", 0): 1},
                    {("blog.posts", 0): 0}, warm=True)
    broker.on_receive(warm)
    assert outbox.queued == 0 and history.of(Remember)[0].starts == {("blog.posts", 0): 0}
    assert broker.frontier == {("blog.posts", 0): 1}


def test_unsubscribe_and_disconnect():
    broker, _ = _broker()
    _join(broker, "a")
    _, ref_b = _join(broker, "b")
    broker.on_receive(Unsubscribe("a"))
    assert broker.on_receive(DisconnectClient("b")) is True
    assert ref_b.of(Close) == [Close("disconnected by operator")]
    assert broker.on_receive(DisconnectClient("nope")) is False
    assert broker.subscribers == {} and broker.live.groups == {}


def test_close_all_and_heartbeat():
    broker, _ = _broker()
    outbox, ref = _join(broker, "a")
    broker.on_receive(SendHeartbeats())
    assert outbox.take(0)[0] == b": heartbeat\n"
    broker.on_receive(CloseAll("server shutting down"))
    assert ref.of(Close) == [Close("server shutting down")]


def test_clients_page_and_stats():
    broker, _ = _broker()
    for i in range(5):
        _join(broker, f"c{i}", "blog.*", at=float(i))
    broker.on_receive(Consumed((POST, CLICK), invalid_topics=("blog.posts",)))
    page = broker.on_receive(GetClients(limit=2, offset=3))
    assert page.total == 5 and [c.id for c in page.clients] == ["c3", "c4"]
    assert page.clients[0].event_types == ("blog.*",)
    stats = broker.on_receive(GetStats())
    assert stats.events_consumed == 2 and stats.invalid_events == 1
    assert stats.events_delivered == 5 and stats.per_topic == {"blog.posts": 1, "link.clicks": 1}


def test_a_page_after_a_client_starts_right_after_it_when_earlier_clients_left():
    """Offset paging skipped a client whenever one listed on an earlier page disconnected
    before the next page was asked (everyone after it moved up one place)."""
    broker, _ = _broker()
    for i in range(5):
        _join(broker, f"c{i}", at=float(i))
    first = broker.on_receive(GetClients(limit=2))
    broker.on_receive(Unsubscribe("c0"))
    last = first.clients[-1]
    after = broker.on_receive(GetClients(limit=2, after=(last.connected_at, last.id)))
    assert [c.id for c in after.clients] == ["c2", "c3"] and after.total == 4
    assert broker.on_receive(GetClients(limit=2, offset=1, after=(1.0, "c1"))).clients[0].id == "c3"
    assert broker.on_receive(GetClients(limit=9, after=(4.0, "c4"))).clients == ()


def test_clients_are_listed_in_the_order_they_came_when_the_wall_clock_stepped_back():
    """GetClients listed and paged by the Unix time of each connect: after the wall clock
    stepped back 10 minutes, a client that came later sorted first, and a walk by page
    tokens under way skipped it (a clock-step audit). The order is that of the monotonic
    clock (machine-wide: the workers of an instance compare theirs); the Unix time is shown."""
    broker, _ = _broker()
    _join(broker, "early", at=1.8e9, opened=500.0)
    _join(broker, "later", at=1.8e9 - 590, opened=510.0)
    first = broker.on_receive(GetClients(limit=1))
    assert [c.id for c in first.clients] == ["early"]
    assert first.clients[0].connected_at == 1.8e9
    after = broker.on_receive(GetClients(limit=1, after=(first.clients[0].opened, "early")))
    assert [c.id for c in after.clients] == ["later"]


def test_health_follows_kafka_state():
    broker, _ = _broker()
    assert broker.on_receive(GetHealth()).status == "degraded"
    broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
    health = broker.on_receive(GetHealth())
    assert health.status == "ok" and health.kafka.partitions == ("blog.posts:0",)


def test_a_kafka_state_change_is_one_tidy_log_line(caplog):
    import logging
    broker, _ = _broker()
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
        broker.on_receive(KafkaStateChanged("unreachable", detail="no broker of k:9092 "
                                            "accepts connections"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kafka ")]
    assert lines[0] == "kafka connecting -> connected"
    assert lines[1] == ("kafka connected -> unreachable: no broker of k:9092 accepts connections"
                        "; open streams stay open and get the events produced meanwhile once it "
                        "is back")


def test_kafka_back_says_how_long_it_was_lost(caplog):
    """The outage had a start line and an end line, but how long it lasted had to be worked out
    from two timestamps, and the start line did not say what clients meanwhile get. The time
    is the monotonic clock's: the wall clock stepped back 10 minutes meanwhile (NTP after a
    VM's pause) made it "-522 s after it was lost"."""
    import logging
    now, wall = [100.0], [5000.0]
    broker = BrokerActor(history=FakeRef(), clock=lambda: wall[0], monotonic=lambda: now[0],
                         warm_start=False)
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
        broker.on_receive(KafkaStateChanged("unreachable", detail="lost the connection"))
        now[0] += 40
        wall[0] -= 600
        broker.on_receive(KafkaStateChanged("unauthorized", detail="not authorized"))
        now[0] += 38
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kafka ")]
    assert lines[0] == "kafka connecting -> connected"          # the start: no outage
    assert "open streams stay open" in lines[1] and "open streams" not in lines[2]
    assert lines[3] == "kafka unauthorized -> connected (78 s after it was lost)"


# -- the id a stream opens with -------------------------------------------------------------
TOPICS = ("blog.posts", "link.clicks")


def _position(offsets):
    from actors import framing
    from actors.resume import Frontier
    return framing.position(Frontier(TOPICS, offsets).token())


def _opening(outbox):
    from tests.sse import SSEParser
    parser = SSEParser()
    events = parser.feed(outbox.take(0)[0])
    return parser.last_id, events


def test_a_live_stream_opens_with_the_live_frontier():
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0, 1, 2))
    outbox, _ = _join(broker, "c")
    assert outbox.take(0) == (_position({("blog.posts", 0): 3}), 0, None)


@pytest.mark.parametrize("how", ["live", "history", "since"])
def test_a_stream_whose_id_came_from_other_kafka_topics_opens_with_a_gap_at_its_place(how):
    """Its Last-Event-ID came from a gateway with other KAFKA_TOPICS (a topic appended at a
    restart): it starts over, told by a `gap` (topics_changed, no partitions) that carries its
    opening id, as every gap does (clients that take ids from events only reconnect from it):
    the live frontier, the history's beginning, or none for a `since` stream (its URL)."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0, 1, 2))
    outbox = Outbox(100)
    info = ClientInfo("c", "10.0.0.1", "test", Filter.parse(None, None))
    broker.on_receive(Subscribe(info, outbox, FakeRef(), None, with_history=how == "history",
                                since_ms=0 if how == "since" else None, topics_changed=True))
    opening = _position({("blog.posts", 0): 3}) if how == "live" else b""
    if how == "history":
        opening = _position({("blog.posts", 0): 1})
        broker.on_receive(Replayed("c", (), True, opening))
    id_last, events = _opening(outbox)
    assert [(e["event"], json.loads(e["data"])) for e in events] == [
        ("gap", {"reason": "topics_changed", "partitions": []})]
    assert id_last == (opening[4:-2].decode() if opening else "")
    broker.on_receive(_batch(3))
    assert b"topics_changed" not in outbox.take(0)[0]         # once


def test_streams_open_with_the_frontier_of_their_moment_between_batches_and_incarnations(
        monkeypatch):
    """The live id a stream opens with is made once per change (a storm of opens between two
    batches shares it): never an older frontier, nor an older incarnation's tag."""
    import uuid
    from actors import resume
    registry = resume.Incarnations()
    monkeypatch.setattr(resume, "INCARNATIONS", registry)
    registry.learn("blog.posts", uuid.uuid4())
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0, 1))
    first, second = _join(broker, "a")[0], _join(broker, "b")[0]
    opening = _position({("blog.posts", 0): 2})
    assert first.take(0)[0] == second.take(0)[0] == opening
    broker.on_receive(_batch(2))
    assert _join(broker, "c")[0].take(0)[0] == _position({("blog.posts", 0): 3})
    broker.on_receive(Consumed((), (), {}, {}))                 # nothing moved
    before = _join(broker, "d")[0].take(0)[0]
    assert before == _position({("blog.posts", 0): 3})
    registry.learn("blog.posts", uuid.uuid4())                  # the topic was re-created
    after = _join(broker, "e")[0].take(0)[0]
    assert after == _position({("blog.posts", 0): 3}) and after != before


def test_a_live_stream_that_came_during_the_warm_start_opens_after_it():
    broker = BrokerActor(history=FakeRef(), topics=TOPICS)
    outbox, _ = _join(broker, "c")
    assert outbox.take(0)[0] == b""
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 7}, {("blog.posts", 0): 7}, warm=True))
    broker.on_receive(_batch(7))
    data = outbox.take(0)[0]
    assert data.startswith(_position({("blog.posts", 0): 7}))
    assert [e["id"] for e in parse_stream(data)] == [_id(7)]


def test_live_streams_that_came_during_the_warm_start_read_kafka_since_the_first_came():
    """A worker still starting (a replaced one, beside others that serve) takes new streams:
    the events produced after they opened and before its consumer had its partitions are in
    the warm start, not live. Without a replay from when they came, such a `history=false`
    stream lost them (e.g. 40 of 40 in test_workers with the second worker 1.5 s late)."""
    replay = FakeRef()
    broker = BrokerActor(history=FakeRef(), kafka_reader=replay, topics=TOPICS)
    early, _ = _join(broker, "early", at=1000.25)
    _join(broker, "later", at=1000.75)
    resumed = _resume(broker, "resumed", {("blog.posts", 0): 2})
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 7}, {("blog.posts", 0): 7}, warm=True))
    reads = {r.client_id: r for r in replay.of(ReadRange)}
    assert sorted(reads) == ["early", "later"]       # the resume reads the history
    assert {r.since_ms for r in reads.values()} == {1_000_250}      # one read serves both
    assert all(r.until == {("blog.posts", 0): 7} and r.start is None for r in reads.values())
    assert early.take(0)[0] == b""                   # no id before its replay
    broker.on_receive(_batch(7))
    assert _ids(early) == [] and _ids(resumed) == []   # held for after the replays


@pytest.mark.parametrize("complete_after_ms, reads_kafka", [
    (1_000_100, True),       # full of what came after the stream: older ones left out
    (1_000_000, True),       # what was stamped as it came may have been left out
    (999_900, False),        # full, of events from before it came too: it holds all since
    (None, False),           # every event read: room for more
])
def test_a_history_stream_held_during_the_warm_start_reads_kafka_if_the_history_fell_short(
        complete_after_ms, reads_kafka):
    """More events came while the worker started than the history keeps: it holds only the
    newest, and a stream with history that came before them would miss the oldest."""
    replay, history = FakeRef(), FakeRef()
    broker = BrokerActor(history=history, kafka_reader=replay, topics=TOPICS)
    _join(broker, "early", with_history=True, at=1000.0)
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 7}, {("blog.posts", 0): 0},
                               warm=True, complete_after_ms=complete_after_ms))
    reads, replays = replay.of(ReadRange), history.of(Replay)
    assert [r.since_ms for r in reads] == ([1_000_000] if reads_kafka else [])
    assert [r.client_id for r in replays] == ([] if reads_kafka else ["early"])


def test_a_resumed_stream_opens_with_its_own_position():
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0, 1, 2))
    outbox = _resume(broker, "c", {("blog.posts", 0): 1, ("link.clicks", 0): 5})
    assert outbox.take(0)[0] == _position({("blog.posts", 0): 1, ("link.clicks", 0): 5})


def test_a_since_stream_gets_no_id_before_its_replay():
    broker = BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0))
    outbox = _resume(broker, "c", None, since_ms=5)
    assert outbox.take(0)[0] == b""


def test_a_new_stream_with_history_opens_just_before_the_history():
    from actors.history import HistoryActor
    history = HistoryActor(size=2, topics=TOPICS)
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    history.on_receive(Remember(tuple(make_event(offset=o) for o in range(10, 13)),
                                {("blog.posts", 0): 10}))
    assert history.covered == {("blog.posts", 0): 11}
    outbox, _ = _join(broker, "c", with_history=True, types="nothing.*")
    replayed = _history_reply(history, "nothing.*")
    broker.on_receive(replayed)
    last_id, events = _opening(outbox)
    assert events == [] and last_id == _position({("blog.posts", 0): 11})[4:-2].decode()
    # resumed from there, the history serves it exactly (nothing it had has gone)
    assert history.after({("blog.posts", 0): 11}) == (list(history.events), True)


def _beat(broker, outbox):
    """A heartbeat: what the stream gets, as (its last event id, events dispatched, bytes)."""
    from tests.sse import SSEParser
    outbox.take(0)
    broker.on_receive(SendHeartbeats())
    data = outbox.take(0)[0]
    parser = SSEParser()
    events = parser.feed(data)
    return parser.last_id, events, data


def test_a_filtered_stream_is_given_the_live_position_with_a_heartbeat():
    """Events its filter passed over move its position: an id-only block with the heartbeat,
    so that a resume does not read them back (nor call it a replay_limit or retention gap)."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    outbox, _ = _join(broker, "c", "link.*")
    broker.on_receive(_batch(0, 1, 2))
    last_id, events, data = _beat(broker, outbox)
    assert events == [] and data.startswith(b": heartbeat\n")
    assert last_id == _position({("blog.posts", 0): 3})[4:-2].decode()
    assert _beat(broker, outbox)[2] == b": heartbeat\n"         # once for one position


def test_a_stream_whose_socket_takes_nothing_gets_no_positions_piling_up():
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    outbox, _ = _join(broker, "c", "link.*")
    broker.on_receive(_batch(0, 1, 2))
    for _ in range(3):                                    # nothing written meanwhile
        broker.on_receive(SendHeartbeats())
    assert outbox.take(0)[0].count(b"id: ") == 1          # its opening id only
    assert _beat(broker, outbox)[0] == _position({("blog.posts", 0): 3})[4:-2].decode()


def test_a_stream_that_was_shown_the_live_position_gets_only_the_heartbeat():
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    idle, _ = _join(broker, "idle", "link.*")
    assert _beat(broker, idle)[2] == b": heartbeat\n"        # its opening id is live
    every, _ = _join(broker, "every")
    frontier = Frontier(TOPICS)           # the ids a consumer of these topics gives
    records = [make_record(offset=o) for o in (0, 1)]
    broker.on_receive(Consumed(tuple(events_from_records(records, frontier).events), (),
                               dict(frontier.offsets)))
    assert _beat(broker, every)[2] == b": heartbeat\n"       # its last event is live


def test_a_stream_resumed_at_the_live_position_gets_only_the_heartbeat():
    """Interop audit: its opening id (its own position, the live one) was sent again, in an
    id-only block, with its first heartbeat: one empty message more, to the clients that hand
    those over (httpx-sse, r3labs/sse)."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(_batch(0, 1, 2))
    outbox = Outbox(100)
    info = ClientInfo("r", "10.0.0.1", "test", Filter.parse("link.*", None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, FakeRef(), dict(broker.frontier), True))
    broker.on_receive(Replayed("r", (), True))                 # nothing it has not seen
    assert broker.subscribers["r"].subscription.phase.value == "live"
    assert outbox.take(0)[0].count(b"id: ") == 1               # its opening id
    assert _beat(broker, outbox)[2] == b": heartbeat\n"


def _history_reply(history, types):
    ref = FakeRef()
    history.on_receive(Replay("c", Filter.parse(types, None), None, ref))
    [reply] = ref.of(Replayed)
    return reply


def test_a_resume_across_a_recreated_topic_opens_with_a_gap_event_and_forgets_old_floors():
    import json
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts", "link.clicks"))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("r", "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {("link.clicks", 0): 3}, True, None,
                                {("blog.posts", 0): 20}))
    [gap] = parse_stream(outbox.take(0)[0])
    assert gap["event"] == "gap"
    assert json.loads(gap["data"])["partitions"] == [
        {"topic": "blog.posts", "partition": 0, "requested_offset": 20, "resumed_offset": 0,
         "reason": "topic_recreated"}]
    behind, _ = _join(broker, "b")
    broker.subscribers["b"].subscription.known = {("blog.posts", 0): 20, ("link.clicks", 0): 2}
    history = broker.history
    broker.on_receive(Consumed((), frontier={("blog.posts", 0): 0}, starts={("blog.posts", 0): 0},
                               reset_topics=("blog.posts",)))
    assert broker.subscribers["b"].subscription.known == {("link.clicks", 0): 2}
    assert history.of(Remember)[-1].reset_topics == ("blog.posts",)


def test_closing_a_share_of_the_streams_ends_the_oldest_first():
    broker, _ = _broker()
    refs = [_join(broker, f"c{i}", at=float(i))[1] for i in range(5)]
    broker.on_receive(CloseAll("draining", 0.4))
    assert [bool(r.of(Close)) for r in refs] == [True, True, False, False, False]
    broker.on_receive(CloseAll("draining", 1 / 3))
    assert [bool(r.of(Close)) for r in refs] == [True, True, True, False, False]
    broker.on_receive(CloseAll("draining"))
    assert all(r.of(Close) for r in refs) and not broker.subscribers


def test_new_streams_handed_the_same_history_share_its_joined_frames():
    """A reconnect storm: every new stream of one filter gets the history's same tuple. Its
    frames are joined (and counted per topic) once per framing, and each stream still gets its
    own opening, the history in its framing (named or plain), then what arrived meanwhile."""
    broker, _history = _broker()
    ring = tuple(make_event(offset=o) for o in range(3)) + (CLICK,)
    outboxes = [_join(broker, "a", with_history=True)[0],
                _join(broker, "b", with_history=True, named=False)[0],
                _join(broker, "c", with_history=True)[0]]
    broker.on_receive(_batch(3))                        # arrives while they replay
    for client_id in ("a", "b", "c"):
        broker.on_receive(Replayed(client_id, ring, True, f": {client_id}\n\n".encode()))
    assert len(broker.blocks) == 2                      # one per framing, not one per stream
    for client_id, outbox in zip("abc", outboxes, strict=True):
        data = outbox.take(0)[0]
        assert data.startswith(f": {client_id}\n\n".encode())
        assert [e["id"] for e in parse_stream(data)] == [e.sse_id for e in ring] + [_id(3)]
        assert (b"event: " in data) is (client_id != "b")
    stats = broker.on_receive(GetStats())
    assert stats.events_delivered == 3 * 5 and stats.events_replayed == 3 * 4
    assert stats.delivered_per_topic == {"blog.posts": 3 * 4, "link.clicks": 3}
    for i in range(12):                                 # a new ring at every batch: kept a while
        _join(broker, f"x{i}", with_history=True)
        broker.on_receive(Replayed(f"x{i}", (make_event(offset=i),), True))
    assert len(broker.blocks) <= 8


def test_a_streams_own_replay_is_framed_as_the_stream_asked():
    """A replay cut for one stream (a list, not the history's shared tuple) is not shared, but
    it is still framed as that stream asked: plain frames for a stream without `event:` lines.
    Framed with them, the browser's onmessage never fired for its replayed events."""
    from actors.blocks import Blocks
    own = [make_event(offset=0), CLICK]
    plain, per_topic = Blocks().of(own, False)
    assert plain == own[0].plain + CLICK.plain and b"event: " not in plain
    assert [e["id"] for e in parse_stream(plain)] == [own[0].sse_id, CLICK.sse_id]
    assert per_topic == {"blog.posts": 1, "link.clicks": 1}
    assert Blocks().of(own, True)[0] == own[0].named + CLICK.named


def test_every_figure_of_the_broker_reaches_the_stats():
    """/stats and /metrics show each figure the broker counts, each as counted: invalid records
    and tombstones per topic, events delivered to and dropped for every client they went to,
    the lag per topic:partition, the connections and the filter groups."""
    from actors.figures import Figures
    figures = Figures(clock=lambda: 10.0)
    figures.count_skipped(["a", "a", "b"], ["a", "a", "c"])
    figures.count_delivery([make_event(offset=0), make_event(offset=1)], 3, 2)
    figures.connections = 4
    figures.lag = {("blog.posts", 1): 5}
    stats = figures.stats(clients=1, filter_groups=7, kafka_state="connected")
    assert stats.invalid_events == 3 and stats.invalid_per_topic == {"a": 2, "b": 1}
    assert stats.tombstones == 3 and stats.tombstones_per_topic == {"a": 2, "c": 1}
    assert stats.events_delivered == 2 * 3 and stats.events_dropped == 2 * 2
    assert stats.delivered_per_topic == {"blog.posts": 6}
    assert stats.dropped_per_topic == {"blog.posts": 4}
    assert stats.connections_total == 4 and stats.filter_groups == 7
    assert stats.kafka_lag == {"blog.posts:1": 5}


# -- ids never go back before what the client has seen ---------------------------------------
P0, P1 = ("blog.posts", 0), ("blog.posts", 1)


def _consumed_in_order(*positions):
    """Events as an instance makes them, consuming these (partition, offset) in this order."""
    from actors.events import events_from_records
    from actors.resume import Frontier
    from tests.fakes import make_record
    frontier = Frontier(("blog.posts",), {P0: 0, P1: 0})
    return tuple(events_from_records([make_record(partition=p, offset=o) for p, o in positions],
                                     frontier).events)


def _offsets_of_each(outbox):
    from actors.resume import decode
    return [decode(("blog.posts",), e["id"]) for e in parse_stream(outbox.take(0)[0])
            if e["data"]]


def test_a_resume_from_another_instance_never_gets_an_id_before_its_own():
    """Instance A read p1 first and the client saw p1:0-4 there (its id: p0 at 0, p1 at 5);
    instance B read p0 first, so its p0 events carry ids with p1 at 0. Handed those ids, a
    client cut after p0:0 would resume with p1 at 0 and get p1:0-4 a second time."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    on_b = _consumed_in_order(*[(0, o) for o in range(5)], *[(1, o) for o in range(5)])
    broker.on_receive(Consumed((), (), {P0: 5, P1: 5}))
    outbox = _resume(broker, "c", {P0: 0, P1: 5})
    broker.on_receive(Replayed("c", tuple(e for e in on_b if e.position.partition == 0), True))
    ids = _offsets_of_each(outbox)
    assert [i[P0] for i in ids] == [1, 2, 3, 4, 5]
    assert all(i[P1] == 5 for i in ids), ids


def test_a_client_ahead_of_this_instance_never_gets_an_id_before_its_own():
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    broker.on_receive(Consumed((), (), {P0: 0, P1: 0}))
    outbox = _resume(broker, "c", {P0: 0, P1: 5})        # it saw p1:0-4 elsewhere
    broker.on_receive(Replayed("c", (), True))
    outbox.take(0)
    events = _consumed_in_order((0, 0), (1, 0), (0, 1))
    broker.on_receive(Consumed(events, (), {P0: 2, P1: 1}))
    ids = _offsets_of_each(outbox)
    assert ids == [{P0: 1, P1: 5}, {P0: 2, P1: 5}]


def _resumed_while_warming(monkeypatch):
    """A warming broker whose consumer does not know blog.posts' incarnation yet, and a stream
    resumed there with an id of blog.posts:0 at 20 issued under a known one: (the registry,
    the broker, the stream's outbox, the id, what the broker read in it)."""
    import uuid
    from actors import resume
    from actors.resume import Frontier, Incarnations
    registry = Incarnations()
    monkeypatch.setattr(resume, "INCARNATIONS", registry)
    before = Incarnations()
    before.learn("blog.posts", uuid.uuid4())
    token = Frontier(("blog.posts",), {P0: 20}, before).token()
    position = resume.read(("blog.posts",), token)           # nothing known yet
    broker = BrokerActor(history=FakeRef(), topics=("blog.posts",))     # warming
    outbox = Outbox(100)
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, FakeRef(), position.offsets, True, None,
                                position.recreated, position.unverified))
    return registry, broker, outbox, token, position


def test_an_id_read_before_the_topics_incarnations_were_known_is_checked_when_they_are(
        monkeypatch):
    """A gateway that just started reads ids before its consumer has Kafka's topic ids: an
    id from before the topic was deleted and created again looked current, and its old
    offsets (20) held back the new topic's first 20 events without a word."""
    import uuid
    registry, broker, outbox, _token, position = _resumed_while_warming(monkeypatch)
    assert position.offsets == {P0: 20} and position.recreated == {}
    registry.learn("blog.posts", uuid.uuid4())                 # the consumer learns it
    broker.on_receive(Consumed((), (), {P0: 3}, {P0: 0}, warm=True))
    gap = [e for e in parse_stream(outbox.take(0)[0]) if e["event"] == "gap"]
    assert [p["reason"] for p in __import__("json").loads(gap[0]["data"])["partitions"]] == [
        "topic_recreated"]
    assert broker.subscribers["c"].subscription.known == {}
    late = Outbox(100)                                         # and one that comes after
    info = ClientInfo("d", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, late, FakeRef(), position.offsets, True, None,
                                position.recreated, position.unverified))
    assert broker.subscribers["d"].subscription.known == {}
    assert [e["event"] for e in parse_stream(late.take(0)[0])] == ["gap"]


def test_the_opening_id_of_a_resume_read_before_the_incarnations_were_known_keeps_its_tag(
        monkeypatch):
    """Interop audit: a stream resumed in the moment after a start, before the consumer had
    Kafka's topic ids, was given an opening id with no incarnation tag (0): a client cut before
    its next event resumed with an id that no longer told a re-created topic apart. The
    opening id keeps the tag the client's id had until the consumer knows the topic."""
    import uuid
    from actors import resume
    registry, _broker, outbox, token, _position = _resumed_while_warming(monkeypatch)
    opening = outbox.take(0)[0]
    assert opening == f"id: {token}\n\n".encode()              # not a tag of 0
    registry.learn("blog.posts", uuid.uuid4())                 # re-created meanwhile
    assert resume.read(("blog.posts",), token).recreated == {P0: 20}


def test_every_live_stream_is_told_of_records_lost_to_retention_with_its_place_after():
    import json

    from actors.messages import Skip
    from actors.resume import decode
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    blog, _ = _join(broker, "blog", "blog.*")
    links, _ = _join(broker, "links", "link.*")      # no event of the topic: told all the same
    for outbox in (blog, links):
        outbox.take(0)                              # the opening position
    skip = Skip("retention", ("blog.posts", 0), 2, 7)
    broker.on_receive(Consumed((), frontier={("blog.posts", 0): 7}, skips=(skip,)))
    for outbox in (blog, links):
        [gap] = parse_stream(outbox.take(0)[0])
        assert gap["event"] == "gap"
        assert decode(("blog.posts",), gap["id"]) == {("blog.posts", 0): 7}
        assert json.loads(gap["data"]) == {"reason": "retention", "partitions": [
            {"topic": "blog.posts", "partition": 0, "requested_offset": 2,
             "resumed_offset": 7, "reason": "retention"}]}
    [remember] = broker.history.of(Remember)
    assert remember.skips == (skip,)


def test_a_stream_replaying_when_records_are_lost_is_told_in_its_place_after_its_replay():
    from actors.messages import Skip
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    broker.on_receive(Consumed((make_event(offset=1),), frontier={("blog.posts", 0): 2}))
    outbox, _ = _join(broker, "r", with_history=True)         # replaying the history
    outbox.take(0)
    broker.on_receive(Consumed((make_event(offset=2),), frontier={("blog.posts", 0): 3}))
    skip = Skip("retention", ("blog.posts", 0), 3, 7)
    broker.on_receive(Consumed((), frontier={("blog.posts", 0): 7}, skips=(skip,)))
    broker.on_receive(Consumed((make_event(offset=7),), frontier={("blog.posts", 0): 8}))
    broker.on_receive(Replayed("r", (make_event(offset=1),), True))
    frames = parse_stream(outbox.take(0)[0])
    assert [f["event"] for f in frames] == ["blog.post.created"] * 2 + ["gap", "blog.post.created"]
    assert [f["id"] for f in frames] == [_id(1), _id(2), _id(6), _id(7)]  # the gap: at 7


def _behind(broker, known):
    """A stream resumed from an instance ahead of this one (no history): it is BEHIND."""
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("b", "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, known, False))
    assert broker.subscribers["b"].subscription.phase.value == "behind"
    outbox.take(0)                                  # the opening position
    return outbox


def test_a_stream_behind_this_instance_is_told_of_records_lost_with_an_id_covering_its_own():
    """The live side lost link.clicks:0 3..7 to retention. A stream resumed from an instance
    that had read further in blog.posts (so behind this one there) had not seen them either: it
    gets the `gap` too, under an id that never says less than what it had seen."""
    import json

    from actors.messages import Skip
    from actors.resume import decode
    topics = ("blog.posts", "link.clicks")
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    blog, link = ("blog.posts", 0), ("link.clicks", 0)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 3}))
    outbox = _behind(broker, {blog: 9, link: 2})
    skip = Skip("retention", link, 3, 8)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 8}, skips=(skip,)))
    [gap] = parse_stream(outbox.take(0)[0])
    assert gap["event"] == "gap"
    assert decode(topics, gap["id"]) == {blog: 9, link: 8}
    assert json.loads(gap["data"])["partitions"] == [
        {"topic": "link.clicks", "partition": 0, "requested_offset": 3, "resumed_offset": 8,
         "reason": "retention"}]
    broker.on_receive(Consumed((make_event(topic="link.clicks", offset=8),),
                               frontier={blog: 5, link: 9}))
    [event] = parse_stream(outbox.take(0)[0])
    assert decode(topics, event["id"]) == {blog: 9, link: 9}     # no id goes back


def test_a_stream_behind_this_instance_that_saw_past_the_lost_records_is_not_told():
    from actors.messages import Skip
    topics = ("blog.posts", "link.clicks")
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    blog, link = ("blog.posts", 0), ("link.clicks", 0)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 3}))
    outbox = _behind(broker, {blog: 9, link: 3})
    broker.on_receive(Consumed((), frontier={blog: 7, link: 3},
                               skips=(Skip("retention", blog, 5, 7),)))
    assert outbox.take(0)[0] == b""


def test_a_resumed_stream_replaying_when_records_are_lost_gets_the_gap_under_its_own_id():
    """As above, but the stream was still replaying: told after its replay, and the gap's id
    says at least what it had seen in blog.posts (this instance's id would say 5, not 9)."""
    from actors.messages import Skip
    from actors.resume import decode
    topics = ("blog.posts", "link.clicks")
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    blog, link = ("blog.posts", 0), ("link.clicks", 0)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 3}))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("r", "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {blog: 9, link: 2}, True))
    assert broker.subscribers["r"].subscription.phase.value == "replaying"
    outbox.take(0)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 8},
                               skips=(Skip("retention", link, 3, 8),)))
    broker.on_receive(Replayed("r", (), True))
    [gap] = [f for f in parse_stream(outbox.take(0)[0]) if f.get("event") == "gap"]
    assert decode(topics, gap["id"]) == {blog: 9, link: 8}


def _log_cut(broker, p, at=5, under=8):
    """Kafka's log of `p` was cut at `at` under the live position `under` (an unclean leader
    election whose new leader had written past the position again)."""
    from actors.messages import Skip
    broker.on_receive(Consumed((), frontier={p: at}, skips=(Skip("truncated", p, under, at),)))


def test_a_log_cut_under_the_position_ends_the_streams_not_live_yet():
    """Their replays and hand-overs assume that positions only go on: a replaying stream held
    the new leader's records back as seen, one behind got none of them and no gap (a review).
    Ended, each reconnects from its id. Live streams get the gap and the new records."""
    from actors.messages import Close
    from actors.resume import decode
    topics, p = ("blog.posts",), ("blog.posts", 0)
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    broker.on_receive(Consumed((make_event(offset=7),), frontier={p: 8}))
    live, _ = _join(broker, "live")
    live.take(0)
    _replaying, replaying = _join(broker, "r", with_history=True)
    _behind(broker, {p: 9})
    behind = broker.subscribers["b"].client
    _log_cut(broker, p)
    assert set(broker.subscribers) == {"live"}
    for ref in (replaying, behind):
        [close] = ref.of(Close)
        assert close.reason.startswith("Kafka's log of blog.posts:0 was cut at offset 5")
    [gap] = parse_stream(live.take(0)[0])
    assert gap["event"] == "gap" and decode(topics, gap["id"]) == {p: 5}
    broker.on_receive(Consumed((make_event(offset=5),), frontier={p: 6}))
    assert [decode(topics, i) for i in _ids(live)] == [{p: 6}]     # the new leader's record


def test_a_resume_from_inside_a_cut_is_sent_back_to_the_cut():
    """An id between the cut and the position it was cut under names records that are gone:
    resumed from there, the new leader's records before it were never shown (a review)."""
    from actors.messages import Close
    from actors.resume import decode
    topics, p = ("blog.posts",), ("blog.posts", 0)
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    broker.on_receive(Consumed((), frontier={p: 8}))
    _log_cut(broker, p)
    opened = {}
    for client_id, known in (("in", {p: 7}), ("at", {p: 5}), ("under", {p: 3})):
        ref = FakeRef()
        info = ClientInfo(client_id, "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
        broker.on_receive(Subscribe(info, Outbox(100), ref, known, True))
        opened[client_id] = ref
    assert set(broker.subscribers) == {"at", "under"}
    _log_cut(broker, p, at=28, under=38)                # cut again: the first is not forgotten
    for client_id, known in (("first", {p: 7}), ("second", {p: 30}), ("between", {p: 20})):
        ref = FakeRef()
        info = ClientInfo(client_id, "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
        broker.on_receive(Subscribe(info, Outbox(100), ref, known, True))
        opened[client_id] = ref
    assert set(broker.subscribers) == {"between"}     # the others were replaying: ended
    for client_id, cut in (("first", 5), ("second", 28)):
        [again] = opened[client_id].of(Close)
        assert f"the log was cut at {cut})" in again.reason
    [close] = opened["in"].of(Close)
    assert close.reason.startswith("resumed inside what Kafka cut from blog.posts:0 (its id "
                                   "says offset 7, the log was cut at 5)")
    [gap] = [f for f in parse_stream(close.final) if f.get("event") == "gap"]
    assert decode(topics, gap["id"]) == {p: 5}
    assert json.loads(gap["data"])["partitions"] == [
        {"topic": "blog.posts", "partition": 0, "requested_offset": 7, "resumed_offset": 5,
         "reason": "truncated"}]


def test_a_stream_that_saw_a_partition_this_instance_does_not_list_keeps_it_in_its_ids():
    """Its other instance read blog.posts:1 (just added, or its leader down when this one
    started). Taken for level with this instance, the stream went live and its ids dropped the
    partition: the next reconnect read it again from its beginning."""
    from actors.resume import decode
    topics = ("blog.posts",)
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    broker.on_receive(Consumed((), frontier={p0: 3}))
    outbox = _behind(broker, {p0: 3, p1: 500})
    broker.on_receive(Consumed((make_event(offset=3),), frontier={p0: 4}))
    [event] = parse_stream(outbox.take(0)[0])
    assert decode(topics, event["id"]) == {p0: 4, p1: 500}


def test_the_gap_of_a_stream_that_saw_a_partition_this_instance_does_not_list_keeps_it():
    from actors.messages import Skip
    from actors.resume import decode
    topics = ("blog.posts",)
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    p0, p1 = ("blog.posts", 0), ("blog.posts", 1)
    broker.on_receive(Consumed((), frontier={p0: 5}))
    outbox = _behind(broker, {p0: 5, p1: 500})
    broker.on_receive(Consumed((), frontier={p0: 8}, skips=(Skip("retention", p0, 5, 8),)))
    [gap] = parse_stream(outbox.take(0)[0])
    assert gap["event"] == "gap" and decode(topics, gap["id"]) == {p0: 8, p1: 500}


def test_a_stream_whose_replay_holds_more_live_bytes_than_its_outbox_may_is_cut_as_slow():
    """While a stream replays, the live events it wants are held for after the replay; a
    client reading slowly pauses its replay, so without a bound they piled up without end.
    Held past the outbox's byte budget (what a live stream may keep waiting), it is cut like
    a slow live client, and resumes from its last id."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    broker.on_receive(Consumed((make_event(offset=0),), frontier={("blog.posts", 0): 1}))
    outbox, ref = Outbox(10, max_bytes=4000), FakeRef()
    info = ClientInfo("r", "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, None, True))
    assert broker.subscribers["r"].subscription.phase.value == "replaying"
    size = len(make_event(offset=1).named)      # the framing the stream asked for
    offset = 1
    while offset * size <= 4000:
        broker.on_receive(Consumed((make_event(offset=offset),),
                                   frontier={("blog.posts", 0): offset + 1}))
        assert "r" in broker.subscribers
        offset += 1
    broker.on_receive(Consumed((make_event(offset=offset),),
                               frontier={("blog.posts", 0): offset + 1}))
    assert "r" not in broker.subscribers and ref.of(Close) == [Close(SLOW_CLIENT)]
    assert broker.figures.slow_disconnects == 1


def test_a_stream_whose_replay_could_not_read_a_partition_keeps_its_place_there():
    """The replay read P0 but not P1 (its leader down or out of reach): the stream goes on
    with P0's live events, under ids that keep P1 where the client was (3, not this
    instance's 10: those 7 records were never shown), the heartbeat does not move it there
    either, and once P1 is read again the stream ends so that its reconnect reads them."""
    from actors.broker import READABLE_AGAIN
    from actors.resume import decode
    topics, p0, p1 = ("blog.posts",), ("blog.posts", 0), ("blog.posts", 1)
    replay = FakeRef()
    broker = BrokerActor(history=FakeRef(), kafka_reader=replay, warm_start=False, topics=topics)
    frontier = Frontier(topics, {p0: 10, p1: 10})
    broker.on_receive(Consumed((), frontier=dict(frontier.offsets)))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {p0: 7, p1: 3}, True, 0))
    [request] = replay.of(ReadRange)
    broker.on_receive(Replayed("c", (), True, short={p1: 3}))
    outbox.take(0)

    def live(partition, offset):
        batch = events_from_records([make_record(partition=partition, offset=offset)], frontier)
        return Consumed(tuple(batch.events), frontier=dict(frontier.offsets))

    broker.on_receive(live(0, 10))
    [event] = parse_stream(outbox.take(0)[0])
    assert decode(topics, event["id"]) == {p0: 11, p1: 3}
    broker.on_receive(SendHeartbeats())
    assert all(decode(topics, e["id"])[p1] == 3 for e in parse_stream(outbox.take(0)[0])
               if e.get("id"))
    broker.on_receive(live(1, 10))
    assert ref.of(Close) == [Close(READABLE_AGAIN.format("blog.posts", 1))]
    assert outbox.take(0)[0] == b"" and "c" not in broker.subscribers


def test_a_stream_whose_replay_left_out_an_idle_partition_ends_once_kafka_says_it_is_read():
    """P1's leader went away while the replay read it (a 3-broker cluster, its leader killed):
    the stream went on without P1's records from 3 to 10, which the live side had read before.
    Kafka elected a new leader and the live side read P1 again, but no record of P1 came (an
    idle partition, or a quiet key), so nothing ended the stream: it lacked those records as
    long as it stayed (2.5 minutes in the experiment, 8,200 of 30,000 events). Now it ends
    once Kafka's state says P1 is read again (and not while it says P1 is not), at the latest
    at the next heartbeat."""
    from actors.broker import READABLE_AGAIN
    topics, p0, p1 = ("blog.posts",), ("blog.posts", 0), ("blog.posts", 1)
    broker = BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), warm_start=False,
                         topics=topics)
    broker.on_receive(Consumed((), frontier={p0: 10, p1: 10}))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {p0: 7, p1: 3}, True, 0))
    broker.on_receive(KafkaStateChanged("connected", (p0, p1), "P1 not read", unread=(p1,)))
    broker.on_receive(Replayed("c", (), True, short={p1: 3}))
    broker.on_receive(SendHeartbeats())
    assert ref.of(Close) == [] and "c" in broker.subscribers      # P1 is not read: it waits
    broker.on_receive(KafkaStateChanged("connected", (p0, p1)))    # a new leader: read again
    assert ref.of(Close) == [Close(READABLE_AGAIN.format("blog.posts", 1))]
    assert "c" not in broker.subscribers


def test_a_stream_whose_replay_left_out_a_partition_kafka_never_said_unread_ends_at_a_heartbeat():
    """The live side read P1 all along (it never noticed what the replay met), so no change of
    Kafka's state will come: the next heartbeat ends the stream."""
    from actors.broker import READABLE_AGAIN
    topics, p0, p1 = ("blog.posts",), ("blog.posts", 0), ("blog.posts", 1)
    broker = BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), warm_start=False,
                         topics=topics)
    broker.on_receive(KafkaStateChanged("connected", (p0, p1)))
    broker.on_receive(Consumed((), frontier={p0: 10, p1: 10}))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {p0: 7, p1: 3}, True, 0))
    broker.on_receive(Replayed("c", (), True, short={p1: 3}))
    assert ref.of(Close) == [] and "c" in broker.subscribers
    broker.on_receive(SendHeartbeats())
    assert ref.of(Close) == [Close(READABLE_AGAIN.format("blog.posts", 1))]


def test_a_stream_whose_replay_missed_a_partition_the_live_side_read_meanwhile_ends():
    from actors.broker import READABLE_AGAIN
    topics, p0, p1 = ("blog.posts",), ("blog.posts", 0), ("blog.posts", 1)
    broker = BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), warm_start=False,
                         topics=topics)
    frontier = Frontier(topics, {p0: 10, p1: 10})
    broker.on_receive(Consumed((), frontier=dict(frontier.offsets)))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {p0: 7, p1: 3}, True, 0))
    held = events_from_records([make_record(partition=1, offset=10)], frontier).events
    broker.on_receive(Consumed(tuple(held), frontier=dict(frontier.offsets)))
    broker.on_receive(Replayed("c", (), True, short={p1: 3}))
    assert ref.of(Close) == [Close(READABLE_AGAIN.format("blog.posts", 1))]
    assert "c" not in broker.subscribers


@pytest.mark.parametrize("with_history", [False, True])
def test_a_partition_this_instance_starts_reading_past_a_resumed_streams_place_ends_it(
        with_history):
    """P1's leader was out of reach when this instance started, so it reads P1 from its end
    (8) once it can. A stream resumed from an id that had seen P1 up to 3 waited behind (or
    was replaying) and then got P1's events from 8 under ids saying 9: a reconnect never
    showed 3 to 7. Now it ends when P1 starts past its place; its reconnect reads them."""
    from actors.broker import READABLE_AGAIN
    topics, p0, p1 = ("blog.posts",), ("blog.posts", 0), ("blog.posts", 1)
    broker = BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), warm_start=False,
                         topics=topics)
    broker.on_receive(Consumed((), frontier={p0: 10}))
    outbox, ref = Outbox(100), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, {p0: 10, p1: 3}, with_history))
    other = _resume(broker, "level", {p0: 10, p1: 8})
    broker.on_receive(Consumed((), frontier={p0: 10, p1: 8}, starts={p1: 8}))
    assert ref.of(Close) == [Close(READABLE_AGAIN.format("blog.posts", 1))]
    assert "c" not in broker.subscribers and "level" in broker.subscribers
    assert other.closed_reason is None


def test_a_failure_with_one_stream_ends_that_stream_alone(monkeypatch, caplog):
    """A bug that one stream's filter, id or replay meets in the broker's handler (told:
    pykka stops the actor) ended every stream of the worker and retired it; the client,
    reconnecting with the same id, then took the next worker down the same way. Now that
    stream alone ends (the traceback logged once), and the broker serves the others."""
    from actors.subscription import Subscription
    broker, _ = _broker()
    good, _ = _join(broker, "good")
    begin, replayed = Subscription.begin, Subscription.replayed

    def failing_begin(self, *args, **kwargs):
        if self.filter == Filter.parse("bad.*", None):
            raise RuntimeError("a bug this filter meets")
        return begin(self, *args, **kwargs)

    def failing_replayed(self, *args, **kwargs):
        raise RuntimeError("a bug this replay meets")
    monkeypatch.setattr(Subscription, "begin", failing_begin)
    bad, bad_ref = _join(broker, "bad", "bad.*")
    _, replaying_ref = _join(broker, "replaying", with_history=True)
    monkeypatch.setattr(Subscription, "replayed", failing_replayed)
    broker.on_receive(Replayed("replaying", (), True))
    monkeypatch.setattr(Subscription, "replayed", replayed)
    for ref in (bad_ref, replaying_ref):
        [close] = ref.of(Close)
        assert "internal error" in close.reason and "Traceback" not in close.reason
    assert sorted(broker.subscribers) == ["good"]
    assert broker.on_receive(GetStats()).clients == 1
    good.take(0)                                   # its opening id
    broker.on_receive(Consumed((POST,)))
    assert _ids(good) == [POST.sse_id]
    assert len([r for r in caplog.records if r.exc_info]) == 2


def test_unnamed_streams_tell_the_gateways_gap_from_an_event_typed_gap():
    """README: an event typed like the gateway's own (`gap`) is named so on a named stream;
    with unnamed=1 only the gateway's own events keep a name."""
    import json

    from actors.messages import Skip
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    named, _ = _join(broker, "named", "*")
    plain, _ = _join(broker, "plain", "*", named=False)
    for outbox in (named, plain):
        outbox.take(0)                              # the opening position
    theirs = make_event("gap", "ops-service", offset=7)
    skip = Skip("retention", ("blog.posts", 0), 2, 7)
    broker.on_receive(Consumed((theirs,), frontier={("blog.posts", 0): 8}, skips=(skip,)))
    seen = {name: [(e["event"], "source" in json.loads(e["data"]))
                   for e in parse_stream(outbox.take(0)[0])]
            for name, outbox in (("named", named), ("plain", plain))}
    assert seen == {"named": [("gap", False), ("gap", True)],
                    "plain": [("gap", False), ("message", True)]}


def test_an_idle_stream_opened_with_its_history_is_not_sent_its_opening_id_again():
    """Nothing in the ring: the history's opening id is the live position. The first heartbeat
    sent it again, an id-only block that httpx-sse and fetch-event-source hand over as one more
    empty message (an e2e test with real Kafka found it)."""
    from actors.history import HistoryActor
    history = HistoryActor(size=2, topics=TOPICS)
    history.on_receive(Remember((), {("blog.posts", 0): 7}))
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 7}, {("blog.posts", 0): 7}))
    outbox, _ = _join(broker, "c", with_history=True)
    broker.on_receive(_history_reply(history, None))
    opening = outbox.take(0)[0]
    assert opening == _position({("blog.posts", 0): 7})
    assert _beat(broker, outbox)[2] == b": heartbeat\n"


# -- a stream resumed past a partition's end -------------------------------------------------
def _past_the_end(state="connected"):
    """This instance read blog.posts:0 up to 5 and link.clicks:0 up to 3; a stream resumes with
    an id that says it saw blog.posts:0 up to 900 (a log truncated by an unclean leader
    election, or an id forged or issued for another cluster)."""
    topics = ("blog.posts", "link.clicks")
    clock = Clock()
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics, monotonic=clock)
    blog, link = ("blog.posts", 0), ("link.clicks", 0)
    broker.on_receive(KafkaStateChanged(state, partitions=(blog, link)))
    broker.on_receive(Consumed((), frontier={blog: 5, link: 3}))
    outbox = _behind(broker, {blog: 900, link: 2})
    ref = broker.subscribers["b"].client
    return broker, clock, outbox, ref, topics, blog, link


def test_a_stream_resumed_past_a_partitions_end_is_sent_the_end_as_its_place_and_reconnects():
    """Kafka 4 of the audit: such a stream dropped every later record of that partition, in
    silence, until Kafka's offsets passed 900. Once Kafka's end has stayed below its place
    for PAST_END_SECONDS of reports, it is sent an id at the end there (and its own place
    elsewhere) and closed: its reconnect reads on from the end."""
    from actors.log_edges import PAST_END_SECONDS
    from actors.messages import KafkaLag
    from actors.resume import decode
    broker, clock, outbox, ref, topics, blog, link = _past_the_end()
    made = Frontier(topics, {blog: 5, link: 3})                # as this instance's consumer
    click = events_from_records([make_record("link.clicked", "link-service", "link.clicks", 0,
                                             3)], made).events
    broker.on_receive(Consumed(tuple(click), frontier={blog: 5, link: 4}))
    assert len(parse_stream(outbox.take(0)[0])) == 1           # the other partition flows
    broker.on_receive(KafkaLag({blog: 0, link: 0}, ends={blog: 5, link: 4}))
    clock.now = PAST_END_SECONDS - 1
    broker.on_receive(KafkaLag({blog: 0, link: 0}, ends={blog: 5, link: 4}))
    assert not ref.of(Close)                                   # not yet: it may be a moment
    clock.now = PAST_END_SECONDS
    broker.on_receive(KafkaLag({blog: 0, link: 0}, ends={blog: 5, link: 4}))
    [close] = ref.of(Close)
    assert "blog.posts:0" in close.reason and "900" in close.reason and "5" in close.reason
    block, comment = close.final.decode().split("\n\n", 1)     # a `gap` event, then the
    [gap] = parse_stream((block + "\n\n").encode())              # reason, as any close
    assert gap["event"] == "gap" and decode(topics, gap["id"]) == {blog: 5, link: 4}
    assert json.loads(gap["data"]) == {"reason": "truncated", "partitions": [
        {"topic": "blog.posts", "partition": 0, "requested_offset": 900, "resumed_offset": 5,
         "reason": "truncated"}]}
    assert comment == f": closing: {close.reason}\n"
    assert "b" not in broker.subscribers


@pytest.mark.parametrize("case", ["caught up", "not connected", "end unknown"])
def test_a_stream_ahead_of_this_instance_but_not_of_kafka_is_left_to_catch_up(case):
    """A stream from an instance that had read further is not past the end: Kafka's end is at
    or past its place (this instance is behind), or there is no fresh end to judge by."""
    from actors.log_edges import PAST_END_SECONDS
    from actors.messages import KafkaLag
    broker, clock, _outbox, ref, _topics, blog, link = _past_the_end(
        "unreachable" if case == "not connected" else "connected")
    ends = {"caught up": {blog: 900, link: 3}, "not connected": {blog: 5, link: 3},
            "end unknown": {link: 3}}[case]
    for clock.now in (0, PAST_END_SECONDS, 2 * PAST_END_SECONDS):
        broker.on_receive(KafkaLag({}, ends=ends))
    assert not ref.of(Close) and "b" in broker.subscribers


def test_a_new_reason_within_an_outage_is_logged_once(caplog):
    """A password changed at the broker, then a broker restart: 'connected -> unreachable:
    lost the connection' was the only line; that the login was then refused showed in
    /health alone, as the state stayed `unreachable` (a Kafka TLS/SASL audit)."""
    import logging
    broker, _ = _broker()
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        broker.on_receive(KafkaStateChanged("connecting", detail="bootstrap k:9092"))  # no line
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
        for detail in ("lost the connection; reconnecting", "authentication failed (PLAIN): "
                       "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD; reconnecting",
                       "lost the connection; reconnecting", "authentication failed (PLAIN): "
                       "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD; reconnecting"):
            broker.on_receive(KafkaStateChanged("unreachable", detail=detail))
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
        broker.on_receive(KafkaStateChanged("unreachable", detail="lost the connection; "
                                            "reconnecting"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kafka ")]
    assert [line.partition(":")[0] for line in lines] == [
        "kafka connecting -> connected", "kafka connected -> unreachable",
        "kafka still unreachable", "kafka unreachable -> connected (0 s after it was lost)",
        "kafka connected -> unreachable"], lines
    assert "KAFKA_SASL_PASSWORD" in lines[2]


def test_events_whose_owner_names_no_subject_are_counted_and_said_once_a_minute(caplog):
    """A producer's schema change (an owner id of 42.0, or {"value": "alice"}) made every
    private event go to no stream, and nothing said so: /stats counted them only among the
    events consumed (a payload audit)."""
    import logging

    from actors.auth.subjects import NOBODY
    now = [100.0]
    broker = BrokerActor(history=FakeRef(), warm_start=False, monotonic=lambda: now[0])
    owned = [make_event(offset=1)._replace(owner="alice"),
             make_event(offset=2)._replace(owner=NOBODY),
             make_event(offset=3)._replace(owner=NOBODY), make_event(offset=4)]
    with caplog.at_level(logging.WARNING, logger="actors.broker"):
        broker.on_receive(Consumed(tuple(owned[:3])))
        now[0] += 30
        broker.on_receive(Consumed((owned[3], make_event(offset=5)._replace(owner=NOBODY))))
        now[0] += 31
        broker.on_receive(Consumed((make_event(offset=6)._replace(owner=NOBODY),)))
    said = [r.getMessage() for r in caplog.records if "reached no stream" in r.getMessage()]
    assert len(said) == 2, said
    assert said[0].startswith("2 event(s) reached no stream, the latest at blog.posts:0:3")
    assert said[1].startswith("2 event(s) reached no stream, the latest at blog.posts:0:6")
    assert "AUTH_SUBJECT_FIELD" in said[0]
    stats = broker.on_receive(GetStats())
    assert stats.unowned_events == 4 and stats.to_json()["unowned_events"] == 4


def test_the_end_of_a_kafka_outage_is_said_at_the_outage_s_level(caplog):
    """LOG_LEVEL=WARNING showed 'connected -> unreachable' and never that Kafka was back (an
    operations audit): the first connection is INFO, a recovery WARNING like the outage."""
    import logging
    broker, _ = _broker()
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
        broker.on_receive(KafkaStateChanged("unreachable", detail="lost the connection"))
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
    levels = [r.levelname for r in caplog.records if r.getMessage().startswith("kafka ")]
    assert levels == ["INFO", "WARNING", "WARNING"]


@pytest.mark.parametrize("problem", ["unreachable", "unauthorized"])
def test_a_kafka_first_reached_after_a_warning_is_said_at_its_level(caplog, problem):
    """Kafka unreachable at the start was a WARNING, and reaching it at last an INFO: with
    LOG_LEVEL=WARNING the log said unreachable while /health said connected (a log audit)."""
    import logging
    broker, _ = _broker()
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        broker.on_receive(KafkaStateChanged(problem, detail="no broker of k:9092 answers"))
        broker.on_receive(KafkaStateChanged("connected", (("blog.posts", 0),)))
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.getMessage().startswith("kafka ")]
    assert said[-1] == ("WARNING", f"kafka {problem} -> connected"), said


# -- from a mutation audit: slow private and catching-up streams, private framing, readiness --
def _subject_stream(broker, client_id, subject, named=True, max_bytes=None, known=None):
    outbox, ref = Outbox(100, max_bytes=max_bytes), FakeRef()
    info = ClientInfo(client_id, "10.0.0.1", "test", Filter.parse(None, None), named, 0.0,
                      subject=subject)
    broker.on_receive(Subscribe(info, outbox, ref, known, False))
    outbox.take(0)                                  # its opening id, written
    return outbox, ref


def test_a_subjects_stream_whose_socket_takes_nothing_is_cut_when_its_private_events_come():
    """alice's socket took none of her first private event, and the next did not fit her
    buffer: her stream must end as slow (its reconnect resumes from its last id), not stay
    open and silently miss her events."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    first, second = (make_event(offset=o)._replace(owner="alice") for o in (0, 1))
    outbox, ref = _subject_stream(broker, "a", "alice", max_bytes=len(first.named) + 10)
    broker.on_receive(Consumed((first,), frontier={("blog.posts", 0): 1}))
    assert ref.of(Close) == []
    broker.on_receive(Consumed((second,), frontier={("blog.posts", 0): 2}))   # nothing written
    assert ref.of(Close) == [Close(SLOW_CLIENT)] and "a" not in broker.subscribers
    assert broker.on_receive(GetStats()).slow_disconnects == 1


def test_a_stream_catching_up_with_this_instance_whose_socket_takes_nothing_is_cut():
    """A stream resumed from an instance that had read further in blog.posts gets link.clicks'
    events as they come. Its socket took none of the first, and the next did not fit its
    buffer: it must end as slow, not stay open without them."""
    topics = ("blog.posts", "link.clicks")
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=topics)
    blog, link = ("blog.posts", 0), ("link.clicks", 0)
    broker.on_receive(Consumed((), frontier={blog: 5, link: 3}))
    first, second = (make_event(topic="link.clicks", offset=o) for o in (3, 4))
    outbox, ref = _subject_stream(broker, "b", None, max_bytes=len(first.named) + 10,
                                  known={blog: 9, link: 3})
    assert broker.subscribers["b"].subscription.phase.value == "behind"
    broker.on_receive(Consumed((first,), frontier={blog: 5, link: 4}))
    assert ref.of(Close) == [] and outbox.queued == 1
    broker.on_receive(Consumed((second,), frontier={blog: 5, link: 5}))   # nothing written
    assert ref.of(Close) == [Close(SLOW_CLIENT)] and "b" not in broker.subscribers


def test_a_single_private_event_reaches_an_unnamed_stream_without_an_event_line():
    """?unnamed streams are read with onmessage, which never sees a named event: alice's one
    private event of a batch must come as a plain `message` too."""
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    outbox, _ = _subject_stream(broker, "a", "alice", named=False)
    mine = make_event(offset=0)._replace(owner="alice")
    broker.on_receive(Consumed((mine,), frontier={("blog.posts", 0): 1}))
    data = outbox.take(0)[0]
    [event] = parse_stream(data)
    assert not data.startswith(b"event:") and event["event"] == "message"
    assert event["id"] == mine.sse_id


def test_a_broker_is_not_ready_until_its_warm_start_is_done():
    """/readyz: an instance still filling its history would hold new streams and replays;
    a load balancer must not send it clients before the warm start ends."""
    broker, _ = _broker(warm_start=True)
    assert broker.on_receive(GetHealth()).warm is False
    broker.on_receive(Consumed((), (), {("blog.posts", 0): 4}, {("blog.posts", 0): 4}, warm=True))
    assert broker.on_receive(GetHealth()).warm is True


def test_a_stream_whose_subscribe_fails_before_it_is_registered_is_still_ended(monkeypatch,
                                                                              caplog):
    """A bug met while the broker makes a stream's subscriber (before it is registered) would
    leave that stream open and silent for ever: its client is told to end it anyway."""
    from actors import broker as broker_module
    broker, _ = _broker()

    def failing(message):
        raise RuntimeError("a bug this stream meets")
    monkeypatch.setattr(broker_module, "_Subscriber", failing)
    _, ref = _join(broker, "doomed")
    [close] = ref.of(Close)
    assert close.reason == broker_module.STREAM_FAILED and "doomed" not in broker.subscribers


def test_a_live_stream_behind_on_its_socket_is_still_told_of_records_lost():
    """The gap event is the stream's only word that Kafka lost records before it could read
    them: offered like an event to a stream whose socket lags, it was dropped, and its client
    could never learn of the loss."""
    from actors.messages import Skip
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=("blog.posts",))
    outbox, ref = Outbox(100, max_bytes=600), FakeRef()
    info = ClientInfo("lagging", "10.0.0.1", "test", Filter.parse(None, None), True, 0.0)
    broker.on_receive(Subscribe(info, outbox, ref, None, False))
    outbox.offer(b": " + b"x" * 580 + b"\n\n", 1, None)  # what its socket has not taken yet
    assert outbox.lagging(0.0, more_bytes=100)      # an event's chunk would now be refused
    skip = Skip("retention", ("blog.posts", 0), 2, 7)
    broker.on_receive(Consumed((), frontier={("blog.posts", 0): 7}, skips=(skip,)))
    frames = parse_stream(outbox.take(0)[0])
    assert frames[-1]["event"] == "gap"
