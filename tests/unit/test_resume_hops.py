"""Resuming exactly while hopping between instances (property test): two instances read the
same records in different orders across partitions (each partition in order), so their ids
differ. A client reads some events, is cut, resumes on either instance, and so on; in the
end it has every event its filter matches exactly once, and no id it was given ever says
less than what it had seen before."""
import json

from hypothesis import given, settings, strategies as st

from actors.broker import BrokerActor
from actors.events import events_from_records
from actors.filters import Filter
from actors.history import HistoryActor
from actors.messages import ClientInfo, Consumed, Replay, Replayed, Subscribe, Unsubscribe
from actors.outbox import Outbox
from actors.resume import Frontier, decode
from tests.fakes import FakeRef, make_record
from tests.sse import parse_stream

TOPICS = ("blog.posts", "link.clicks")
PARTITIONS = [(t, p) for t in TOPICS for p in (0, 1)]


def _records(counts, types):
    return {tp: [make_record(types[(tp, o)], "svc", tp[0], tp[1], o, data={"at": [*tp, o]})
                 for o in range(n)] for tp, n in zip(PARTITIONS, counts, strict=True)}


def _instance(records, order):
    """A broker and its history that read `records` partition by partition as `order` says."""
    lists = {tp: list(rs) for tp, rs in records.items()}
    sequence = [lists[PARTITIONS[i]].pop(0) for i in order]
    events = events_from_records(sequence, Frontier(TOPICS, {tp: 0 for tp in PARTITIONS})).events
    history = HistoryActor(size=1000, topics=TOPICS)
    history.on_receive(_remember(events))
    broker = BrokerActor(history=FakeRef(), warm_start=False, topics=TOPICS)
    end = {tp: len(rs) for tp, rs in records.items()}
    broker.on_receive(Consumed((), (), end))
    return broker, history


def _remember(events):
    from actors.messages import Remember
    return Remember(tuple(events), {tp: 0 for tp in PARTITIONS})


def _session(broker, history, flt, known, n):
    """One connection: subscribe (resuming from `known`), and the events it is sent."""
    outbox = Outbox(10_000)
    info = ClientInfo(f"c{n}", "10.0.0.1", "t", flt, True, 0.0)
    broker.history.mailbox.clear()
    broker.on_receive(Subscribe(info, outbox, FakeRef(), known, True))
    [ask] = broker.history.of(Replay)
    matching, found = history.replay(ask.filter, None, ask.known)
    assert found
    notice = history.beginning() if ask.known is None else b""
    broker.on_receive(Replayed(info.id, matching, True, notice))
    events = parse_stream(outbox.take(0)[0])       # id-only blocks dispatch nothing
    broker.on_receive(Unsubscribe(info.id))
    return events


def _interleaving(counts):
    return st.permutations([i for i, n in enumerate(counts) for _ in range(n)])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_hopping_between_instances_delivers_each_event_once(data):
    counts = data.draw(st.lists(st.integers(0, 5), min_size=4, max_size=4))
    types = {(tp, o): data.draw(st.sampled_from(["a.x", "b.y"]))
             for tp, n in zip(PARTITIONS, counts, strict=True) for o in range(n)}
    records = _records(counts, types)
    instances = [_instance(records, data.draw(_interleaving(counts))) for _ in range(2)]
    flt = data.draw(st.sampled_from([Filter(), Filter.parse("a.*", None)]))
    wanted = {(tp, o) for (tp, o), t in types.items() if flt.matches(t, "svc")}
    got, known = [], None
    for hop in range(8):
        which = data.draw(st.integers(0, 1))
        events = _session(*instances[which], flt, known, hop)
        take = data.draw(st.integers(0, len(events))) if hop < 7 else len(events)
        for event in events[:take]:
            offsets = decode(TOPICS, event["id"])
            if known is not None:          # an id never says less than what it had seen
                assert all(offsets.get(k, 0) >= v for k, v in known.items()), (known, offsets)
            known = offsets
            topic, partition, offset = json.loads(event["data"])["data"]["at"]
            got.append(((topic, partition), offset))
    assert sorted(got) == sorted(wanted) and len(set(got)) == len(got)


def test_a_resume_on_an_instance_lacking_a_partition_keeps_it_in_the_replayed_ids():
    """The client saw 500 events of link.clicks:2 elsewhere; this instance does not list that
    partition yet (added lately). Its history's ids leave it out ("from its beginning"): the
    ids the stream is given must keep what the client saw there."""
    counts = [3, 2, 2, 1]
    records = _records(counts, {(tp, o): "a.x" for tp, n in zip(PARTITIONS, counts, strict=True)
                                for o in range(n)})
    broker, history = _instance(records, [i for i, n in enumerate(counts) for _ in range(n)])
    known = {("blog.posts", 0): 1, ("link.clicks", 2): 500}
    events = _session(broker, history, Filter(), known, 0)
    assert len(events) == 7
    assert all(decode(TOPICS, e["id"])[("link.clicks", 2)] == 500 for e in events)
