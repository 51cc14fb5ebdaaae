"""Kafka replays against a model (property test): clients resume from a few shared places
with ends of their own, read at their own pace (some stall long enough to leave their
shared read), some leave; Kafka has markers, invalid records, out-of-order timestamps and
retention. Each client that stays gets exactly the events it missed, once, in order per
partition; every id it is given says what it has been shown: resuming from it shows the rest
and nothing twice; and the queue keeps nothing once every replay is over."""
import json
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from actors import replay as replay_module
from actors.filters import Filter
from actors.kafka_reader import Unreadable
from actors.kafka_reads import Record
from actors.messages import CancelReplay, ContinueReplay, ReadRange, Replayed
from actors.outbox import Outbox
from actors.replay import ReplayActor
from actors.resume import decode
from tests.fakes import FakeRef
from tests.sse import parse_stream
from tests.unit.test_replay import Clock, FakeReader

TOPIC = "blog.posts"
PARTS = [(TOPIC, p) for p in range(3)]


class _Replay(ReplayActor):
    actor_ref = None


class HoledReader(FakeReader):
    """Each partition in `holes` cannot be read from that offset to its end (a codec the
    gateway lacks): the replay skips it, with a gap event."""

    def __init__(self, log, holes, **kw):
        super().__init__(log, **kw)
        self.holes = holes

    def fetch(self, ranges):
        broken = {p: start for p, (start, until) in ranges.items()
                  if p in self.holes and self.holes[p] <= start < until}
        if broken:
            raise Unreadable(broken, "corrupt batch: crc")
        records, positions = super().fetch(ranges)
        records = [r for r in records if r.offset < self.holes.get((r.topic, r.partition),
                                                                   r.offset + 1)]
        for p, hole in self.holes.items():      # a fetch stops before the broken batch
            if p in positions:
                positions[p] = min(positions[p], max(hole, ranges[p][0]))
        return records, positions


@pytest.fixture(autouse=True)
def _no_idle_sleep(monkeypatch):
    monkeypatch.setattr(replay_module, "IDLE_S", 0)
    monkeypatch.setattr(replay_module, "IDLE_MAX_S", 0)


def _log(data, big, heavy):
    """Per partition: offsets 0..n-1, each a record ("a.x", "b.y", invalid) or a marker."""
    log = {}
    for p in PARTS:
        size = 12 if heavy else data.draw(st.sampled_from([0, 3, 12, 30]))
        kinds = data.draw(st.lists(st.sampled_from(["a", "a", "b", "bad", "marker"]),
                                   min_size=size, max_size=size))
        records = []
        for offset, kind in enumerate(kinds):
            if kind == "marker":
                continue
            ts = data.draw(st.integers(0, 50))
            value = (b"not json" if kind == "bad" else json.dumps(
                {"id": f"{p[1]}-{offset}", "type": f"{kind}.x", "source": "svc",
                 "data": "x" * big}).encode())
            records.append(Record(TOPIC, p[1], offset, ts, value, ()))
        log[p] = (records, len(kinds))
    return log


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_replays_deliver_exactly_what_each_client_missed(data):
    heavy = data.draw(st.booleans())   # many large records from one place: clients stall
    big = 30_000 if heavy else data.draw(st.sampled_from([10, 30_000]))
    log = _log(data, big, heavy)
    end = {p: n for p, (_records, n) in log.items()}
    begin = {p: 0 if heavy else data.draw(st.sampled_from([0, end[p] // 3, end[p]]))
             for p in PARTS}
    holes = data.draw(st.dictionaries(st.sampled_from(PARTS), st.integers(0, 30), max_size=1))
    reader = HoledReader({p: records for p, (records, _n) in log.items()}, holes, begin=begin,
                         per_poll=data.draw(st.integers(1, 4)))
    clock = Clock()
    settings_ = SimpleNamespace(kafka_topics=(TOPIC,), sse_replay_max_events=10**6,
                                sse_max_event_bytes=1 << 20)
    actor = _Replay(settings=settings_, reader_factory=lambda s: reader, clock=clock)
    actor.actor_ref = FakeRef()
    broker = FakeRef()
    starts = [{p: 0 if heavy else data.draw(st.sampled_from([0, end[p] // 2, end[p]]))
               for p in PARTS} for _ in range(2)]
    clients = {}
    for i in range(data.draw(st.integers(1, 5))):
        start = data.draw(st.sampled_from(starts))
        until = {p: data.draw(st.sampled_from([end[p], start[p], (start[p] + end[p]) // 2]))
                 if not heavy or i else end[p] for p in PARTS}
        flt = data.draw(st.sampled_from([Filter(), Filter.parse("a.*", None)]))
        outbox = Outbox(100)
        pace = data.draw(st.sampled_from(["reads", "stalls", "sometimes", "stalls"]))
        clients[f"c{i}"] = SimpleNamespace(start=start, until=until, filter=flt, outbox=outbox,
                                           taken=b"", left=False, pace=pace)
        actor.on_receive(ReadRange(f"c{i}", flt, start, until, broker, None,
                                   data.draw(st.sampled_from(["10.0.0.1", "10.0.0.2"])), True,
                                   outbox))
    for step in range(400):
        if not len(actor.queue):
            break
        late = step > 60                # in the end, everyone reads
        for client_id, c in clients.items():
            if c.left:
                continue
            if not late and data.draw(st.integers(0, 30)) == 30:
                c.left = True
                c.outbox.close("gone")
                if data.draw(st.booleans()):
                    actor.on_receive(CancelReplay(client_id))
            elif late or c.pace == "reads" or (c.pace == "sometimes" and data.draw(st.booleans())):
                c.taken += c.outbox.take(0)[0]
        clock.now += 0 if late else data.draw(st.sampled_from([0.6, 0.0, 0.01, 1.2]))
        actor.on_receive(ContinueReplay())
    for c in clients.values():
        while not c.left and c.outbox.waiting:
            c.taken += c.outbox.take(0)[0]

    queue = actor.queue
    assert (len(queue), queue.unstarted, dict(queue.running), queue.read_of,
            dict(queue.by_address)) == (0, {}, {}, {}, {})
    replayed = {m.client_id for m in broker.of(Replayed)}
    for client_id, c in clients.items():
        if c.left:
            continue
        assert client_id in replayed
        _check(c, log, begin, holes)


def _check(c, log, begin, holes):
    """What the client saw against the model."""
    first = {p: min(max(c.start[p], begin[p]), c.until[p]) for p in PARTS}
    wanted = {p: [r.offset for r in records if first[p] <= r.offset < c.until[p]
                  and r.offset < holes.get(p, r.offset + 1) and _matches(r, c.filter)]
              for p, (records, _n) in log.items()}
    shown = {p: [] for p in PARTS}
    for frame in parse_stream(c.taken):
        if frame["event"] != "gap":
            body = json.loads(frame["data"])
            partition, offset = (int(x) for x in body["id"].split("-"))
            shown[(TOPIC, partition)].append(offset)
        position = decode((TOPIC,), frame["id"])
        for p in PARTS:
            at = position.get(p, 0)
            assert at <= c.until[p] or at == c.start[p], (p, at, c.until)
            # resuming from this id: the rest of p, nothing twice
            assert shown[p] == [o for o in wanted[p] if o < at], (p, at, shown[p], wanted[p])
    assert shown == wanted


def _matches(record, flt):
    try:
        body = json.loads(record.value)
    except ValueError:
        return False
    return flt.matches(body["type"], "svc")
