"""actors/system.py: start-up is all-or-nothing, and stop() ends what start() began."""
import threading

import pykka
import pytest

from actors import system as actor_system
from actors.client import every_actor
from actors.settings import Settings
from tests.fakes import stop_all


class Quiet(pykka.ThreadingActor):
    """Stands in for the Kafka consumer: no Kafka in unit tests."""

    def __init__(self, **kwargs):
        super().__init__()


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    stop_all()


@pytest.mark.parametrize("failing", ["ReplayActor", "KafkaConsumerActor"])
def test_a_failed_start_stops_the_actors_already_started(monkeypatch, failing):
    def broken(*args, **kwargs):
        raise RuntimeError("no actor for you")
    monkeypatch.setattr(getattr(actor_system, failing), "start", broken)
    with pytest.raises(RuntimeError, match="no actor for you"):
        actor_system.start(Settings.defaults())
    assert every_actor() == []


def test_stop_ends_the_ticker_and_every_actor(monkeypatch):
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    system = actor_system.start(Settings.defaults())
    ticker = system.ticker
    assert ticker is not None and ticker.is_alive()
    assert sorted(system.core) == ["broker", "consumer", "history", "limiter", "replay"]
    actor_system.stop(system, timeout=5)
    assert not ticker.is_alive() and system.ticker is None
    assert every_actor() == []
    assert not any(t.name == "ticker" and t.is_alive() for t in threading.enumerate())


def test_the_watchdog_reports_a_dead_core_actor(monkeypatch):
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    fatal = threading.Event()
    reasons = []

    def on_fatal(reason):
        reasons.append(reason)
        fatal.set()
    system = actor_system.start(Settings.defaults(), on_fatal=on_fatal)
    try:
        system.consumer.stop()
        assert fatal.wait(10), "the watchdog never noticed the stopped consumer"
        assert reasons == ["actor consumer died"]
    finally:
        actor_system.stop(system, timeout=5)


def test_the_ticker_tells_the_broker_to_expire_streams_every_second_only_with_auth_on():
    from types import SimpleNamespace

    from actors.messages import ExpireStreams
    from tests.fakes import FakeRef

    def ticking(auth_mode):
        settings = SimpleNamespace(sse_heartbeat_seconds=3600, auth_mode=auth_mode)
        system = SimpleNamespace(settings=settings, core={}, broker=FakeRef(),
                                 stopping=threading.Event())
        thread = threading.Thread(target=actor_system._tick, args=(system, None), daemon=True)
        thread.start()
        return system, thread

    on, off = ticking("required"), ticking("off")
    try:
        for _ in range(200):                      # up to 20 s on a loaded machine
            if on[0].broker.of(ExpireStreams):
                break
            threading.Event().wait(0.1)
        assert on[0].broker.of(ExpireStreams), "the ticker never told ExpireStreams"
    finally:
        for system, thread in (on, off):
            system.stopping.set()
            thread.join(5)
    assert off[0].broker.mailbox == []


def test_stop_with_open_streams_gives_each_its_final_comment_and_the_broker_survives(
        monkeypatch, caplog):
    """Ctrl-C (worker_int) stops the system with streams open: the client actors were stopped
    while the broker was still telling them to close, so it died of ActorDeadError (an ERROR
    and a CRITICAL traceback each time) and the streams ended without their final comment."""
    import logging

    from actors.filters import Filter
    from actors.gateway import Gateway, Lease
    from tests.fakes import FakeRef
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    system = actor_system.start(Settings.defaults())
    gateway = Gateway.of(system)
    streams = [gateway.open_stream(lease=Lease(FakeRef(), f"10.0.0.{n}"),
                                   remote_addr=f"10.0.0.{n}", user_agent="t",
                                   filter=Filter.parse(None, None), with_history=False)
               for n in range(50)]
    for _ in range(100):
        if gateway.stats().broker.clients == 50:
            break
        threading.Event().wait(0.02)
    caplog.set_level(logging.ERROR)
    actor_system.stop(system, timeout=5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    reasons = [s._outbox.closed_reason for s in streams]
    assert reasons == ["server shutting down"] * 50, set(reasons)


def test_streams_are_closed_even_when_the_broker_died(monkeypatch):
    """A core actor died (a bug) and the worker retires: the broker that ends the streams
    may be the one that died (or died with it: told to remember a batch by a dead history).
    The streams stayed open, receiving nothing, not even heartbeats, until gunicorn's
    graceful timeout cut them without their final comment (13 s with real gunicorn)."""
    from actors.broker import BrokerActor
    from actors.filters import Filter
    from actors.gateway import Gateway, Lease
    from actors.messages import SendHeartbeats
    from tests.fakes import FakeRef
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    system = actor_system.start(Settings.defaults())
    try:
        gateway = Gateway.of(system)
        streams = [gateway.open_stream(lease=Lease(FakeRef(), f"10.0.0.{n}"),
                                       remote_addr=f"10.0.0.{n}", user_agent="t",
                                       filter=Filter.parse(None, None), with_history=False)
                   for n in range(5)]
        for _ in range(100):
            if gateway.stats().broker.clients == 5:
                break
            threading.Event().wait(0.02)

        def broken(self):
            raise RuntimeError("a bug in the broker")
        monkeypatch.setattr(BrokerActor, "_heartbeat", broken)
        system.broker.tell(SendHeartbeats())
        assert system.broker.actor_stopped.wait(5)
        actor_system.close_streams(system, over=0.5, sleep=lambda s: None)
        for stream in streams:
            sent = b""
            for _ in range(5):                  # the opening id, then the close
                sent += stream.take(5)[0]
                if stream.finished:
                    break
            assert stream.closed_reason == "server shutting down"
            assert sent.endswith(b": closing: server shutting down\n")
    finally:
        actor_system.stop(system, timeout=5)


def test_a_dead_core_actor_is_reported_once_and_takes_no_other_actor_with_it(monkeypatch,
                                                                              caplog):
    """The history died of a bug: the broker then died of telling it the next batch
    (ActorDeadError), then whatever told the broker: each a traceback of its own, twice
    (pykka's ERROR and the actor's CRITICAL), and the broker that closes the streams gone.
    Now the failure's traceback is logged once, the actors that tell the dead one drop the
    message (the watchdog retires the worker), and the broker still serves."""
    import logging

    from actors.history import HistoryActor
    from actors.messages import Consumed, GetHealth, Remember
    from tests.fakes import make_event
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    real = HistoryActor.on_receive

    def failing(self, message):
        if isinstance(message, Remember):
            raise RuntimeError("a bug in the history")
        return real(self, message)
    monkeypatch.setattr(HistoryActor, "on_receive", failing)
    fatal = threading.Event()
    caplog.set_level(logging.INFO)
    system = actor_system.start(Settings.defaults(), on_fatal=lambda reason: fatal.set())
    try:
        system.broker.tell(Consumed((make_event(offset=1),)))
        assert system.history.actor_stopped.wait(5)
        system.broker.tell(Consumed((make_event(offset=2),)))
        assert system.broker.ask(GetHealth(), timeout=5).clients == 0     # still serving
        assert fatal.wait(10)
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and "a bug in the history" in str(tracebacks[0].exc_info[1])
    finally:
        actor_system.stop(system, timeout=5)
