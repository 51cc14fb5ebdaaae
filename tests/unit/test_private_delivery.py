"""Private events in the broker: an owned event reaches only its subject's streams, in every
phase (live, replaying, behind), each stream one chunk in the batch's order; DisconnectSubject
and ExpireStreams end a subject's or an expired credential's streams."""
import json

from actors import framing
from actors.auth.subjects import NOBODY
from actors.broker import AUTH_EXPIRED, BrokerActor
from actors.client import ClientActor
from actors.filters import Filter
from actors.messages import (
    CancelReplay, ClientInfo, Close, Consumed, DisconnectSubject, ExpireStreams, GetStats,
    ReadRange, Replay, Replayed, Subscribe, Unsubscribe,
)
from actors.outbox import Outbox
from actors.resume import decode
from actors.subscription import Phase
from tests.fakes import FakeRef, make_event
from tests.sse import parse_stream

TOPIC = "blog.posts"
P0 = (TOPIC, 0)


class Recording(Outbox):
    """An outbox that remembers each offer, to check that a stream got one chunk per batch."""

    def __init__(self, capacity=1000):
        super().__init__(capacity)
        self.offers: list[int] = []

    def offer(self, frames, count, last_id, force=False, oldest_ms=0, now=None):
        self.offers.append(count)
        return super().offer(frames, count, last_id, force, oldest_ms, now)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _event(offset, owner=None, type_="blog.post.created"):
    return make_event(type_, offset=offset)._replace(owner=owner)


def _broker(**kwargs):
    kwargs.setdefault("warm_start", False)
    return BrokerActor(history=FakeRef(), kafka_reader=FakeRef(), **kwargs)


def _join(broker, client_id, subject=None, types=None, named=True, with_history=False,
          known=None, expires_at=None):
    outbox, ref = Recording(), FakeRef()
    info = ClientInfo(client_id, "10.0.0.1", "test", Filter.parse(types, None), named, 0.0,
                      subject=subject, expires_at=expires_at)
    broker.on_receive(Subscribe(info, outbox, ref, known, with_history))
    return outbox, ref


def _taken(outbox):
    """(offset, data id) of each event the stream got, in order."""
    return [(decode((TOPIC,), e["id"])[P0] - 1, json.loads(e["data"])["id"])
            for e in parse_stream(outbox.take(0)[0]) if e["event"] != "gap"]


def _offsets(outbox):
    return [offset for offset, _ in _taken(outbox)]


# A batch of one partition, offsets 0..8: public (P), alice's (A), bob's (B), NOBODY's (N).
OWNERS = [None, "alice", "bob", None, "alice", NOBODY, "bob", None, "carol"]
BATCH = tuple(_event(o, owner) for o, owner in enumerate(OWNERS))
PUBLIC = [0, 3, 7]


def _consumed(events=BATCH):
    return Consumed(tuple(events), (), {P0: events[-1].position.offset + 1})


def test_each_subject_gets_its_own_and_the_public_events_in_batch_order_in_one_chunk():
    broker = _broker()
    alice, _ = _join(broker, "a1", "alice")
    alice_plain, _ = _join(broker, "a2", "alice", named=False)
    bob, _ = _join(broker, "b1", "bob")
    anonymous, _ = _join(broker, "anon")
    for box in (alice, alice_plain, bob, anonymous):
        box.take(0)                             # the opening position
        box.offers.clear()
    broker.on_receive(_consumed())
    assert _offsets(alice) == [0, 1, 3, 4, 7]
    assert _offsets(alice_plain) == [0, 1, 3, 4, 7]
    assert _offsets(bob) == [0, 2, 3, 6, 7]
    assert _offsets(anonymous) == PUBLIC
    assert alice.offers == alice_plain.offers == [5] and bob.offers == [5]
    assert anonymous.offers == [3]
    assert broker.on_receive(GetStats()).events_delivered == 5 + 5 + 5 + 3


def test_a_subject_stream_sharing_a_group_with_anonymous_ones_leaves_them_the_public_frames():
    broker = _broker()
    alice, _ = _join(broker, "a", "alice", types="blog.*")
    others = [_join(broker, f"o{i}", types="blog.*")[0] for i in range(3)]
    assert len(broker.live.groups) == 1
    broker.on_receive(_consumed())
    assert _offsets(alice) == [0, 1, 3, 4, 7]
    assert all(_offsets(box) == PUBLIC for box in others)


def test_a_subjects_own_events_still_pass_its_filter():
    broker = _broker()
    events = (_event(0, "alice", "link.clicked"), _event(1, "alice"), _event(2, None),
              _event(3, None, "link.clicked"))
    alice, _ = _join(broker, "a", "alice", types="link.*")
    broker.on_receive(_consumed(events))
    assert _offsets(alice) == [0, 3]


def test_events_of_nobody_or_of_an_absent_subject_reach_no_stream():
    broker = _broker()
    boxes = [_join(broker, "a", "alice")[0], _join(broker, "anon")[0]]
    for box in boxes:
        box.take(0)
    broker.on_receive(_consumed((_event(0, NOBODY), _event(1, "zoe"), _event(2, NOBODY))))
    assert all(box.take(0)[1] == 0 for box in boxes)
    assert broker.on_receive(GetStats()).events_delivered == 0


def test_a_stream_with_an_empty_subject_is_anonymous_and_never_gets_nobodys_events():
    broker = _broker()
    box, _ = _join(broker, "e", "")
    broker.on_receive(_consumed())
    assert _offsets(box) == PUBLIC


def test_a_replaying_stream_holds_only_what_it_may_see_and_gets_it_after_its_replay():
    broker = _broker()
    alice, _ = _join(broker, "a", "alice", with_history=True)
    [replay] = broker.history.of(Replay)
    assert replay.subject == "alice"
    broker.on_receive(_consumed())
    assert _offsets(alice) == []
    broker.on_receive(Replayed("a", (), True))
    assert _offsets(alice) == [0, 1, 3, 4, 7]
    assert "a" in broker.live.subjects.clients_of("alice")


def test_a_replayed_event_of_another_subject_is_dropped_by_the_broker_too():
    broker = _broker()
    bob, _ = _join(broker, "b", "bob", with_history=True)
    broker.on_receive(Replayed("b", BATCH, True))
    assert _offsets(bob) == [0, 2, 3, 6, 7]


def test_a_stream_behind_this_instance_gets_only_its_unseen_visible_events():
    broker = _broker()
    broker.frontier = {P0: 0}
    bob, _ = _join(broker, "b", "bob", known={P0: 4})
    assert broker.subscribers["b"].subscription.phase is Phase.BEHIND
    broker.on_receive(_consumed())
    assert _offsets(bob) == [6, 7]
    assert broker.subscribers["b"].subscription.phase is Phase.LIVE


def test_the_kafka_replay_is_asked_with_the_subject():
    broker = _broker()
    _join(broker, "a", "alice", with_history=True)
    broker.on_receive(Replayed("a", (), False))           # the history cannot serve it
    [request] = broker.kafka_reader.of(ReadRange)
    assert request.subject == "alice"


def test_the_live_subject_index_follows_the_phases():
    broker = _broker()
    _join(broker, "a", "alice", with_history=True)
    assert not broker.live.subjects.clients_of("alice")    # replaying: not in the index
    broker.on_receive(Replayed("a", (), True))
    assert broker.live.subjects.clients_of("alice") == {"a"}
    broker.on_receive(Unsubscribe("a"))
    assert len(broker.live.subjects) == 0


# -- DisconnectSubject ---------------------------------------------------------------------
def test_disconnect_subject_ends_its_streams_in_every_phase_and_counts_them():
    broker = _broker()
    broker.frontier = {P0: 0}
    _, live = _join(broker, "live", "alice")
    _, replaying = _join(broker, "replaying", "alice", with_history=True)
    _, behind = _join(broker, "behind", "alice", known={P0: 9})
    _, bob = _join(broker, "bob", "bob")
    broker.warming = True                  # as if the warm start were still running
    _, held = _join(broker, "held", "alice")
    phases = {cid: sub.subscription.phase for cid, sub in broker.subscribers.items()}
    assert phases == {"live": Phase.LIVE, "replaying": Phase.REPLAYING, "behind": Phase.BEHIND,
                      "bob": Phase.LIVE, "held": Phase.HELD}
    assert broker.on_receive(DisconnectSubject("alice", "revoked")) == 4
    for ref in (live, replaying, behind, held):
        assert ref.of(Close) == [Close("revoked")]
    assert bob.of(Close) == [] and list(broker.subscribers) == ["bob"]
    assert broker.kafka_reader.of(CancelReplay) == [CancelReplay("replaying")]
    assert not broker.live.subjects.clients_of("alice")
    assert broker.on_receive(DisconnectSubject("alice", "again")) == 0


def test_disconnect_subject_never_touches_anonymous_streams():
    broker = _broker()
    _, anonymous = _join(broker, "anon")
    assert broker.on_receive(DisconnectSubject("", "x")) == 0
    assert anonymous.of(Close) == [] and "anon" in broker.subscribers


# -- ExpireStreams -------------------------------------------------------------------------
def test_expired_streams_end_with_the_auth_expired_event_and_the_others_stay():
    clock = Clock(1000.0)
    broker = _broker(clock=clock)
    _, early = _join(broker, "early", "alice", expires_at=1010.0)
    _, late = _join(broker, "late", "alice", expires_at=1100.0)
    _, forever = _join(broker, "forever", "bob")
    _, anonymous = _join(broker, "anon")
    broker.on_receive(ExpireStreams())
    assert all(ref.of(Close) == [] for ref in (early, late, forever, anonymous))
    clock.now = 1010.0
    broker.on_receive(ExpireStreams())
    assert early.of(Close) == [Close(AUTH_EXPIRED, framing.auth_expired("token expired"))]
    assert all(ref.of(Close) == [] for ref in (late, forever, anonymous))
    assert sorted(broker.subscribers) == ["anon", "forever", "late"]
    clock.now = 5000.0
    broker.on_receive(ExpireStreams())
    assert len(late.of(Close)) == 1 and forever.of(Close) == anonymous.of(Close) == []


def test_the_expired_stream_writes_the_event_then_closes():
    clock = Clock(2000.0)
    broker = _broker(clock=clock)
    outbox, client_ref = Recording(), FakeRef()
    info = ClientInfo("c", "10.0.0.1", "test", Filter(), True, 0.0, subject="alice",
                      expires_at=1999.0)
    client = ClientActor(info=info, outbox=outbox, broker=FakeRef())
    broker.on_receive(Subscribe(info, outbox, client_ref, None, False))
    outbox.take(0)
    broker.on_receive(ExpireStreams())
    assert "c" not in broker.subscribers
    [close] = client_ref.of(Close)
    client.on_receive(close)               # what the client actor does with it
    data = outbox.take(0)[0]
    assert outbox.finished and outbox.closed_reason == AUTH_EXPIRED
    [event] = parse_stream(data)
    assert event["event"] == "auth-expired" and json.loads(event["data"]) == {
        "reason": "token expired"}
    assert b"id:" not in data


def test_the_expiry_heap_stays_bounded_when_streams_come_and_go():
    clock = Clock(0.0)
    broker = _broker(clock=clock)
    for i in range(2000):
        _join(broker, f"c{i}", "alice", expires_at=10_000.0 + i)
        broker.on_receive(Unsubscribe(f"c{i}"))
        if i % 100 == 0:
            broker.on_receive(ExpireStreams())
    broker.on_receive(ExpireStreams())
    assert len(broker.expiries) <= 64


def test_an_overlong_subject_is_refused_without_harm_to_the_broker():
    broker = _broker()
    _, ref = _join(broker, "long", "x" * 1025)
    assert ref.of(Close) and "invalid subject" in ref.of(Close)[0].reason
    assert "long" not in broker.subscribers
    ok, _ = _join(broker, "ok", "x" * 1024)
    broker.on_receive(_consumed((_event(0, "x" * 1024),)))
    assert _offsets(ok) == [0]


class CountingFilter:
    """A filter that counts how often it is asked (Filter-like: hashable, matches, describe)."""

    calls = 0
    event_types: tuple = ()
    sources: tuple = ()

    def matches(self, event_type, source):
        CountingFilter.calls += 1
        return True

    def describe(self):
        return "all"


def test_owned_events_reach_their_subjects_without_a_scan_of_every_stream():
    broker = _broker()
    flt = CountingFilter()
    boxes = {}
    for n in range(1000):
        boxes[n] = Recording()
        info = ClientInfo(f"c{n}", "10.0.0.1", "test", flt, True, 0.0, subject=f"user{n}")
        broker.on_receive(Subscribe(info, boxes[n], FakeRef(), None, False))
    assert len(broker.live.groups) == 1
    CountingFilter.calls = 0
    broker.on_receive(_consumed([_event(o, f"user{o * 7}") for o in range(100)]))
    assert CountingFilter.calls <= 100                 # not 100 events x 1,000 streams
    got = {n for n, box in boxes.items() if box.take(0)[1]}
    assert got == {o * 7 for o in range(100)}
    assert broker.on_receive(GetStats()).events_delivered == 100


def test_a_subject_with_a_line_break_cannot_forge_a_log_line(caplog):
    """A token's subject is the issuer's text: it may hold a newline (a user-chosen name)."""
    import logging
    broker = _broker()
    broker.frontier = {P0: 0}
    _join(broker, "s", "mallory\n2026-01-01 INFO forged")
    with caplog.at_level(logging.INFO, logger="actors.broker"):
        assert broker.on_receive(DisconnectSubject("mallory\n2026-01-01 INFO forged", "x")) == 1
    [line] = [r.getMessage() for r in caplog.records if "subject" in r.getMessage()]
    assert "\n" not in line and "forged" in line
