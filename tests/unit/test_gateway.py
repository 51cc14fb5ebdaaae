"""actors/gateway.py, the core's one door, over fake refs: one ask timeout, one Unavailable."""
import threading

import pykka
import pytest

from actors.gateway import (
    ADMIT_TIMEOUT, ASK_TIMEOUT, OVERLOADED, STOPPING, Gateway, Lease, Refused, Unavailable,
)
from actors.messages import (
    Admission, Admit, DisconnectClient, GetClients, GetHealth, GetHistorySize, GetLimiterStats,
    GetStats, Release,
)
from actors.replies import ClientPage, LimiterStats, ServiceStats
from actors.settings import Settings
from tests.fakes import FakeRef, make_health, make_stats


class RaisingRef:
    def __init__(self, error):
        self.error, self.timeouts = error, []

    def ask(self, message, timeout=None):
        self.timeouts.append(timeout)
        raise self.error


def gateway(broker=None, history=None, limiter=None, stopping=None, core=None):
    return Gateway(Settings.defaults(), broker=broker or FakeRef(), history=history or FakeRef(),
                   limiter=limiter or FakeRef(), stopping=stopping, core=core,
                   count_actors=lambda: 7)


def test_stats_asks_the_broker_the_history_and_the_limiter_by_message():
    stats, limits = make_stats(), LimiterStats(enabled=True, streams=3)
    broker, history = FakeRef({GetStats: stats}), FakeRef({GetHistorySize: 42})
    limiter = FakeRef({GetLimiterStats: limits})
    figures = gateway(broker, history, limiter).stats()
    assert figures == ServiceStats(stats, 42, limits, 7)
    assert broker.mailbox == [GetStats()] and history.mailbox == [GetHistorySize()]
    assert limiter.mailbox == [GetLimiterStats()]


def test_the_stats_json_is_the_broker_figures_plus_three():
    figures = ServiceStats(make_stats(), 42, LimiterStats(), 7).to_json()
    assert figures["history_size"] == 42 and figures["actors"] == 7
    assert figures["limiter"] == {"enabled": False, "streams": 0, "addresses_streaming": 0,
                                  "subjects_streaming": 0, "buckets": 0, "buckets_evicted": 0,
                                  "refused": {}}
    assert set(figures) - set(make_stats().to_json()) == {"history_size", "limiter", "actors"}


def test_health_clients_and_disconnect_are_one_ask_each():
    health, page = make_health(), ClientPage(0)
    broker = FakeRef({GetHealth: health, GetClients: page, DisconnectClient: True})
    door = gateway(broker)
    assert door.health() is health and door.clients(10, 5) is page
    assert door.disconnect("abc", "maintenance") is True
    assert broker.mailbox == [GetHealth(), GetClients(10, 5),
                              DisconnectClient("abc", "maintenance")]


@pytest.mark.parametrize("error, message", [(pykka.Timeout("slow"), OVERLOADED),
                                            (pykka.ActorDeadError("gone"), STOPPING)])
def test_an_actor_that_does_not_answer_is_unavailable(error, message):
    with pytest.raises(Unavailable, match="retry") as caught:
        gateway(RaisingRef(error)).health()
    assert str(caught.value) == message


def test_a_stopping_system_is_unavailable_without_asking():
    stopping, broker = threading.Event(), FakeRef()
    stopping.set()
    with pytest.raises(Unavailable):
        gateway(broker, stopping=stopping).stats()
    assert broker.mailbox == []


def test_the_ask_never_outlasts_the_callers_deadline():
    ref = RaisingRef(pykka.Timeout("slow"))
    for deadline in (0.3, 1e9, None):
        with pytest.raises(Unavailable):
            gateway(ref).health(deadline)
    assert ref.timeouts == [0.3, ASK_TIMEOUT, ASK_TIMEOUT]


def test_stopped_actors_names_the_dead_core_actors():
    class Ref:
        def __init__(self, alive):
            self.alive = alive

        def is_alive(self):
            return self.alive
    door = gateway(core={"broker": Ref(True), "consumer": Ref(False), "history": Ref(False)})
    assert door.stopped_actors() == ["consumer", "history"]


def test_admission_refused_raises_and_takes_nothing():
    limiter = FakeRef({Admit: Admission(False, "rate_limited", 3)})
    with pytest.raises(Refused) as caught:
        gateway(limiter=limiter).admit("198.51.100.1", stream=True)
    assert (caught.value.reason, caught.value.retry_after) == ("rate_limited", 3)
    assert limiter.mailbox == [Admit("198.51.100.1", True)]


def test_a_stream_lease_is_released_once_and_a_request_lease_never():
    limiter = FakeRef({Admit: Admission(True)})
    door = gateway(limiter=limiter)
    with door.admit("a", stream=False):
        pass
    lease = door.admit("b", stream=True)
    with lease:
        pass                           # not handed over: released on the way out
    lease.release()
    assert limiter.of(Release) == [Release("b")]


def test_a_lease_handed_over_stays_held_until_released():
    limiter = FakeRef()
    with Lease(limiter, "c") as lease:
        lease.hand_over()
    assert limiter.of(Release) == []
    lease.release()
    lease.release()
    assert limiter.of(Release) == [Release("c")]


# -- subscriber auth ---------------------------------------------------------------------------

def test_a_subjects_stream_is_admitted_and_released_with_its_subject():
    limiter = FakeRef({Admit: Admission(True)})
    lease = gateway(limiter=limiter).admit("198.51.100.1", stream=True, subject="alice")
    assert limiter.of(Admit) == [Admit("198.51.100.1", True, subject="alice")]
    lease.release()
    assert limiter.of(Release) == [Release("198.51.100.1", subject="alice")]


def test_disconnect_subject_asks_the_broker_and_answers_how_many_ended():
    from actors.messages import DisconnectSubject
    broker = FakeRef({DisconnectSubject: 3})
    assert gateway(broker=broker).disconnect_subject("alice", "revoked") == 3
    assert broker.mailbox == [DisconnectSubject("alice", "revoked")]


def test_open_stream_gives_the_client_its_subject_scope_and_expiry(monkeypatch):
    from actors import gateway as core_gateway
    from actors.auth.identity import Identity
    from actors.filters import Filter
    started = []
    monkeypatch.setattr(core_gateway.ClientActor, "start",
                        lambda **kwargs: started.append(kwargs) or FakeRef())
    door = gateway()
    identity = Identity("alice", ("order.*",), ("*",), 1234.5)
    stream = door.open_stream(lease=Lease(FakeRef(), "a"), remote_addr="a", user_agent="t",
                              filter=Filter(("order.*",)), identity=identity,
                              scope="event_types=order.*&sources=*")
    info = started[0]["info"]
    assert stream.info is info
    assert (info.subject, info.scope, info.expires_at) == (
        "alice", "event_types=order.*&sources=*", 1234.5)
    anonymous = door.open_stream(lease=Lease(FakeRef(), "a"), remote_addr="a", user_agent="t",
                                 filter=Filter())
    assert (anonymous.info.subject, anonymous.info.scope, anonymous.info.expires_at) == (
        None, "", None)


def test_the_gateway_has_an_authenticator_only_with_auth_on():
    from types import SimpleNamespace

    from actors.auth.authenticator import Authenticator

    def system(**overrides):
        return SimpleNamespace(settings=Settings.defaults(**overrides), broker=FakeRef(),
                               history=FakeRef(), limiter=FakeRef(), stopping=None, core={})
    assert Gateway.of(system()).auth is None
    on = Gateway.of(system(auth_mode="required", auth_jwt_algorithms=("HS256",),
                           auth_jwt_secret=b"s" * 32))
    assert isinstance(on.auth, Authenticator) and on.auth.mode == "required"


def test_a_single_workers_gateway_is_its_own_local_gateway():
    """web/status.py's /livez asks `gateway.local` (the instance's gateway has one too)."""
    one = gateway()
    assert one.local is one



class PendingRef:
    """Records when it is asked and when its answer is waited for (a Pykka future)."""

    def __init__(self, name, answer, log, error=None):
        self.name, self.answer, self.log, self.error = name, answer, log, error
        self.timeouts = []

    def ask(self, message, timeout=None, block=True):
        self.log.append(f"ask {self.name}")
        if block:
            self.log.append(f"answer {self.name}")
            return self.answer
        ref = self

        class Future:
            def get(self, timeout=None):
                ref.timeouts.append(timeout)
                ref.log.append(f"answer {ref.name}")
                if ref.error is not None:
                    raise ref.error
                return ref.answer
        return Future()


def test_stats_asks_all_three_actors_before_waiting_for_any_answer():
    """Under load each answer waits for the hub's queued wake-ups: asked one after the other,
    GetStats waited for them three times."""
    log, stats, limits = [], make_stats(), LimiterStats()
    door = gateway(PendingRef("broker", stats, log), PendingRef("history", 42, log),
                   PendingRef("limiter", limits, log))
    assert door.stats() == ServiceStats(stats, 42, limits, 7)
    assert log == ["ask broker", "ask history", "ask limiter",
                   "answer broker", "answer history", "answer limiter"]


@pytest.mark.parametrize("error, message", [(pykka.Timeout("slow"), OVERLOADED),
                                            (pykka.ActorDeadError("gone"), STOPPING)])
def test_stats_share_one_deadline_and_a_silent_actor_makes_them_unavailable(error, message):
    log = []
    history = PendingRef("history", 42, log, error=error)
    door = gateway(PendingRef("broker", make_stats(), log), history,
                   PendingRef("limiter", LimiterStats(), log))
    with pytest.raises(Unavailable) as caught:
        door.stats(0.5)
    assert str(caught.value) == message
    assert 0 < history.timeouts[0] <= 0.5


# -- an admission given up on ------------------------------------------------------------------

def test_an_admission_given_up_on_keeps_no_slot_when_the_limiter_reaches_it_late():
    """In a reconnect storm the limiter can reach an Admit after its asker gave up (503). The
    slot it would grant then has no stream to give it back: it must not be taken, or the
    address (and the instance) would count a stream forever."""
    from actors.limiter import RateLimiterActor

    busy = threading.Event()

    class BusyLimiter(RateLimiterActor):
        def on_receive(self, message):
            busy.wait(5)                # the storm: nothing is answered until it passes
            return super().on_receive(message)

    settings = Settings.defaults(rate_limit_enabled=False, sse_max_clients_per_ip=1)
    limiter = BusyLimiter.start(settings=settings)
    try:
        door = Gateway(settings, broker=FakeRef(), history=FakeRef(), limiter=limiter,
                       admit_timeout=0.1, count_actors=lambda: 1)
        with pytest.raises(Unavailable, match="overloaded"):
            door.admit("198.51.100.7", stream=True, subject="alice")
        busy.set()
        figures = limiter.ask(GetLimiterStats(), timeout=5)
        assert (figures.streams, figures.subjects_streaming) == (0, 0)
        assert figures.refused == {"overloaded": 1}
        lease = door.admit("198.51.100.7", stream=True)     # its one slot is free
        lease.release()
        assert limiter.ask(GetLimiterStats(), timeout=5).streams == 0
    finally:
        busy.set()
        limiter.stop()


def test_admission_waits_longer_than_the_other_questions():
    """A storm queues admissions for seconds; only a stuck limiter should get a 503."""
    limiter = PendingRef("limiter", Admission(True), [])
    gateway(limiter=limiter).admit("198.51.100.7", stream=False)
    assert limiter.timeouts == [ADMIT_TIMEOUT] and ADMIT_TIMEOUT > ASK_TIMEOUT


def test_open_stream_subscribes_before_it_returns_so_a_greeted_client_is_known(monkeypatch):
    """The stream's greeting (`: client <id>`) is written once open_stream returns: the
    broker must have the Subscribe by then, or a GetStats or a DisconnectClient asked after the
    client read its id finds no such client (CI: 232 of 300 greeted streams counted)."""
    from actors import gateway as core_gateway
    from actors.filters import Filter
    from actors.messages import Subscribe
    from actors.resume import Resume
    never_run = FakeRef()       # an actor whose on_start has not run yet
    monkeypatch.setattr(core_gateway.ClientActor, "start", lambda **kwargs: never_run)
    broker = FakeRef()
    resume = Resume(offsets={("blog.posts", 0): 3}, recreated={("blog.posts", 1): 9},
                    unverified={})
    stream = gateway(broker).open_stream(
        lease=Lease(FakeRef(), "a"), remote_addr="a", user_agent="t", filter=Filter(),
        with_history=False, since_ms=5, resume=resume)
    [subscribe] = broker.of(Subscribe)
    assert subscribe == Subscribe(stream.info, subscribe.outbox, never_run,
                                  {("blog.posts", 0): 3}, False, 5, {("blog.posts", 1): 9}, {})


def test_open_stream_with_the_broker_gone_is_unavailable_and_stops_the_client(monkeypatch):
    from actors import gateway as core_gateway
    from actors.filters import Filter
    stopped = []

    class Client(FakeRef):
        def stop(self, block=True):
            stopped.append(block)

    class DeadBroker(FakeRef):
        def tell(self, message):
            raise pykka.ActorDeadError("broker stopped")
    monkeypatch.setattr(core_gateway.ClientActor, "start", lambda **kwargs: Client())
    with pytest.raises(Unavailable):
        gateway(DeadBroker()).open_stream(lease=Lease(FakeRef(), "a"), remote_addr="a",
                                          user_agent="t", filter=Filter())
    assert stopped == [False]


def test_health_is_not_ok_while_a_core_actor_is_dead():
    """The history, consumer, replay or limiter died (a bug; the worker retires): /health,
    /readyz and GetHealth said ok with Kafka connected, since only the broker is asked, which
    knows Kafka's state, not whether events still flow."""
    class Ref:
        def __init__(self, alive):
            self.alive = alive

        def is_alive(self):
            return self.alive
    broker = FakeRef({GetHealth: make_health()})
    door = gateway(broker, core={"broker": Ref(True), "consumer": Ref(False),
                                 "history": Ref(True)})
    report = door.health()
    assert not report.ok and report.to_json()["status"] == "degraded"
    assert report.kafka.state == "connected" and report.clients == 0
    assert "actor(s) consumer stopped" in report.kafka.detail
    assert "actor(s) consumer stopped" in report.not_ready()
    assert gateway(broker, core={"broker": Ref(True)}).health() == make_health()


def test_a_core_that_does_not_answer_is_logged_once_a_minute_with_the_count(caplog, monkeypatch):
    """A storm of 6,000 opening streams on one worker (real gunicorn) logged 1,113 lines 'no
    answer to Admit within 10.00 s' in 20 s, one per request answered 503."""
    import logging

    from actors import gateway as gateway_module
    from actors.logs import LogBudget
    monkeypatch.setattr(gateway_module, "SLOW_LOG", LogBudget(1, 60.0))
    now = [1000.0]
    monkeypatch.setattr(gateway_module.time, "monotonic", lambda: now[0])
    door = gateway(RaisingRef(pykka.Timeout("slow")))
    with caplog.at_level(logging.WARNING, logger="actors.gateway"):
        for _ in range(50):
            with pytest.raises(Unavailable):
                door.health()
        now[0] += 61
        with pytest.raises(Unavailable):
            door.health()
    lines = [r.getMessage() for r in caplog.records if r.name == "actors.gateway"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("no answer to GetHealth within") and "503" in lines[0]
    assert lines[1].endswith("(+49 more since the last report)"), lines[1]


# -- a mutation audit's findings ---------------------------------------------------------------

def test_an_admission_the_limiter_took_up_at_the_deadline_is_answered_not_refused():
    """The limiter took the Admit up (a slot is taken) just as the admission deadline passed:
    its answer is moments away and is read. A 503 then would keep the slot forever, and the
    address would count one stream too many until the worker restarts."""
    gets = []

    class Late:
        """A future whose actor takes the question up as the first wait runs out."""

        def __init__(self, message):
            self.message = message

        def get(self, timeout=None):
            gets.append(timeout)
            if len(gets) == 1:
                assert self.message.waiting.take()      # the limiter: the asker still waits
                raise pykka.Timeout("admission deadline")
            if not timeout:
                raise pykka.Timeout("the answer is on its way")
            return Admission(True)

    class LateLimiter(FakeRef):
        def ask(self, message, timeout=None, block=True):
            self.mailbox.append(message)
            return Late(message)
    limiter = LateLimiter()
    lease = gateway(limiter=limiter).admit("198.51.100.7", stream=True)
    assert gets == [ADMIT_TIMEOUT, ASK_TIMEOUT]
    lease.release()                                     # the slot the limiter took, given back
    assert limiter.of(Release) == [Release("198.51.100.7")]


def test_health_is_not_ready_while_the_issuers_signing_keys_are_not_fetched():
    """AUTH_MODE=required with keys from a JWKS not fetched yet answers every stream 503:
    /readyz and the gRPC health service must say so, or the load balancer sends clients."""
    from types import SimpleNamespace
    waiting = "subscriber auth: the issuer's signing keys (AUTH_JWKS_URL) have not been fetched"
    auth = SimpleNamespace(keys_pending=lambda: waiting)
    door = Gateway(Settings.defaults(), broker=FakeRef({GetHealth: make_health()}),
                   history=FakeRef(), limiter=FakeRef(), auth=auth, count_actors=lambda: 7)
    report = door.health()
    assert report.keys_pending == waiting and report.not_ready() == waiting
    auth.keys_pending = lambda: ""                      # fetched: ready
    assert door.health() == make_health() and door.health().not_ready() == ""


class Slow(PendingRef):
    """Answers after `takes` seconds of a fake clock (a busy actor)."""

    def __init__(self, name, answer, now, takes):
        super().__init__(name, answer, [])
        self.now, self.takes = now, takes

    def ask(self, message, timeout=None, block=True):
        future, slow = super().ask(message, timeout, block), self

        class Later:
            def get(self, timeout=None):
                slow.now[0] += slow.takes
                return future.get(timeout)
        return Later()


def test_stats_wait_for_their_three_answers_within_the_callers_one_deadline(monkeypatch):
    """GetStats with a 0.5 s deadline: each answer waits for what is left of it, not 0.5 s
    again, or a busy core keeps the call past its deadline (the client sees
    DEADLINE_EXCEEDED, not the UNAVAILABLE that says retry)."""
    from actors import gateway as gateway_module
    now = [100.0]
    monkeypatch.setattr(gateway_module.time, "monotonic", lambda: now[0])
    refs = [Slow("broker", make_stats(), now, 0.2), Slow("history", 42, now, 0.2),
            Slow("limiter", LimiterStats(), now, 0.2)]
    gateway(*refs).stats(0.5)
    assert [ref.timeouts for ref in refs] == [[0.5], [pytest.approx(0.3)],
                                              [pytest.approx(0.1)]]


def test_stats_that_a_silent_actor_holds_up_are_logged_with_its_question(caplog, monkeypatch):
    """The operator's one line a minute says which actor did not answer: the history's size
    (GetHistorySize) here, not the broker's figures asked before it."""
    import logging

    from actors import gateway as gateway_module
    from actors.logs import LogBudget
    monkeypatch.setattr(gateway_module, "SLOW_LOG", LogBudget(1, 60.0))
    log = []
    door = gateway(PendingRef("broker", make_stats(), log),
                   PendingRef("history", 42, log, error=pykka.Timeout("slow")),
                   PendingRef("limiter", LimiterStats(), log))
    with caplog.at_level(logging.WARNING, logger="actors.gateway"):
        with pytest.raises(Unavailable, match="overloaded"):
            door.stats(0.5)
    [line] = [r.getMessage() for r in caplog.records if r.name == "actors.gateway"]
    assert line.startswith("no answer to GetHistorySize within 0.50 s"), line


def test_a_stream_shows_its_outbox_and_keeps_its_byte_budget(monkeypatch):
    """A client's queue holds SSE_EVENT_BUFFER_SIZE x SSE_MAX_EVENT_BYTES at most (README):
    past it, a slow client's events are dropped and counted in its 'disconnected' line; a
    client that goes away ends its stream (web/close_watch.py calls close)."""
    import time

    from actors import gateway as core_gateway
    from actors.filters import Filter
    started = []
    monkeypatch.setattr(core_gateway.ClientActor, "start",
                        lambda **kwargs: started.append(kwargs) or FakeRef())
    settings = Settings.defaults(sse_event_buffer_size=2, sse_max_event_bytes=10)
    door = Gateway(settings, broker=FakeRef(), history=FakeRef(), limiter=FakeRef(),
                   count_actors=lambda: 1)
    before = time.time()
    stream = door.open_stream(lease=Lease(FakeRef(), "a"), remote_addr="a", user_agent="t",
                              filter=Filter())
    assert before <= stream.info.connected_at <= time.time()    # Unix time, as listed
    outbox = started[0]["outbox"]
    assert outbox.offer(b"x" * 15, 1, "1-0")
    assert not outbox.offer(b"y" * 15, 1, "1-1")     # 30 bytes > 2 x 10: dropped
    assert stream.dropped == 1
    assert stream.take(0) == (b"x" * 15, 1, "1-0")
    stream.written(1, "1-0")
    assert stream.sent == 1 and not stream.finished
    stream.close("client went away")
    assert stream.finished and stream.closed_reason == "client went away"


def test_a_lease_given_back_to_a_stopped_limiter_is_given_back_quietly():
    """While the worker stops, streams end after their limiter: each end gives its slot back
    to no one, without an error (the counts go with the limiter)."""
    class Stopped(FakeRef):
        def tell(self, message):
            raise pykka.ActorDeadError("limiter stopped")
    lease = Lease(Stopped(), "198.51.100.7")
    lease.release()
    lease.release()

