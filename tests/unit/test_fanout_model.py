"""The broker's fan-out against a brute-force model (property test): clients with random
filters (wildcards, overlapping, equal and disjoint ones, narrowed to random scopes), either
framing, with or without history and with or without a subject, connect and leave in any order
while batches of public and owned events arrive and replays are answered late. Every client
gets exactly the events its filter and subject allow (from the history, then live), once, in
order, in its own framing; and the broker's groups hold exactly the live clients' filters."""
from fnmatch import fnmatchcase

from hypothesis import HealthCheck, example, given, settings, strategies as st

from actors import framing
from actors.auth.scope import OutsideScope, Scope
from actors.broker import BrokerActor
from actors.events import events_from_records, visible
from actors.filters import Filter
from actors.history import HistoryActor
from actors.messages import (
    ClientInfo, Consumed, Remember, Replay, Replayed, SendHeartbeats, Subscribe, Unsubscribe,
)
from actors.outbox import Outbox
from actors.resume import Frontier, decode
from actors.subscription import Phase
from tests.fakes import FakeRef, make_record
from tests.sse import parse_stream

TOPIC = "blog.posts"
TYPES = ["blog.post.created", "blog.post", "Blog.post.created", "blog.comment.created",
         "a*b", "axb", "ab", "é.créé", "link.clicked", "x"]
SOURCES = ["blog-service", "Blog-service", "link-service", "s*", "s"]
TYPE_PATTERNS = ["blog.*", "blog.post.*", "*.created", "*", "a*b", "ab", "axb", "é.*",
                 "blog.post.created", "Blog.*", "*b", "b*", "*o*", "x", "link.clicked",
                 "blog.*.created", "*.créé"]
SOURCE_PATTERNS = ["blog-service", "*-service", "s*", "s", "*", "link-*", "Blog-*"]
SUBJECTS = [None, "alice", "bob"]
OWNERS = [None, None, None, "alice", "bob", ""]

FEW = [["blog.*"], ["*"], [], ["*.created", "a*b"]]     # often shared by several clients
patterns = st.one_of(st.sampled_from(FEW), st.lists(st.sampled_from(TYPE_PATTERNS), max_size=3))
source_patterns = st.one_of(st.just([]), st.lists(st.sampled_from(SOURCE_PATTERNS), max_size=2))
scope_lists = st.tuples(st.lists(st.sampled_from(TYPE_PATTERNS), min_size=1, max_size=2),
                        st.lists(st.sampled_from(SOURCE_PATTERNS), min_size=1, max_size=2))
scopes = st.one_of(st.none(), st.none(), scope_lists)
join = st.tuples(st.just("join"), patterns, source_patterns, scopes, st.sampled_from(SUBJECTS),
                 st.sampled_from([True, True, False]), st.booleans(),
                 st.one_of(st.none(), st.none(), st.integers(0, 8)))
batch = st.tuples(st.just("batch"), st.lists(st.tuples(st.sampled_from(TYPES),
                                                       st.sampled_from(SOURCES),
                                                       st.sampled_from(OWNERS)), max_size=5))
steps = st.lists(st.one_of(join, join, batch, batch,
                           st.tuples(st.just("leave"), st.integers(0, 30)),
                           st.tuples(st.just("replayed"), st.integers(0, 30)),
                           st.tuples(st.just("heartbeat"))), max_size=40)


def _wanted(types, sources, scope, subject, event) -> bool:
    def kind(pats, value):
        return not pats or any(fnmatchcase(value, p) for p in pats)
    if not (kind(types, event.type) and kind(sources, event.source)):
        return False
    if scope is not None and not (kind(scope[0], event.type) and kind(scope[1], event.source)):
        return False
    return visible(event, subject)


class Model:
    def __init__(self, history_size):
        self.history_ref = FakeRef()
        self.history = HistoryActor(size=history_size, topics=(TOPIC,))
        self.broker = BrokerActor(history=self.history_ref, warm_start=False, topics=(TOPIC,),
                                  monotonic=lambda: 0.0)
        self.frontier = Frontier((TOPIC,), {})
        self.offset = 0
        self.ring: list = []
        self.size = history_size
        self.clients: dict = {}         # id -> (outbox, wanted, expected events, named)
        self.replies: list = []         # Replayed messages not yet handed to the broker
        self.count = 0

    def pump_history(self):
        """The history's mailbox, in order; its answers wait to be handed to the broker."""
        for message in self.history_ref.mailbox:
            if isinstance(message, Remember):
                self.history.remember(message.events, message.starts, message.reset_topics)
            elif isinstance(message, Replay):
                matching, found = self.history.replay(message.filter, message.subject,
                                                      message.known)
                notice = self.history.beginning() if message.known is None else b""
                self.replies.append(Replayed(message.client_id, matching, found, notice))
        self.history_ref.mailbox.clear()

    def join(self, types, sources, scope, subject, named, with_history, resume_at=None):
        requested = Filter.parse(",".join(types), ",".join(sources))
        flt = requested
        if scope is not None:
            try:
                flt = Scope.parse(scope[0], scope[1]).narrow(requested)
            except OutsideScope:
                return
        self.count += 1
        client_id = f"c{self.count}"
        outbox = Outbox(10 ** 6)
        info = ClientInfo(client_id, "10.0.0.1", "test", flt, named, 0.0, subject)

        known, seen = None, 0
        if resume_at is not None:       # from a place the history holds, or ahead of it
            seen = (self.ring[0].position.offset if self.ring else 0) + resume_at
            known, with_history = {(TOPIC, 0): seen}, True

        def wanted(e):
            return e.position.offset >= seen and _wanted(types, sources, scope, subject, e)
        expected = [e for e in self.ring if wanted(e)] if with_history else []
        self.clients[client_id] = (outbox, wanted, expected, named)
        self.broker.on_receive(Subscribe(info, outbox, FakeRef(), known, with_history))
        self.pump_history()

    def batch(self, specs):
        records = []
        for type_, source, _owner in specs:
            records.append(make_record(type_, source, TOPIC, 0, self.offset))
            self.offset += 1
        events = tuple(e._replace(owner=owner) for e, (_t, _s, owner) in
                       zip(events_from_records(records, self.frontier).events, specs, strict=True))
        self.ring = (self.ring + list(events))[-self.size:]
        for _outbox, wanted, expected, _named in self.clients.values():
            expected += [e for e in events if wanted(e)]
        self.broker.on_receive(Consumed(events, (), {(TOPIC, 0): self.offset}))
        self.pump_history()

    def heartbeat(self):
        self.broker.on_receive(SendHeartbeats())

    def replayed(self, index):
        if self.replies:
            self.broker.on_receive(self.replies.pop(index % len(self.replies)))

    def check(self, client_id):
        outbox, _wanted, expected, named = self.clients[client_id]
        sub = self.broker.subscribers.get(client_id)
        data = outbox.take(0)[0]
        got = [(e["event"], e["data"]) for e in parse_stream(data)]
        places = [decode((TOPIC,), line[4:]).get((TOPIC, 0), 0)
                  for line in data.decode().split("\n") if line.startswith("id: ")]
        assert places == sorted(places)     # no id says less than one before it
        if sub is not None and sub.subscription.phase is Phase.REPLAYING:
            assert got == []
            return
        assert got == [(framing.clean(e.type) if named else "message",
                        e.named.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode())
                       for e in expected]
        ids = [decode((TOPIC,), e["id"])[(TOPIC, 0)] for e in parse_stream(data)]
        assert all(i > e.position.offset for i, e in zip(ids, expected, strict=True))
        expected.clear()

    def leave(self, index):
        if self.clients:
            client_id = sorted(self.clients)[index % len(self.clients)]
            self.check(client_id)
            self.broker.on_receive(Unsubscribe(client_id))
            del self.clients[client_id]

    def check_groups(self):
        broker = self.broker
        live = {(s.key, i) for i, s in broker.subscribers.items()
                if s.subscription.phase is Phase.LIVE}
        grouped = {(key, i) for key, members in broker.live.groups.items() for i in members}
        assert grouped == live and all(broker.live.groups.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 6), steps)
@example(3, [("join", [], [], None, "alice", True, False, None),      # one group, one stream
             ("join", [], [], None, None, True, False, None),         # served apart: a batch
             ("join", ["*"], [], None, "alice", False, False, 9),     # with alice's own events
             ("batch", [("x", "s", None), ("x", "s", "alice"), ("ab", "s", "bob")]),
             ("heartbeat",), ("batch", [("x", "s", None)] * 10), ("leave", 0)])
def test_every_client_gets_exactly_what_its_filter_and_subject_allow(history_size, plan):
    model = Model(history_size)
    for step in plan:
        getattr(model, step[0])(*step[1:])
        model.check_groups()
    while model.replies:
        model.replayed(0)
    for client_id in list(model.clients):
        model.check(client_id)
    while model.clients:
        model.leave(0)
    broker = model.broker
    assert not broker.live.groups and not broker.subscribers
    assert not any(broker.waiting.values())
    assert not broker.live.subjects._clients and not broker.live.subjects._answers
