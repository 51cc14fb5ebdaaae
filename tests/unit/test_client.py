import pykka

from actors.client import ClientActor, every_actor, running, summary
from actors.filters import Filter
from actors.messages import ClientInfo, Close, Unsubscribe
from actors.outbox import Outbox
from tests.fakes import FakeRef, stop_all

INFO = ClientInfo("c1", "10.0.0.1", "curl", Filter.parse("blog.*", "blog-service"), True, 12.5)


def _client(**kwargs):
    broker, outbox = FakeRef(), Outbox(10)
    return ClientActor(info=INFO, outbox=outbox, broker=broker, **kwargs), broker, outbox


def test_close_ends_the_stream_with_the_reason_and_stop_unsubscribes():
    client, broker, outbox = _client()
    client.on_receive(Close("disconnected by operator"))
    assert outbox.closed_reason == "disconnected by operator"
    assert outbox.take(0)[0] == b": closing: disconnected by operator\n"
    client.on_stop()
    assert broker.of(Unsubscribe) == [Unsubscribe("c1")]
    assert outbox.closed_reason == "disconnected by operator"      # the first reason stays


def test_a_stop_without_close_ends_the_stream():
    client, broker, outbox = _client()
    client.on_stop()
    assert outbox.closed_reason == "stream ended" and broker.of(Unsubscribe) == [Unsubscribe("c1")]


def test_its_summary_is_what_get_clients_lists():
    client, _, outbox = _client()
    outbox.offer(b"data: x\n\n", 2, "id-2")
    outbox.take(0)
    outbox.written(2, "id-2")
    described = summary(client.info, outbox)
    assert (described.id, described.remote_addr, described.user_agent) == ("c1", "10.0.0.1", "curl")
    assert described.event_types == ("blog.*",) and described.sources == ("blog-service",)
    assert described.events_sent == 2 and described.events_dropped == 0
    assert described.last_event_id == "id-2"
    assert described.connected_at == 12.5 and described.filter == INFO.filter.describe()


def test_its_summary_counts_what_a_slow_client_lost():
    """GetClients tells an operator which client is too slow: its dropped events, apart from
    those it was sent."""
    outbox = Outbox(10, 40)                             # room for 40 bytes waiting
    assert outbox.offer(b"data: x\n\n" * 3, 3, "id-3")     # 27 bytes
    assert not outbox.offer(b"data: y\n\n" * 4, 4, "id-7")  # 36 more: lost
    outbox.take(0)
    outbox.written(3, "id-3")
    described = summary(INFO, outbox)
    assert (described.events_sent, described.events_dropped) == (3, 4)


def test_a_close_with_a_final_frame_ends_the_stream_with_it_instead_of_the_comment():
    client, _, outbox = _client()
    final = b'event: auth-expired\ndata: {"reason":"token expired"}\n\n'
    client.on_receive(Close("auth-expired", final))
    assert outbox.take(0)[0] == final
    assert outbox.finished and outbox.closed_reason == "auth-expired"


def test_the_summary_names_the_subject_and_scope_and_nothing_for_anonymous_clients():
    info = ClientInfo("c2", "10.0.0.1", "curl", Filter.parse("blog.*", None), True, 1.0,
                      subject="alice", scope="event_types=blog.*", expires_at=99.0)
    described = summary(info, Outbox(10))
    assert (described.subject, described.scope) == ("alice", "event_types=blog.*")
    assert described.to_json()["subject"] == "alice"
    assert described.to_json()["scope"] == "event_types=blog.*"
    anonymous = summary(INFO, Outbox(10))
    assert (anonymous.subject, anonymous.scope) == ("", "")


def test_client_actors_are_kept_out_of_pykkas_registry(monkeypatch):
    """Its list made each stop scan every open stream; a dict of their own does not."""
    def refused(cls, ref):
        raise AssertionError("a client actor went through pykka's registry")
    monkeypatch.setattr(pykka.ActorRegistry, "register", classmethod(refused))
    monkeypatch.setattr(pykka.ActorRegistry, "unregister", classmethod(refused))
    broker = FakeRef()
    refs = [ClientActor.start(info=INFO, outbox=outbox, broker=broker)
            for outbox in (Outbox(10), _Breaking(10), Outbox(10))]
    try:
        assert running() == refs                        # the oldest first
        assert len(every_actor()) == 3
        refs[0].stop(timeout=2)
        refs[1].tell(Close("its handler fails"))        # the actor stops, unsubscribed
        assert refs[1].actor_stopped.wait(2)
        assert running() == [refs[2]] and not refs[0].is_alive()
        assert broker.of(Unsubscribe) == [Unsubscribe("c1")] * 2
    finally:
        for ref in refs:
            ref.stop(block=False) if ref.is_alive() else None
    assert refs[2].actor_stopped.wait(2)
    assert running() == [] and every_actor() == []


class _Breaking(Outbox):
    """Its first close fails (as a bug in a handler would)."""
    broke = False

    def close(self, *args) -> None:
        if not self.broke:
            self.broke = True
            raise RuntimeError("a bug")
        super().close(*args)


UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import gc, threading, time, tracemalloc
import gevent, pykka
from actors.broker import BrokerActor
from actors.client import ClientActor, Mailbox, running
from actors.history import HistoryActor
from actors.messages import ClientInfo, Close, Subscribe
from actors.outbox import Outbox
from actors.filters import Filter

history = HistoryActor.start(size=10, topics=("t",))
broker = BrokerActor.start(history=history, warm_start=False, topics=("t",))
threads = threading.active_count()


def start(n):
    outbox = Outbox(10)
    info = ClientInfo(f"c{n}", "10.0.0.1", "test", Filter(), True, 1.0)
    ref = ClientActor.start(info=info, outbox=outbox, broker=broker)
    broker.tell(Subscribe(info, outbox, ref, None, False))     # as the gateway does
    return outbox, ref


outbox, ref = start(0)
assert type(ref.actor_inbox) is Mailbox
assert threading.active_count() == threads          # a greenlet, no thread object
assert outbox.take(2)[0].startswith(b"id: ")          # subscribed: its opening position
ref.tell(Close("first"))
ref.tell(Close("second"))                             # in order: the first reason stays
assert ref.stop(timeout=2) is True and not ref.is_alive()       # an ask on the hub
assert outbox.closed_reason == "first" and outbox.take(0)[0] == b": closing: first\n"
assert running() == [] and len(pykka.ActorRegistry.get_all()) == 2   # broker, history

# A stop from another greenlet while the actor waits; a late tell is dropped (the broker may
# still tell it Close before it reads its Unsubscribe: that must not fail the broker).
outbox, ref = start(1)
gevent.spawn(ref.stop, block=False).join(2)
gevent.sleep(0.05)
assert not ref.is_alive() and outbox.closed_reason == "stream ended"
ref.tell(Close("late"))
gevent.sleep(0.05)
assert not ref.is_alive() and outbox.closed_reason == "stream ended", "a stopped client took it"
assert ref.actor_inbox.empty()

# An error in one client's handler stops that client only (pykka's rule for a told message).
(a_box, a), (b_box, b) = start(2), start(3)
a.tell(pykka.messages.ProxyCall(attr_path=("no_such_method",), args=(), kwargs={}))
gevent.sleep(0.05)
assert not a.is_alive() and b.is_alive() and broker.is_alive()
b.stop(timeout=2)

# Per idle client, the actor's share of memory (tracemalloc; with a thread object and
# gevent's queue it was ~11.5 KB, ~5 KB now; untraced: the greenlet's frame page).
streams = [start(10 + n) for n in range(5)]
gevent.sleep(0.05)
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
streams = [start(100 + n) for n in range(500)]
gevent.sleep(0.2)
gc.collect()
per_client = (tracemalloc.get_traced_memory()[0] - before) / 500
tracemalloc.stop()
assert per_client < 8000, per_client
for client in running():
    client.stop()
assert running() == []
pykka.ActorRegistry.stop_all()
print("ok")
'''


def test_under_gevent_a_client_actor_is_a_greenlet_with_a_slim_mailbox_and_behaves_the_same():
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]


def test_the_broker_outlives_a_close_told_to_a_client_that_has_just_stopped():
    """A stream ends (its actor stops) while the broker still holds it: its Unsubscribe is
    queued behind a DisconnectClient (the stuck-write check's report of a slow client, a
    drain share, an expiry). The broker's Close to it must not fail the broker: pykka stops
    an actor that raises on a told message, and with it every stream of the worker."""

    from actors.broker import SLOW_CLIENT, BrokerActor
    from actors.messages import DisconnectClient, GetStats, Subscribe

    broker = BrokerActor.start(history=FakeRef(), warm_start=False)
    try:
        outbox = Outbox(10)
        client = ClientActor.start(info=INFO, outbox=outbox, broker=FakeRef())  # Unsubscribe lost
        broker.tell(Subscribe(INFO, outbox, client, None, False))
        assert broker.ask(GetStats(), timeout=2).clients == 1
        client.stop(timeout=2)                  # the stream ended; the broker is not told yet
        client.tell(Close("late"))              # dropped: nothing to close any more
        broker.tell(DisconnectClient("c1", SLOW_CLIENT))
        assert broker.ask(GetStats(), timeout=2).clients == 0
        assert outbox.closed_reason == "stream ended"
    finally:
        stop_all()


def test_a_client_actor_that_fails_ends_its_stream_and_leaves_the_broker(monkeypatch):
    """A handler's error stops the actor (pykka, a told message) without on_stop: its stream
    went on receiving events, and nothing could end it any more (an operator's disconnect, a
    slow client, the drain at shutdown: each a Close to a dead actor, dropped), nor did the
    broker ever hear that it was gone."""

    from actors import client as client_module

    def broken(text):
        raise MemoryError("no room for the comment")

    broker, outbox = FakeRef(), Outbox(10)
    ref = ClientActor.start(info=INFO, outbox=outbox, broker=broker)
    try:
        monkeypatch.setattr(client_module.framing, "comment", broken)
        ref.tell(Close("disconnected by operator"))
        assert outbox.take(2)[0] == b""             # woken by the close, not the timeout
        assert not ref.is_alive()
        assert outbox.closed_reason == "disconnected by operator" and outbox.finished
        assert broker.of(Unsubscribe) == [Unsubscribe("c1")]
    finally:
        stop_all()


def test_a_credential_given_as_a_filter_entry_stays_out_of_get_clients():
    """The filter's text was masked but its event_types and sources lists were not: an
    operator reading GetClients saw a client's unspent ticket, usable for its 30 s."""
    from tests.unit.test_auth_redact import JWT, TICKET
    info = ClientInfo("c2", "10.0.0.1", "curl", Filter.parse(f"blog.*,{TICKET}", JWT), True, 1.0)
    described = summary(info, Outbox(10))
    assert described.event_types == ("***", "blog.*") and described.sources == ("***",)
    assert TICKET not in described.filter and JWT not in described.filter
