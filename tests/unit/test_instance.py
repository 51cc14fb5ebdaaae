"""One instance of several workers: InstanceGateway over fake peers, then over real sockets.

The fake peers answer from FakeGateways; the real ones are local gateways served by
rpc.peers.PeerServer on Unix sockets in one process, asked through the public servicer.
"""
import errno
import json
import os
import socket
import statistics
import time
from types import SimpleNamespace

import grpc
import pytest

from actors.gateway import Unavailable
from actors.instance import InstanceGateway
from actors.replies import ClientPage, LimiterStats, combine_health
from rpc import sse_pb2 as pb
from rpc.peers import PeerAnswer, Peers, PeerServer, socket_path
from rpc.servicer import ManagementServicer
from tests.fakes import FakeGateway, make_client, make_health, make_stats
from tests.unit.rpc_fakes import SubjectGateway


class FakePeers:
    """Peers whose answers come from FakeGateways; a name in `silent` does not answer."""

    def __init__(self, gateways: dict, silent=()):
        self.gateways, self.silent = gateways, set(silent)
        self.timeouts = []

    def ask(self, method, *args, timeout):
        self.timeouts.append(timeout)

        def collect():
            return [PeerAnswer(name, silent="no answer within the deadline")
                    if name in self.silent
                    else PeerAnswer(name, getattr(gateway, method)(*args, timeout=timeout))
                    for name, gateway in self.gateways.items()]
        return collect

    def close(self):
        pass


def gateway_with(clients=(), **kwargs):
    return SubjectGateway(clients=clients, connected={c.id for c in clients}, **kwargs)


def instance(local, silent=(), **peers):
    return InstanceGateway(local, FakePeers(peers, silent))


# -- stats ----------------------------------------------------------------------------------
def test_stats_sum_the_workers_deliveries_and_count_each_record_once():
    one = FakeGateway(stats=make_stats(clients=2, kafka_lag={"t:0": 3, "t:1": 1},
                                       uptime_seconds=5.0),
                      limiter=LimiterStats(True, streams=3, refused={"rate_limited": 1}))
    two = FakeGateway(stats=make_stats(clients=1, kafka_lag={"t:0": 7}, kafka_state="connecting",
                                       uptime_seconds=9.0),
                      limiter=LimiterStats(True, streams=3, refused={"rate_limited": 2,
                                                                     "too_many_streams": 1}))
    figures = instance(one, two=two).stats()
    broker = figures.broker
    assert broker.clients == 3 and broker.events_delivered == 34
    assert broker.delivered_per_topic == {"blog.posts": 28, "link.clicks": 6}
    assert broker.kafka_lag == {"t:0": 7, "t:1": 1}           # the slowest worker's lag
    assert broker.kafka_state == "connecting" and broker.uptime_seconds == 9.0
    # every worker reads every record: the records read count once, the history is one
    assert broker.events_consumed == 10 and broker.per_topic == {"blog.posts": 7, "link.clicks": 3}
    assert broker.invalid_events == 1 and broker.tombstones == 2
    assert figures.history_size == 42 and figures.actors == 10
    # the shared limiter's table is read once, each worker's refusals are added
    assert figures.limiter.streams == 3
    assert figures.limiter.refused == {"rate_limited": 3, "too_many_streams": 1}
    assert figures.to_json()["clients"] == 3


def test_without_peers_the_instance_answers_exactly_like_the_local_gateway():
    local = FakeGateway(clients=[make_client(1)])
    alone = InstanceGateway(local)
    assert alone.stats() is local.figures
    assert alone.health() is local.report
    assert alone.clients(10, 0) == local.clients(10, 0)


def test_a_silent_peer_makes_stats_unavailable_rather_than_a_smaller_sum():
    with pytest.raises(Unavailable, match="worker 2 .*no answer within the deadline.*retry"):
        instance(FakeGateway(), silent={"worker 2"}, **{"worker 2": FakeGateway()}).stats()


def test_peers_get_the_callers_deadline_less_a_margin():
    peers = FakePeers({"two": FakeGateway()})
    local = FakeGateway()
    gateway = InstanceGateway(local, peers, ask_timeout=2.0)
    gateway.stats(0.5)
    gateway.stats(None)
    gateway.stats(10.0)
    assert local.deadlines == [0.5, None, 10.0]     # the local gateway clamps its own ask
    assert peers.timeouts == pytest.approx([0.4, 1.9, 1.9])
    assert 0 < gateway.peer_timeout(0.001)


# -- clients --------------------------------------------------------------------------------
def test_clients_are_paged_over_every_worker_in_one_order_with_ties_broken_by_id():
    # two workers, interleaved connection times; c5 and c0b share c5's time
    local = gateway_with([make_client(n) for n in (0, 2, 5, 6)])
    other = gateway_with([make_client(n) for n in (1, 3, 4)]
                         + [make_client(5, id="c0b")])
    whole = instance(local, two=other)
    everyone = [c.id for c in whole.clients(100, 0).clients]
    assert everyone == ["c0", "c1", "c2", "c3", "c4", "c0b", "c5", "c6"]
    pages = [whole.clients(3, offset) for offset in (0, 3, 6, 9)]
    assert [c.id for page in pages for c in page.clients] == everyone
    assert {page.total for page in pages} == {8}
    assert [len(page.clients) for page in pages] == [3, 3, 2, 0]
    # each worker was asked for its first offset + limit clients
    assert other.of("clients")[-1] == ("clients", 12, 0)


def test_a_count_alone_asks_no_worker_for_clients_however_far_the_offset():
    # GetClients {limit: 0, offset: N} wants the total only: no worker sends N summaries
    local = gateway_with([make_client(n) for n in (0, 2)])
    other = gateway_with([make_client(n) for n in (1, 3, 4)])
    page = instance(local, two=other).clients(0, 5000)
    assert page.total == 5 and page.clients == ()
    assert other.of("clients")[-1] == ("clients", 0, 0)
    assert local.of("clients")[-1] == ("clients", 0, 0)


def test_a_silent_peer_makes_the_page_unavailable():
    with pytest.raises(Unavailable):
        instance(gateway_with(), silent={"two"}, two=gateway_with()).clients(10, 0)


# -- disconnect -----------------------------------------------------------------------------
def test_disconnect_reaches_the_worker_that_holds_the_client():
    local, other = gateway_with([make_client(1)]), gateway_with([make_client(2)])
    whole = instance(local, two=other)
    assert whole.disconnect("c2", "bye") is True
    assert other.of("disconnect") == [("disconnect", "c2", "bye")]
    assert whole.disconnect("c9", "bye") is False


def test_disconnect_found_on_one_worker_ignores_a_silent_other():
    whole = instance(gateway_with([make_client(1)]), silent={"two"}, two=gateway_with())
    assert whole.disconnect("c1", "bye") is True


def test_disconnect_not_found_while_a_worker_is_silent_is_unavailable_not_not_found():
    whole = instance(gateway_with(), silent={"two"}, two=gateway_with([make_client(2)]))
    with pytest.raises(Unavailable, match="two"):
        whole.disconnect("c2", "bye")


def test_disconnect_subject_ends_the_streams_of_every_worker():
    local, other = SubjectGateway(streams={"alice": 2}), SubjectGateway(streams={"alice": 1})
    assert instance(local, two=other).disconnect_subject("alice", "revoked") == 3
    with pytest.raises(Unavailable, match="1 stream.*ended.*end the rest"):
        instance(SubjectGateway(streams={"alice": 1}), silent={"two"},
                 two=SubjectGateway()).disconnect_subject("alice", "revoked")


# -- health ---------------------------------------------------------------------------------
def test_health_is_ok_only_when_every_worker_is():
    ok = make_health(clients=2)
    assert instance(FakeGateway(health=ok), two=FakeGateway(health=make_health(clients=1))
                    ).health().to_json() == {**ok.to_json(), "clients": 3}
    cold = instance(FakeGateway(health=ok), two=FakeGateway(health=make_health(warm=False)))
    assert cold.health().ok and not cold.health().warm
    down = instance(FakeGateway(health=ok),
                    two=FakeGateway(health=make_health("unreachable", detail="refused")))
    report = down.health()
    assert not report.ok and report.kafka.state == "unreachable"
    assert report.kafka.detail == "refused"


def test_a_replacement_worker_still_connecting_leaves_the_instance_healthy_not_ready():
    """After a worker crash its replacement connects to Kafka for a while; the other worker
    serves. /health must not take the instance out of a load balancer meanwhile; /readyz (and
    gRPC health) still wait for every worker."""
    starting = make_health("connecting", detail="bootstrap kafka:9092", partitions=())
    report = instance(FakeGateway(health=make_health(clients=4)),
                      two=FakeGateway(health=starting)).health()
    assert report.ok and report.status == "ok" and report.clients == 4
    assert report.kafka.state == "connecting" and "bootstrap" in report.kafka.detail
    assert "connecting" in report.not_ready()
    nobody = instance(FakeGateway(health=starting), two=FakeGateway(health=starting)).health()
    assert not nobody.ok and nobody.not_ready()


def test_a_silent_worker_makes_the_instance_degraded_and_says_which():
    report = instance(FakeGateway(), silent={"worker 7"}, **{"worker 7": FakeGateway()}).health()
    assert report.status == "degraded" and "worker 7 did not answer" in report.kafka.detail


def test_a_worker_whose_tokens_cannot_be_verified_yet_makes_the_instance_not_ready():
    from dataclasses import replace

    from rpc import peer_codec
    waiting = replace(make_health(), keys_pending="subscriber auth: keys not fetched yet")
    assert peer_codec.health(json.loads(peer_codec.encode(waiting))) == waiting
    report = instance(FakeGateway(health=make_health()), two=FakeGateway(health=waiting)).health()
    assert report.ok and report.not_ready() == "subscriber auth: keys not fetched yet"


def test_combining_one_health_changes_nothing():
    one = make_health()
    assert combine_health([one]) is one


# -- this worker's own ------------------------------------------------------------------------
def test_admission_streams_and_auth_stay_with_the_local_gateway():
    local = SimpleNamespace(settings="S", auth="A", admit=lambda *a, **k: ("admit", a, k),
                            open_stream=lambda **k: ("open", k), stopped_actors=lambda: ["x"])
    whole = InstanceGateway(local, FakePeers({}))
    assert (whole.settings, whole.auth, whole.local) == ("S", "A", local)
    assert whole.admit("1.2.3.4", stream=True) == ("admit", ("1.2.3.4",), {"stream": True})
    assert whole.open_stream(lease=1) == ("open", {"lease": 1})
    assert whole.stopped_actors() == ["x"]


# -- real sockets -----------------------------------------------------------------------------
class Slow(FakeGateway):
    """Answers stats only after `delay` seconds (a busy worker)."""

    def __init__(self, delay, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def stats(self, timeout=None):
        time.sleep(self.delay)
        return super().stats(timeout)


@pytest.fixture
def two_workers(tmp_path):
    """Worker A (local, pid 1001) and worker B (a peer on its socket, pid 1002)."""
    directory = str(tmp_path)
    a = gateway_with([make_client(n) for n in (0, 2, 4)], stats=make_stats(clients=3),
                     health=make_health(clients=3), streams={"alice": 1})
    b = gateway_with([make_client(n) for n in (1, 3)], stats=make_stats(clients=2),
                     health=make_health(clients=2), streams={"alice": 2})
    server_b = PeerServer(b, socket_path(directory, 1002)).start()
    peers = Peers(directory, own_path=socket_path(directory, 1001))
    whole = InstanceGateway(a, peers)
    yield SimpleNamespace(dir=directory, a=a, b=b, server_b=server_b, peers=peers,
                          servicer=ManagementServicer(whole), whole=whole)
    server_b.stop()


class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(f"{code}: {details}")
        self.code = code


class Context:
    def __init__(self, remaining=None):
        self.remaining = remaining

    def abort(self, code, details):
        raise Aborted(code, details)

    def time_remaining(self):
        return self.remaining


def test_the_public_servicer_answers_for_both_workers(two_workers):
    servicer = two_workers.servicer
    stats = servicer.GetStats(pb.GetStatsRequest(), Context(5.0))
    assert stats.clients == 5 and stats.events_delivered == 34 and stats.history_size == 42
    page = servicer.GetClients(pb.GetClientsRequest(limit=3, offset=1), Context(5.0))
    assert page.total == 5 and [c.id for c in page.clients] == ["c1", "c2", "c3"]
    assert page.clients[0].connected_at.ToMicroseconds() == round(make_client(1).connected_at * 1e6)
    reply = servicer.DisconnectClient(pb.DisconnectClientRequest(client_id="c3"), Context(5.0))
    assert reply.disconnected and two_workers.b.of("disconnect")[0][1] == "c3"
    ended = servicer.DisconnectSubject(pb.DisconnectSubjectRequest(subject="alice"), Context(5.0))
    assert ended.disconnected == 3
    health = servicer.GetHealth(pb.GetHealthRequest(), Context(5.0))
    assert health.status == "ok" and health.clients == 5
    # the peer was given the caller's deadline, less the margin to answer within it
    assert 1.8 < two_workers.b.deadlines[0] < 1.9


def test_page_tokens_page_both_workers_while_clients_of_either_leave(two_workers):
    """The page_token crosses the peer socket (as JSON) and each worker counts from it."""
    servicer, ids = two_workers.servicer, []
    first = servicer.GetClients(pb.GetClientsRequest(limit=2), Context(5.0))
    ids += [c.id for c in first.clients]
    two_workers.a.everyone.remove(two_workers.a.everyone[0])      # c0 (worker A) leaves
    two_workers.b.everyone.remove(two_workers.b.everyone[0])      # c1 (worker B) leaves
    rest = servicer.GetClients(pb.GetClientsRequest(limit=5, page_token=first.next_page_token),
                               Context(5.0))
    ids += [c.id for c in rest.clients]
    assert ids == ["c0", "c1", "c2", "c3", "c4"] and rest.total == 3
    assert not rest.next_page_token
    assert two_workers.b.of("clients")[-1] == ("clients", 6, 0, [make_client(1).opened, "c1"])


def test_the_full_figures_cross_the_socket(two_workers):
    figures = two_workers.whole.stats(5.0)
    assert figures.broker.dropped_per_topic == {"blog.posts": 6}
    assert figures.broker.tombstones_per_topic == {"blog.posts": 2}
    assert figures.to_json()["limiter"] == LimiterStats().to_json()
    assert two_workers.whole.health(5.0).warm


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _question(method="stats", args=(), left=5.0) -> bytes:
    import json
    return json.dumps({"method": method, "args": list(args),
                       "deadline": time.monotonic() + left}).encode()


def test_a_worker_refuses_what_it_cannot_read_and_keeps_answering(two_workers):
    """Garbage, an unknown method, wrong arguments, a nesting too deep, an oversized frame or
    a silent asker on a worker's socket get a refusal or nothing: never a crash, and the next
    question is answered."""
    from rpc import peers as wire
    path = socket_path(two_workers.dir, 1002)

    def ask_raw(payload: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(payload)
            return sock.recv(1 << 16)

    assert ask_raw(_frame(b"not json"))[4:5] == wire.REFUSED
    refused = ask_raw(_frame(_question("shutdown")))
    assert refused[4:5] == wire.REFUSED and b"unknown method 'shutdown'" in refused
    wrong = ask_raw(_frame(_question("clients")))          # no limit given
    assert wrong[4:5] == wire.REFUSED and b"TypeError" in wrong
    assert ask_raw(_frame(b"[" * 60_000))[4:5] == wire.REFUSED      # RecursionError
    too_large = ask_raw((wire.MAX_QUESTION + 1).to_bytes(4, "big"))
    assert too_large[4:5] == wire.REFUSED and b"a question of 65537 bytes" in too_large
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(path)              # says nothing: holds no one up
        assert two_workers.whole.clients(10, 0, timeout=5.0).total == 5
    with pytest.raises(ValueError, match="unknown method"):
        two_workers.peers.ask("shutdown", timeout=1.0)


def test_a_question_read_after_its_deadline_is_dropped_unasked():
    """A worker stopped (SIGSTOP) and resumed finds old questions in its queue: their askers
    gave up (an operator was told UNAVAILABLE), so a disconnect among them must not run."""
    from rpc import peers as wire
    gateway = FakeGateway()
    assert wire.answer(gateway, _question("disconnect", ("c1", "operator"), left=-0.1)) is None
    assert gateway.of("disconnect") == []
    assert wire.answer(gateway, _question("disconnect", ("c1", "operator")))[:1] == wire.ANSWER


def test_a_stuck_or_trickling_worker_cannot_hold_the_call_past_its_deadline(two_workers):
    """A worker that accepts nothing (its queue full) answers at once as silent, without the
    asker spinning on connect; one whose reply trickles in is cut at the deadline."""
    import threading
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(socket_path(two_workers.dir, 1008))
    stuck.listen(0)
    queued = []
    for _ in range(8):                  # fill its queue: the next connect would have to wait
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.setblocking(False)
        if extra.connect_ex(stuck.getsockname()) != 0:
            extra.close()
            break
        queued.append(extra)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="worker 1008 .not taking questions"):
            two_workers.whole.stats(2.0)
        assert time.monotonic() - started < 0.5
    finally:
        for sock in queued:
            sock.close()
        stuck.close()
        os.unlink(socket_path(two_workers.dir, 1008))

    trickle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trickle.bind(socket_path(two_workers.dir, 1009))
    trickle.listen(4)

    def drip():
        connection, _ = trickle.accept()
        with connection:
            for byte in _frame(b"A" + b" " * 30):
                time.sleep(0.2)
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
    threading.Thread(target=drip, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="worker 1009 .no answer within the deadline"):
            two_workers.whole.stats(1.0)
        assert time.monotonic() - started < 1.5
    finally:
        trickle.close()
        os.unlink(socket_path(two_workers.dir, 1009))


def test_a_dead_workers_socket_is_skipped_and_removed(two_workers):
    dead = socket_path(two_workers.dir, 1003)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(dead)            # the file of a worker killed with SIGKILL: nobody listens
    stale.close()
    assert os.path.exists(dead)
    assert two_workers.whole.stats(5.0).broker.clients == 5
    assert not os.path.exists(dead)
    assert two_workers.whole.clients(10, 0, timeout=5.0).total == 5


def test_a_stopped_worker_leaves_and_a_new_one_joins(two_workers, tmp_path):
    two_workers.server_b.stop()
    assert not os.path.exists(two_workers.server_b.path)
    assert two_workers.whole.clients(10, 0, timeout=5.0).total == 3
    c = gateway_with([make_client(9)])
    joined = PeerServer(c, socket_path(two_workers.dir, 1004)).start()
    try:
        assert two_workers.whole.clients(10, 0, timeout=5.0).total == 4
    finally:
        joined.stop()


def test_a_peer_that_does_not_answer_in_time_cannot_hang_the_call(two_workers):
    slow = PeerServer(Slow(3.0), socket_path(two_workers.dir, 1005)).start()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="worker 1005.*no answer within the deadline"):
            two_workers.whole.stats(0.5)
        assert time.monotonic() - started < 1.5
        with pytest.raises(Aborted) as aborted:
            two_workers.servicer.GetStats(pb.GetStatsRequest(), Context(0.5))
        assert aborted.value.code == grpc.StatusCode.UNAVAILABLE
        assert two_workers.whole.clients(10, 0, timeout=5.0).total == 5     # only stats are slow
    finally:
        slow.stop()


def test_cost_of_an_instance_get_stats(two_workers, capsys):
    """ms per GetStats through the servicer, local vs two workers (printed for the record);
    the instance's median stays far below the 50 ms the issue allows at p99 under load."""
    local = ManagementServicer(two_workers.a)
    for name, servicer in (("local", local), ("instance", two_workers.servicer)):
        times = []
        for _ in range(300):
            started = time.perf_counter()
            servicer.GetStats(pb.GetStatsRequest(), Context(5.0))
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        with capsys.disabled():
            print(f"\n{name} GetStats: p50 {statistics.median(times):.3f} ms, "
                  f"p99 {times[int(len(times) * 0.99)]:.3f} ms")
    assert statistics.median(times) < 25


# -- the private codec ------------------------------------------------------------------------
def test_every_figure_survives_the_trip_between_workers():
    from actors.replies import ServiceStats
    from rpc import peer_codec
    figures = ServiceStats(make_stats(), 42, LimiterStats(True, 3, 2, 5, 1, {"rate_limited": 4},
                                                          subjects_streaming=2), 7)
    assert peer_codec.decode("stats", peer_codec.encode(figures)) == figures
    health = make_health(partitions=(("t", 0), ("t", 1)), clients=3, warm=False)
    assert peer_codec.decode("health", peer_codec.encode(health)) == health
    page = ClientPage(9, (make_client(1, subject="alice", sources=("s",)), make_client(2)))
    assert peer_codec.decode("clients", peer_codec.encode(page)) == page
    assert peer_codec.decode("disconnect", peer_codec.encode(True)) is True
    assert peer_codec.decode("disconnect_subject", peer_codec.encode(3)) == 3


def test_a_newer_workers_extra_fields_are_ignored():
    import json

    from rpc import peer_codec
    data = json.loads(peer_codec.encode(make_health()))
    data["kafka"]["brand_new"] = 1
    data["also_new"] = True
    assert peer_codec.decode("health", json.dumps(data).encode()) == make_health()


def test_a_stopping_worker_is_left_out_but_an_overloaded_one_is_silent(two_workers):
    from actors.gateway import OVERLOADED, STOPPING
    stopping = PeerServer(FakeGateway(error=Unavailable(STOPPING)),
                          socket_path(two_workers.dir, 1006)).start()
    try:
        assert two_workers.whole.stats(5.0).broker.clients == 5
        assert os.path.exists(stopping.path)           # alive: its own stop removes it
    finally:
        stopping.stop()
    overloaded = PeerServer(FakeGateway(error=Unavailable(OVERLOADED)),
                            socket_path(two_workers.dir, 1007)).start()
    try:
        with pytest.raises(Unavailable, match="worker 1007 .UNAVAILABLE: the service is over"):
            two_workers.whole.stats(5.0)
    finally:
        overloaded.stop()


class Flaky:
    """A listener whose accept() fails `failures` times first (EMFILE: the worker is out of
    file descriptors for a moment), then accepts as usual."""

    def __init__(self, listener, failures=3):
        self.listener, self.failures = listener, failures

    def accept(self):
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.listener.accept()

    def fileno(self):
        return self.listener.fileno()


class FlakyServer(PeerServer):
    def _accept(self, listener):
        return super()._accept(Flaky(listener))


def test_a_worker_out_of_file_descriptors_for_a_moment_keeps_answering_its_peers(tmp_path):
    """One failed accept() (EMFILE) ended the worker's accept loop for good: from then on
    every GetStats and GetClients of the instance was UNAVAILABLE until it was replaced."""
    b = gateway_with([make_client(1)], stats=make_stats(clients=1))
    server = FlakyServer(b, socket_path(str(tmp_path), 1002)).start()
    peers = Peers(str(tmp_path), own_path=socket_path(str(tmp_path), 1001))
    try:
        answers = [peers.ask("stats", timeout=2.0)() for _ in range(3)]
        assert [[a.silent for a in answer] for answer in answers] == [[None]] * 3
    finally:
        server.stop()


def _out_of_file_descriptors():
    """Until the block ends, this process cannot open another file (EMFILE)."""
    import contextlib
    import resource

    @contextlib.contextmanager
    def limited():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")), hard))
        filled = []
        try:
            while True:                 # the free numbers below the limit, taken
                filled.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            yield
        finally:
            for fd in filled:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return limited()


def test_without_a_descriptor_to_probe_it_a_peer_is_not_taken_for_gone(tmp_path):
    """After a failed read, _gone() probes the peer's socket: without a file descriptor for
    the probe its OSError escaped the call (UNKNOWN) instead of the peer counting as silent."""
    from rpc.peers import _gone
    path = str(tmp_path / "1002.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    try:
        with _out_of_file_descriptors():
            assert _gone(path) is False
    finally:
        listener.close()


def test_no_file_descriptor_for_a_question_is_unavailable_not_an_exception(two_workers):
    """A worker out of file descriptors (ulimit -n) could not list or reach its peers: the
    OSError escaped, and the call ended UNKNOWN with a traceback in the log instead of
    UNAVAILABLE (retry)."""
    failure = None
    with _out_of_file_descriptors():
        try:
            two_workers.servicer.GetStats(pb.GetStatsRequest(), Context(2.0))
        except Aborted as exc:
            failure = exc
    assert failure is not None and failure.code == grpc.StatusCode.UNAVAILABLE
    assert "retry" in str(failure)


def test_a_worker_that_joins_is_lined_up_with_the_other_workers_counts_now(tmp_path):
    """After a SIGHUP the new worker joins while the old one drains; the old one's counts at
    the last GetStats are stale. Lined up with those, the instance's count of records read
    froze until the new worker had read what the old one read since (found by an audit)."""
    from actors.tally import Tally
    from tests.unit.test_tally import worker
    path, live = tmp_path / "counters.json", {"old"}

    def gateway(me, local, **peers):
        tally = Tally(str(path), own=lambda: me, identify=lambda name: name,
                      alive=lambda key: key in live)
        return InstanceGateway(local, FakePeers(peers), tally=tally)
    assert gateway("old", worker(100, 0, 0)).stats().broker.events_consumed == 100
    old_now, new = worker(1100, 0, 0), worker(0, 0, 0)     # 1,000 read since; nobody asked
    live.add("new")
    gateway("new", new, old=old_now).join_tally()
    gateway("old", old_now, new=new).keep_last_counts()
    live.discard("old")
    assert gateway("new", worker(510, 0, 0)).stats().broker.events_consumed == 1610


def test_a_joining_worker_s_socket_is_found_only_once_it_listens(tmp_path, monkeypatch):
    """bind() made the socket's file and listen() came after: a worker asking in between (a
    busy machine can hold the joining one there for milliseconds) was refused, took the
    joining worker for a dead one and removed its file, and the instance counted without it
    for good (Python 3.13's e2e run of test_workers under load: GetClients total 100 of 200)."""
    import socket as socket_module
    path = socket_path(str(tmp_path), 1006)
    seen_before_listening = []
    listen = socket_module.socket.listen

    def checked_listen(sock, *args):
        seen_before_listening.append(os.path.exists(path))
        return listen(sock, *args)
    monkeypatch.setattr(socket_module.socket, "listen", checked_listen)
    server = PeerServer(gateway_with([]), path).start()
    try:
        assert seen_before_listening == [False]
        assert os.path.exists(path)
        assert Peers(str(tmp_path), own_path=socket_path(str(tmp_path), 1)).paths() == [path]
    finally:
        server.stop()
    assert not os.listdir(os.path.dirname(path))


def test_a_worker_whose_connection_queue_is_full_is_not_taken_for_gone(tmp_path):
    """A stuck worker's full backlog answers a probe EAGAIN: it is silent, not dead; taken
    for dead, its socket was removed and it was left out of every later answer."""
    from rpc.peers import _gone
    path = str(tmp_path / "1002.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    waiting = []
    try:
        for _ in range(64):             # fill its queue (nobody accepts)
            waiting.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            waiting[-1].setblocking(False)
            if waiting[-1].connect_ex(path) in (errno.EAGAIN, errno.EWOULDBLOCK):
                break
        else:
            pytest.fail("the queue never filled")
        assert _gone(path) is False
    finally:
        for sock in waiting:
            sock.close()
        listener.close()


def test_a_reply_cut_short_by_a_live_worker_is_silence_not_an_absence(tmp_path):
    """A worker that is still there but whose reply broke off is named silent, so the
    instance's totals are not taken for whole; and the cut frame ends the read at once
    (EOFError) instead of a spin on an empty read to the deadline."""
    from rpc.peers import _read_frame
    own, other = socket_path(str(tmp_path), 1001), socket_path(str(tmp_path), 1002)
    os.makedirs(os.path.dirname(other), exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(other)
    listener.listen()
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"\0\0\0\x0aA{")
        theirs.close()
        answer = Peers(str(tmp_path), own_path=own)._answer("stats", other, ours,
                                                             time.monotonic() + 2)
        assert answer is not None and answer.silent.startswith("no answer (EOFError")
        ours2, theirs2 = socket.socketpair()
        theirs2.sendall(b"\0\0\0\x0aabc")
        theirs2.close()
        with pytest.raises(EOFError):
            _read_frame(ours2, 100, time.monotonic() + 2)
        ours2.close()
    finally:
        ours.close()
        listener.close()


def test_only_the_other_workers_listening_sockets_are_asked(tmp_path):
    """Not this worker's own socket (its figures would count twice), and not one still
    joining (not listening yet: asked, it was refused and its file removed)."""
    own = socket_path(str(tmp_path), 1)
    directory = os.path.dirname(own)
    os.makedirs(directory, exist_ok=True)
    for name in ("1.sock", "2.sock", "3.sock.joining", "4.sock"):
        open(os.path.join(directory, name), "w").close()
    assert Peers(str(tmp_path), own_path=own).paths() == [
        os.path.join(directory, "2.sock"), os.path.join(directory, "4.sock")]


def test_a_short_deadline_leaves_peers_four_fifths_of_it_and_never_nothing():
    """A margin of 0.1 s out of 0.3 s left peers two thirds of the time; a deadline of 0
    left them none, every one silent and the call Unavailable."""
    gateway = InstanceGateway(FakeGateway(), FakePeers({}), ask_timeout=2.0)
    assert gateway.peer_timeout(0.3) == pytest.approx(0.24)
    assert gateway.peer_timeout(0.0) == 0.01


def test_a_joining_worker_lines_up_with_the_workers_that_answer_and_not_a_silent_one(tmp_path):
    """A worker that did not answer has no counts to line up with (it is lined up later):
    taken as one, its missing answer failed the tally, which then kept no counters at all."""
    from actors.tally import Tally
    from tests.unit.test_tally import worker
    settled = []

    class Recording(Tally):
        def settle(self, combined, mine, peers):
            settled.append(dict(peers))
            return super().settle(combined, mine, peers)
    tally = Recording(str(tmp_path / "counters.json"), own=lambda: "new",
                      identify=lambda name: name, alive=lambda key: True)
    gateway = InstanceGateway(worker(0, 0, 0), FakePeers({"old": worker(5, 0, 0),
                                                          "stuck": worker(7, 0, 0)},
                                                         silent={"stuck"}), tally=tally)
    gateway.join_tally()
    assert list(settled[0]) == ["old"]


def test_a_stopping_worker_whose_gateway_cannot_answer_stops_without_an_error(tmp_path):
    """Its actors may be stopped already: the last counts are then lost, not the shutdown."""
    from actors.tally import Tally

    class Stopped(FakeGateway):
        def stats(self, timeout=None):
            raise Unavailable("stopped")
    tally = Tally(str(tmp_path / "counters.json"), own=lambda: "me",
                  identify=lambda name: name, alive=lambda key: True)
    InstanceGateway(Stopped(), FakePeers({}), tally=tally).keep_last_counts()
    assert not (tmp_path / "counters.json").exists()
