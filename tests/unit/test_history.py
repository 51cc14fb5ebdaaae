from actors.filters import Filter
from actors.history import HistoryActor
from actors.messages import GetHistorySize, Remember, Replay, Replayed
from tests.fakes import FakeRef, make_event


def _history(size=5, count=8):
    history = HistoryActor(size=size)
    events = tuple(make_event(offset=i, type_="blog.post.created" if i % 2 else "link.clicked")
                   for i in range(count))
    history.on_receive(Remember(events))
    return history, events


def test_ring_keeps_only_the_last_events():
    history, events = _history()
    assert list(history.events) == list(events[-5:])
    assert history.on_receive(GetHistorySize()) == 5


def test_replay_after_a_held_position_is_exact_and_filtered():
    history, events = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter.parse("blog.*"), events[4].position, reply))
    [replayed] = reply.of(Replayed)
    assert replayed.found and replayed.client_id == "c1"
    assert replayed.events == (events[5], events[7])


def test_replay_without_position_sends_all_matching():
    history, events = _history()
    reply = FakeRef()
    history.on_receive(Replay("c1", Filter(), None, reply))
    assert reply.mailbox[0].events == events[-5:]


def test_unknown_position_skips_what_the_client_saw_in_that_partition():
    history, events = _history()
    reply = FakeRef()
    gone = events[1].position  # evicted already
    history.on_receive(Replay("c1", Filter(), gone, reply))
    assert not reply.mailbox[0].found
    assert reply.mailbox[0].events == events[-5:]
    newer = type(gone)("blog.posts", 0, 100)  # e.g. from before a restart
    history.on_receive(Replay("c2", Filter(), newer, reply))
    assert reply.mailbox[1].events == ()
