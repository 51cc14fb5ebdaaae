from hypothesis import given, settings, strategies as st

from actors import framing
from actors.filters import Filter
from actors.history import HistoryActor
from actors.messages import GetHistorySize, Remember, Replay, Replayed
from tests.fakes import FakeRef, make_event

P0 = ("blog.posts", 0)


def _history(size=5, count=8):
    history = HistoryActor(size=size)
    events = tuple(make_event(offset=i, type_="blog.post.created" if i % 2 else "link.clicked")
                   for i in range(count))
    history.on_receive(Remember(events, {P0: 0}))
    return history, events


def test_ring_keeps_only_the_last_events_and_knows_what_it_covers():
    history, events = _history()
    assert list(history.events) == list(events[-5:])
    assert history.covered == {P0: 3}
    assert history.on_receive(GetHistorySize()) == 5


def test_resume_inside_the_ring_is_exact_and_filtered():
    history, events = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter.parse("blog.*"), {P0: 5}, reply))
    [replayed] = reply.of(Replayed)
    assert replayed.found and replayed.client_id == "c1"
    assert replayed.events == (events[5], events[7])


def test_a_new_client_gets_all_matching():
    history, events = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), None, reply))
    assert reply.mailbox[0].events == events[-5:] and reply.mailbox[0].found


def test_a_resume_from_before_the_ring_is_not_found():
    history, _ = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), {P0: 2}, reply))
    assert reply.mailbox[0] == Replayed("c1", (), False)
    history.on_receive(Replay("c2", Filter(), {}, reply))   # covers nothing: from the beginning
    assert reply.mailbox[1].found is False


def test_a_resume_past_the_ring_gets_nothing_but_is_found():
    history, _ = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), {P0: 100, ("other", 0): 7}, reply))
    assert reply.mailbox[0] == Replayed("c1", (), True)


def test_what_the_ring_covers_never_moves_back_when_an_event_leaves():
    history = HistoryActor(size=2)      # a warm start that could not read offsets 3 and 4
    history.on_receive(Remember((make_event(offset=1), make_event(offset=2)), {P0: 5}))
    history.on_receive(Remember((make_event(offset=5),)))
    assert history.covered == {P0: 5} and not history.holds({P0: 3})


def test_a_recreated_topic_is_forgotten_and_covered_from_its_new_beginning():
    from actors.history import HistoryActor
    from tests.fakes import make_event
    history = HistoryActor(size=10)
    history.remember([make_event(offset=o) for o in range(18, 20)]
                     + [make_event(topic="link.clicks", offset=3)], {("blog.posts", 0): 18})
    history.remember([make_event(offset=0)], {("blog.posts", 0): 0}, ("blog.posts",))
    events, found = history.after({("blog.posts", 0): 0})
    assert found and [(e.position.topic, e.position.offset) for e in events] == [
        ("link.clicks", 3), ("blog.posts", 0)]


def _owned_history():
    """blog.posts:0 offsets 0..5 owned by: -, alice, bob, NOBODY, alice, -."""
    owners = [None, "alice", "bob", "", "alice", None]
    history = HistoryActor(size=10)
    events = tuple(make_event(offset=i)._replace(owner=o)
                   for i, o in enumerate(owners))
    history.on_receive(Remember(events, {P0: 0}))
    return history


def _replayed(history, subject, known=None, flt=None):
    reply = FakeRef()
    history.on_receive(Replay("c", flt or Filter(), known, reply, subject))
    [replayed] = reply.of(Replayed)
    assert replayed.found
    return [e.position.offset for e in replayed.events]


def test_the_history_replays_a_subject_its_own_and_the_public_events_only():
    history = _owned_history()
    assert _replayed(history, "alice") == [0, 1, 4, 5]
    assert _replayed(history, "bob") == [0, 2, 5]
    assert _replayed(history, None) == [0, 5]


def test_a_resume_from_the_history_never_shows_another_subjects_events():
    history = _owned_history()
    assert _replayed(history, "bob", known={P0: 1}) == [2, 5]
    assert _replayed(history, "alice", known={P0: 2}, flt=Filter.parse("link.*")) == []


def test_matching_events_are_kept_per_filter_and_subject_until_the_ring_changes():
    history = HistoryActor(size=10)
    owned = [make_event(offset=o)._replace(owner=(None, "alice", "bob", "alice")[o])
             for o in range(4)]       # offset 0 public, then alice, bob, alice
    history.remember(owned, {P0: 0})
    blog, everything = Filter.parse("blog.*"), Filter()
    alice = history.replay(blog, "alice", None)
    assert alice == ((owned[0], owned[1], owned[3]), True)
    assert history.replay(Filter.parse("blog.*"), "alice", None)[0] is alice[0]   # kept
    assert history.replay(blog, "bob", None)[0] == (owned[0], owned[2])       # not alice's
    assert history.replay(blog, None, None)[0] == (owned[0],)
    assert history.replay(everything, "alice", {P0: 2}) == ((owned[3],), True)
    history.remember([make_event(offset=4)])
    assert history.replay(blog, "alice", None)[0] == (owned[0], owned[1], owned[3],
                                                      history.events[-1])
    assert history.replay(everything, None, {P0: 4})[0] == (history.events[-1],)


def test_kept_matches_are_bounded(monkeypatch):
    from actors import history as history_module
    monkeypatch.setattr(history_module, "MATCHING_KEPT_EVENTS", 5)
    history = HistoryActor(size=10)
    history.remember([make_event(offset=o)._replace(owner="alice" if o == 3 else None)
                      for o in range(4)], {P0: 0})
    history.replay(Filter(), None, None)
    history.replay(Filter(), "alice", None)          # 7 > 5: the first is let go
    assert list(history._matching) == [(Filter(), "alice")] and history._kept == 4


def test_subjects_owning_nothing_in_the_ring_share_the_public_match():
    """A storm of authenticated reconnects (a subject each) selects from the ring once, not
    once per subject: only a subject owning some of the ring's events gets its own match."""
    history = HistoryActor(size=3)
    history.remember([make_event(offset=o)._replace(owner="alice" if o == 1 else None)
                      for o in range(3)], {P0: 0})
    public = history.replay(Filter(), None, None)[0]
    assert [e.position.offset for e in public] == [0, 2]
    assert all(history.replay(Filter(), f"user-{i}", None)[0] is public for i in range(300))
    assert history.replay(Filter(), "", None)[0] is public
    assert [e.position.offset for e in history.replay(Filter(), "alice", None)[0]] == [0, 1, 2]
    assert len(history._matching) == 2
    history.remember([make_event(offset=o) for o in (3, 4)])      # alice's event leaves the ring
    public = history.replay(Filter(), None, None)[0]
    assert history.replay(Filter(), "alice", None)[0] is public
    history.remember([make_event(offset=5)._replace(owner="bob")])
    assert [e.position.offset for e in history.replay(Filter(), "bob", None)[0]] == [3, 4, 5]
    history.remember([make_event(offset=0)], {P0: 0}, ("blog.posts",))   # re-created topic
    assert history.owners == {}


def test_a_resume_from_inside_what_the_live_side_skipped_goes_to_kafka():
    """Retention deleted offsets 8 to 11 before the live side read them: the ring must not
    serve a resume across that hole as if nothing was missing."""
    from actors.messages import Skip
    history, events = _history()                    # offsets 0..7, covers from 3
    history.on_receive(Remember((), skips=(Skip("retention", P0, 8, 12),)))
    history.on_receive(Remember((make_event(offset=12),)))
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), {P0: 9}, reply))
    [inside] = reply.of(Replayed)
    assert not inside.found                         # Kafka's replay reports the retention gap
    history.on_receive(Replay("c2", Filter(), {P0: 12}, reply))
    after = reply.of(Replayed)[-1]
    assert after.found and [e.position.offset for e in after.events] == [12]
    assert history.covered == {P0: 12}


def test_a_log_cut_under_the_position_loses_the_ring_only_what_lies_past_the_cut():
    """An unclean leader election cut the log at 5 under the live position 8: the records
    before 5 still are Kafka's, and the live side reads on from 5. A new client got less
    history than the ring could hold (a real election)."""
    from actors.messages import Skip
    history, _events = _history()                   # offsets 0..7, covers from 3
    history.on_receive(Remember((), skips=(Skip("truncated", P0, 8, 5),)))
    history.on_receive(Remember((make_event(offset=5),)))       # the new leader's
    reply = FakeRef()
    history.on_receive(Replay("c", Filter(), {P0: 4}, reply))
    [answer] = reply.of(Replayed)
    assert answer.found and [e.position.offset for e in answer.events] == [4, 5]
    assert history.covered == {P0: 3}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_ring_serves_a_resume_exactly_when_it_holds_all_of_it(data):
    """Model: events arrive interleaved across partitions (offsets with holes: markers,
    invalid records); the ring keeps the last `size`. A resume is served from memory exactly
    when no event at or past its position was evicted (nor lies before what the ring was
    given), and then with every ring event at or past it, in arrival order."""
    parts = [("blog.posts", 0), ("blog.posts", 1), ("link.clicks", 0)]
    starts = {p: data.draw(st.integers(0, 3)) for p in parts}
    offsets = {p: starts[p] for p in parts}
    arrivals = []
    for p in data.draw(st.lists(st.sampled_from(parts), max_size=25)):
        offsets[p] += data.draw(st.integers(0, 2))     # skipped: not events
        arrivals.append(make_event(topic=p[0], partition=p[1], offset=offsets[p]))
        offsets[p] += 1
    size = data.draw(st.integers(1, 12))
    history = HistoryActor(size=size, topics=("blog.posts", "link.clicks"))
    cut = data.draw(st.integers(0, len(arrivals)))
    history.on_receive(Remember(tuple(arrivals[:cut]), starts))
    history.on_receive(Remember(tuple(arrivals[cut:])))
    ring, evicted = arrivals[-size:], arrivals[:-size] if len(arrivals) > size else []
    known = {p: data.draw(st.integers(0, offsets[p] + 1)) for p in parts
             if data.draw(st.booleans())}

    def at(e):
        return known.get((e.position.topic, e.position.partition), 0)
    holds = (all(known.get(p, 0) >= starts[p] for p in parts)
             and all(e.position.offset < at(e) for e in evicted))
    events, found = history.replay(Filter(), None, known)
    assert found == holds
    if holds:
        assert list(events) == [e for e in ring if e.position.offset >= at(e)]


def test_a_topic_kafka_lists_no_more_leaves_the_history_new_streams_get():
    """A topic deleted while the gateway runs (say, to take back events published by
    mistake) was still replayed to every new stream from the history, until newer events
    pushed it out (on a quiet gateway: until a restart). The connected consumer's list of
    partitions losing the topic makes the history forget it, covered from the live position
    on (a resume from before reads Kafka, which says what the topic took)."""
    from actors.broker import BrokerActor
    from actors.messages import Consumed, KafkaStateChanged
    gone, kept = ("gone.topic", 0), ("kept.topic", 0)
    history, relay = HistoryActor(size=10, topics=("gone.topic", "kept.topic")), FakeRef()
    broker = BrokerActor(history=relay, kafka_reader=FakeRef(), warm_start=False,
                         topics=("gone.topic", "kept.topic"))
    events = tuple(make_event(topic=t, offset=i) for i in range(3) for t, _p in (gone, kept))
    broker.on_receive(Consumed(events, (), {gone: 3, kept: 3}, {gone: 0, kept: 0}))
    broker.on_receive(KafkaStateChanged("connected", (gone, kept)))
    broker.on_receive(KafkaStateChanged("unreachable", (kept,)))        # says nothing
    broker.on_receive(KafkaStateChanged("connected", (kept,)))
    for message in relay.of(Remember):
        history.on_receive(message)
    matching, found = history.replay(Filter(), None, None)
    assert found and [e.position.topic for e in matching] == ["kept.topic"] * 3
    assert history.covered[gone] == 3
    assert not history.holds({gone: 1, kept: 3})


def test_a_replay_that_fails_ends_that_stream_alone(caplog):
    """A bug one stream's filter or position meets in its replay stopped the history (a told
    message), and with it the worker: every stream of it ended, and the client reconnecting
    with the same id would take the next worker down too. Now the stream is disconnected
    with the reason, the traceback logged once, and the history serves the others."""
    from actors.messages import DisconnectClient

    class Broken(Filter):
        def matches(self, event_type, source):
            raise RuntimeError("a bug this filter meets")
    history, events = _history()
    reply = FakeRef()
    history.on_receive(Replay("bad", Broken(), None, reply))
    [disconnect] = reply.of(DisconnectClient)
    assert disconnect.client_id == "bad" and "replay failed" in disconnect.reason
    assert reply.of(Replayed) == []
    history.on_receive(Replay("good", Filter(), None, reply))
    [replayed] = reply.of(Replayed)
    assert replayed.client_id == "good" and replayed.events == events[-5:]
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_a_new_streams_starting_point_follows_what_the_ring_covers():
    """The id-only block before a new stream's history names where the ring begins, after
    every change of the ring: events leaving it, a gap, a recreated topic."""
    from actors.messages import Skip
    from actors.resume import Frontier
    history = HistoryActor(size=2, topics=("blog.posts",))

    def notice():
        reply = FakeRef()
        history.on_receive(Replay("c", Filter(), None, reply))
        return reply.mailbox[0].notice

    def position(offset):
        return framing.position(Frontier(("blog.posts",), {P0: offset}).token())

    history.on_receive(Remember((make_event(offset=0), make_event(offset=1)), {P0: 0}))
    assert notice() == notice() == position(0)
    history.on_receive(Remember((make_event(offset=2), make_event(offset=3))))
    assert notice() == position(2)
    history.on_receive(Remember((), skips=(Skip("retention", P0, 4, 9),)))
    assert notice() == position(9)
    history.on_receive(Remember((make_event(offset=0),), {P0: 0}, reset_topics={"blog.posts"}))
    assert notice() == position(0)


def test_a_replay_says_when_no_event_of_the_ring_has_an_owner():
    """Then the broker need not look for other subjects' events in it, event by event."""
    history = HistoryActor(size=3)
    history.remember([make_event(offset=o) for o in range(3)], {P0: 0})
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), None, reply, subject="alice"))
    assert reply.mailbox[-1].public is True
    history.remember([make_event(offset=3)._replace(owner="bob")])
    history.on_receive(Replay("c2", Filter.parse("link.*"), None, reply, subject="alice"))
    assert reply.mailbox[-1].public is False        # bob's event is in the ring
    history.remember([make_event(offset=o) for o in (4, 5, 6)])     # bob's has left it
    history.on_receive(Replay("c3", Filter(), None, reply))
    assert reply.mailbox[-1].public is True


def test_a_resumed_stream_gets_no_starting_point_before_its_events():
    """The id-only block naming where the ring begins goes to new streams alone. Sent to a
    resumed stream too, it moved the browser's last id back to the ring's beginning (until a
    next event): a reconnect meanwhile got the whole ring again, events it had already seen."""
    history = HistoryActor(size=5, topics=("blog.posts",))
    events = tuple(make_event(offset=i) for i in range(8))
    history.on_receive(Remember(events, {P0: 0}))
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), {P0: 6}, reply))
    [resumed] = reply.of(Replayed)
    assert resumed.found and resumed.events == events[6:] and resumed.notice == b""
    history.on_receive(Replay("c2", Filter(), {P0: 8}, reply))    # up to date
    assert reply.of(Replayed)[1].notice == b""
    history.on_receive(Replay("c3", Filter(), None, reply))      # a new stream gets it
    assert reply.of(Replayed)[2].notice != b""


def test_a_recreated_topic_is_forgotten_in_every_partition():
    """A topic deleted and created again: what the ring covered of the old topic goes in every
    partition, not only in those the new one has yet. Kept, a stream resuming in the new topic
    was refused by the ring and sent to Kafka, as if the ring had lost its events."""
    p1 = ("blog.posts", 1)
    history = HistoryActor(size=10, topics=("blog.posts",))
    history.remember([make_event(offset=50), make_event(partition=1, offset=70)],
                     {P0: 50, p1: 70})
    history.remember([make_event(offset=0), make_event(offset=1)], {P0: 0}, ("blog.posts",))
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), {P0: 1}, reply))
    [resumed] = reply.of(Replayed)
    assert resumed.found and [e.position.offset for e in resumed.events] == [1]
