import pytest

from actors.filters import Filter
from actors.resume import Frontier, decode
from actors.subscription import HeldGap, Phase, Subscription
from tests.fakes import make_event, make_record

P0 = ("blog.posts", 0)


def _events(*offsets, type_="blog.post.created"):
    return [make_event(type_, offset=o) for o in offsets]


def _offsets(events):
    return [e.position.offset for e in events]


# -- the rules: what a client has seen -------------------------------------------------------
def test_a_new_client_has_seen_nothing():
    new = Subscription(Filter())
    assert all(new.unseen(e) for e in _events(0, 5)) and new.resume_from == {}


def test_an_event_before_the_known_frontier_was_seen_and_one_at_it_was_not():
    resumed = Subscription(Filter(), {P0: 5})
    assert [resumed.unseen(e) for e in _events(4, 5, 6)] == [False, True, True]
    assert resumed.unseen(make_event(topic="link.clicks", offset=0))   # a partition it never saw


def test_a_resume_whose_ids_this_instance_covers_keeps_its_events_as_they_are():
    resumed = Subscription(Filter(), {P0: 5})
    events = tuple(_events(5, 6))
    assert resumed.own_ids(events, ("blog.posts",)) is events     # shared frames, no re-framing
    assert resumed.floor is None and resumed.ids is None
    later = tuple(_events(7))
    assert resumed.own_ids(later, ("blog.posts",)) is later


def test_fresh_keeps_the_unseen_events_its_filter_wants():
    sub = Subscription(Filter.parse("blog.*", None), {P0: 2})
    batch = _events(1, 2) + _events(3, type_="link.clicked")
    assert _offsets(sub.fresh(batch)) == [2]


def test_an_instance_lags_in_any_partition_the_client_saw_further():
    p1 = ("blog.posts", 1)
    sub = Subscription(Filter(), {P0: 5, p1: 9})
    assert sub.lags({P0: 4, p1: 9}) and not sub.lags({P0: 5, p1: 9})
    assert sub.lags({P0: 5})            # p1 not read here yet: at its beginning, behind 9
    assert not Subscription(Filter(), {P0: 5, p1: 0}).lags({P0: 5})
    assert not Subscription(Filter()).lags({P0: 0})


def test_a_recreated_topic_leaves_the_known_frontier():
    sub = Subscription(Filter(), {P0: 20, ("link.clicks", 0): 2})
    sub.forget_topics({"blog.posts"})
    assert sub.known == {("link.clicks", 0): 2} and sub.unseen(make_event(offset=0))
    new = Subscription(Filter())
    new.forget_topics({"blog.posts"})
    assert new.known is None


# -- the phases, step by step ---------------------------------------------------------------
def test_a_client_without_history_goes_straight_live():
    sub = Subscription(Filter(), with_history=False)
    assert not sub.replays
    assert sub.begin({P0: 3}, warming=False) is Phase.LIVE and sub.phase is Phase.LIVE


def test_during_the_warm_start_every_client_is_held_then_replays_up_to_where_it_ended():
    sub = Subscription(Filter(), {P0: 1})
    assert sub.begin({}, warming=True) is Phase.HELD
    assert sub.warmed({P0: 9}) is Phase.REPLAYING and sub.until == {P0: 9}


def test_a_held_client_without_history_goes_live_when_the_warm_start_ends():
    sub = Subscription(Filter(), with_history=False)
    sub.begin({}, warming=True)
    assert sub.warmed({P0: 9}) is Phase.LIVE


def test_a_since_client_replays_even_without_history():
    sub = Subscription(Filter(), with_history=False, since_ms=1234)
    assert sub.replays and sub.begin({P0: 3}, warming=False) is Phase.REPLAYING
    assert sub.until == {P0: 3}


def test_a_replay_hands_over_to_live_without_gap_or_duplicate():
    sub = Subscription(Filter.parse("blog.*", None), {P0: 1})
    sub.begin({P0: 3}, warming=False)                       # the replay reads up to 3
    sub.hold(_events(3) + _events(4, type_="link.clicked"))  # live meanwhile: only its filter's
    sub.hold(_events(5))
    replay, live = sub.replayed(_events(0, 1, 2), {P0: 6})
    assert _offsets(replay) == [1, 2] and _offsets(live) == [3, 5]
    assert sub.pending == [] and sub.phase is Phase.LIVE


def test_a_client_ahead_of_this_instance_is_behind_until_it_is_level():
    sub = Subscription(Filter(), {P0: 4})                   # it saw up to 3 elsewhere
    sub.begin({P0: 2}, warming=False)
    replay, live = sub.replayed([], {P0: 2})
    assert (replay, live, sub.phase) == ([], [], Phase.BEHIND)
    assert _offsets(sub.fresh(_events(2, 3, 4))) == [4]
    assert sub.caught_up({P0: 3}) is Phase.BEHIND
    assert sub.caught_up({P0: 5}) is Phase.LIVE


def test_a_resumed_client_without_a_replay_is_placed_at_once():
    sub = Subscription(Filter(), {P0: 4}, with_history=False)
    assert sub.begin({P0: 2}, warming=False) is Phase.BEHIND


@pytest.mark.parametrize("step", [
    lambda s: s.warmed({}), lambda s: s.hold([]), lambda s: s.replayed([], {}),
    lambda s: s.caught_up({}), lambda s: s.begin({}, False),
])
def test_a_step_out_of_order_is_refused(step):
    live = Subscription(Filter(), with_history=False)
    live.begin({}, warming=False)
    with pytest.raises(ValueError, match="phase Phase.LIVE"):
        step(live)


# -- visibility: an owned event is its subject's only ---------------------------------------
def _mixed():
    """Offsets 0..4: public, alice's, bob's, NOBODY's, public."""
    owners = [None, "alice", "bob", "", None]
    return [e._replace(owner=o)
            for e, o in zip(_events(*range(5)), owners, strict=True)]


def test_fresh_hold_and_replayed_show_a_subject_its_own_and_the_public_events():
    alice = Subscription(Filter(), subject="alice")
    assert _offsets(alice.fresh(_mixed())) == [0, 1, 4]
    alice.begin({P0: 0}, warming=False)
    alice.hold(_mixed())
    replay, live = alice.replayed(_mixed(), {P0: 5})
    assert _offsets(replay) == _offsets(live) == [0, 1, 4]


def test_an_anonymous_subscription_sees_only_public_events():
    for subject in (None, ""):
        anonymous = Subscription(Filter(), subject=subject)
        assert anonymous.subject is None
        assert _offsets(anonymous.fresh(_mixed())) == [0, 4]


def test_a_place_past_kafkas_end_is_named_only_where_it_can_be_judged():
    p0, p1, p2, p3 = (("t", n) for n in range(4))
    sub = Subscription(Filter.parse(None, None), {p0: 900, p1: 3, p2: 900, p3: 900},
                       with_history=False)
    sub.short = {p3: 900}                      # not read by its replay: judged elsewhere
    ends = {p0: 5, p1: 3, p2: 5, p3: 5}
    assert sub.past_the_end(ends, unread={p2}) == {p0: 5}   # p1: at the end, not past it
    assert sub.past_the_end({p0: 900}) == {}               # Kafka has it all: just behind
    assert Subscription(Filter.parse(None, None)).past_the_end(ends) == {}   # a new client
    assert sub.place() == {p0: 900, p1: 3, p2: 900, p3: 900}


# -- ids after a re-created topic and around a live gap (a mutation audit) -------------------
TWO = ("blog.posts", "link.clicks")
L0, P1 = ("link.clicks", 0), ("blog.posts", 1)


def _read(records, frontier):
    from actors.events import events_from_records
    return events_from_records(records, Frontier(TWO, frontier)).events


def test_ids_after_a_recreated_topic_say_its_new_offsets_not_the_old_ones():
    """A client from another instance had seen blog.posts:0 up to 20; this instance was at 3,
    so the stream got ids of its own, saying 20. blog.posts was then deleted and created again:
    after 3 events of the new topic, a reconnect with the last id skipped events 3 to 19."""
    sub = Subscription(Filter(), {P0: 20, L0: 5})
    before = sub.own_ids(_read([make_record(topic="link.clicks", offset=5)], {P0: 3}), TWO)
    assert decode(TWO, before[-1].sse_id)[P0] == 20
    sub.forget_topics({"blog.posts"})
    new = _read([make_record(offset=o) for o in (0, 1, 2)], {L0: 6})
    after = sub.own_ids(new, TWO)
    assert decode(TWO, after[-1].sse_id) == {P0: 3, L0: 6}


def _gap(at):
    return HeldGap(b"", Frontier(("blog.posts",), at).token(), (("retention", P0, 40, 45),), at)


def _replayed(sub, short):
    sub.begin({P0: 50, P1: 50}, warming=False)
    sub.replayed([], {P0: 50, P1: 50}, short=short)
    return sub


def test_a_gap_id_keeps_the_place_in_a_partition_the_replay_could_not_read():
    """A stream resumed at 30/30 whose replay could not read blog.posts:1 (its leader down) is
    told of a live gap: a reconnect with the gap's id would have skipped blog.posts:1's events
    30 to 49, never sent. Nor may a new `since` stream's id place it past what it never read."""
    resumed = _replayed(Subscription(Filter(), {P0: 30, P1: 30}), {P1: 30})
    gap = _gap({P0: 50, P1: 50})
    assert decode(("blog.posts",), resumed.gap_id(gap, ("blog.posts",))) == {P0: 50, P1: 30}
    since = _replayed(Subscription(Filter(), None, since_ms=1), {P1: 0})
    assert decode(("blog.posts",), since.gap_id(gap, ("blog.posts",))) == {P0: 50, P1: 0}


def test_a_gap_id_never_goes_back_from_the_ids_the_stream_was_sent():
    """A stream with ids of its own had been sent blog.posts:0 up to 59 (its id said 60); a
    live gap's id then said 50: a reconnect with it showed events 50 to 59 again."""
    sub = Subscription(Filter(), {P0: 30, P1: 30})
    sent = sub.own_ids(_events(58, 59), ("blog.posts",))
    assert decode(("blog.posts",), sent[-1].sse_id) == {P0: 60, P1: 30}
    token = sub.gap_id(_gap({P0: 50, P1: 50}), ("blog.posts",))
    assert decode(("blog.posts",), token) == {P0: 60, P1: 50}
