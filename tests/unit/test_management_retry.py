"""rpc.server.Management: a busy gRPC port is retried until free (a SIGHUP's new worker)."""
import logging
import socket
import threading
import time
import types

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import rpc.server
from actors.settings import Settings
from rpc.server import Management, start_management
from tests.fakes import FakeGateway, make_health
from tests.harness import free_port


def make_system():
    return FakeGateway(health=make_health())


def serving(port) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def holder(port) -> socket.socket:
    """Another process's listener on the port (no SO_REUSEPORT: gRPC cannot share it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_busy_port_is_retried_and_the_api_answers_once_it_is_free(caplog):
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port, grpc_auth_token="t")
    busy = holder(port)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_system())
        try:
            assert management.server is None
            assert any(r.levelno == logging.WARNING and "retrying until it is free" in
                       r.getMessage() for r in caplog.records)
            time.sleep(0.5)
            assert management.server is None              # still busy: still retrying
            busy.close()
            freed = time.monotonic()
            while management.server is None and time.monotonic() - freed < 5:
                time.sleep(0.02)
            assert management.server is not None, "never bound after the port was freed"
            assert time.monotonic() - freed < 2.0
            assert serving(port)
        finally:
            management.stop(None)
    assert any("after" in r.getMessage() and "retries" in r.getMessage() for r in caplog.records)


def test_stop_ends_the_retrying_and_nothing_binds_afterwards():
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port, grpc_auth_token="t")
    busy = holder(port)
    management = Management(settings, make_system()).start()
    management.stop(None)
    management.stop(None)                                 # idempotent
    busy.close()
    time.sleep(Management.RETRY_SECONDS * 3)
    assert management.server is None
    assert not serving(port)
    assert not any(t.name == "grpc-bind-retry" for t in threading.enumerate())


def test_a_free_port_is_bound_at_once_and_port_zero_turns_it_off():
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(), grpc_auth_token="t")
    management = start_management(settings, make_system())
    try:
        assert management.server is not None and serving(settings.grpc_port)
    finally:
        management.stop(None)
    assert management.server is None
    off = start_management(Settings.defaults(grpc_port=0), make_system())
    assert off.server is None


@pytest.mark.parametrize("standby", [True, False])
@pytest.mark.parametrize("host, says", [("", "GRPC_HOST is empty"),
                                        ("192.0.2.1", "GRPC_HOST='192.0.2.1'"),
                                        # a name that does not resolve (port_taken cannot
                                        # even try it)
                                        ("no-such-host.invalid",
                                         "GRPC_HOST='no-such-host.invalid'")])
def test_an_address_grpc_cannot_listen_on_is_an_error_not_a_busy_port(caplog, standby, host,
                                                                      says):
    """GRPC_HOST= (empty) passes the master's check (Python binds "" to every address) but
    not gRPC's: the management API never started, a standby worker said the port was
    "taken by another worker" and retried quietly every 0.5 s for ever."""
    settings = Settings.defaults(grpc_host=host, grpc_port=free_port())
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_system(), standby=standby)
        try:
            time.sleep(1.0)
        finally:
            management.stop(None)
    assert management.server is None
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "taken" in m or "until it is free" in m], said
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and says in errors[0], said


def test_workers_starting_together_check_and_bind_the_port_one_at_a_time(tmp_path,
                                                                        monkeypatch):
    """Every worker of an instance tries the port at start, as a standby: each checks that
    it is free, then binds. Two workers starting together both found it free, and the
    second's bind failed inside gRPC, which wrote its own line to stderr (`E1202 ...
    add_port.cc:83] Failed to add port to server ... Address already in use`; 1 start in 6
    here, 2 of 3 runs of `make run`): not JSON under LOG_FORMAT=json, an error on the first
    screen of the demo. Now the check and the bind are one step among the instance's workers
    (a lock in the instance directory): a worker whose turn comes after the other bound
    finds the port taken and stands by without asking gRPC."""
    import fcntl
    import os

    import rpc.server
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port)
    lock = tmp_path / "grpc-bind.lock"
    binds = []
    real_start = rpc.server.start_server
    monkeypatch.setattr(rpc.server, "start_server",
                        lambda *a, **k: binds.append(1) or real_start(*a, **k))
    other = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)          # the other worker is binding the port
    management = Management(settings, make_system(), standby=True, bind_lock=str(lock))
    starting = threading.Thread(target=management.start)
    try:
        starting.start()
        time.sleep(0.3)
        taken = holder(port)                    # ... and has bound it
        os.close(other)
        starting.join(5)
        assert not starting.is_alive()
        assert management.server is None and binds == []    # stood by without a bind
        taken.close()
        freed = time.monotonic()
        while management.server is None and time.monotonic() - freed < 5:
            time.sleep(0.02)
        assert management.server is not None and binds == [1]   # took it over once free
    finally:
        management.stop(None)


# -- the retry loop on a simulated clock: no socket, no sleep ---------------------------------
class _Clock:
    """The retry loop's clock and its stop event in one: each wait moves the clock on by its
    timeout, and the loop is stopped after `waits` of them."""

    def __init__(self, waits):
        self.now, self.delays, self.waits = 1000.0, [], waits

    def monotonic(self):
        return self.now

    def wait(self, timeout):
        self.delays.append(timeout)
        self.now += timeout
        return self.is_set()

    def is_set(self):
        return len(self.delays) > self.waits


def _retrying_on(monkeypatch, clock, *, standby, busy):
    """A Management whose every bind fails (the port `busy` with another process's listener,
    else an address gRPC cannot listen on), retrying on `clock`."""
    def failed_bind(*args, **kwargs):
        raise OSError("cannot listen on 127.0.0.1:50051")

    monkeypatch.setattr(rpc.server, "start_server", failed_bind)
    monkeypatch.setattr(rpc.server, "port_taken", lambda host, port: busy)
    monkeypatch.setattr(rpc.server, "time", types.SimpleNamespace(monotonic=clock.monotonic,
                                                                  sleep=time.sleep))
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=50051, grpc_auth_token="t")
    management = Management(settings, make_system(), standby=standby)
    management._stopped = clock
    return management


def test_a_port_another_process_holds_is_retried_ever_less_often_and_said_once_a_minute(
        monkeypatch, caplog):
    """The one worker of an instance whose GRPC_PORT another process holds: each try makes
    gRPC write an error line of its own, so the tries back off from every 0.2 s to one every
    5 s; and once a minute, not at every try nor never, the log says the API is still not
    started and that another process may use GRPC_PORT."""
    clock = _Clock(waits=300)
    management = _retrying_on(monkeypatch, clock, standby=False, busy=True)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management._retry()
    expected = [Management.RETRY_SECONDS]
    while len(expected) < len(clock.delays):
        expected.append(min(expected[-1] * 1.5, Management.RETRY_MAX_SECONDS))
    assert clock.delays == pytest.approx(expected)
    assert max(clock.delays) == Management.RETRY_MAX_SECONDS
    said = [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.ERROR for r in caplog.records), said
    assert all("still not started" in m and "is another process using GRPC_PORT?" in m
               for m in said), said
    waited = sum(clock.delays[:-1])            # ~1,450 s: a line every 60 to 65 s
    assert waited // 65 <= len(said) <= waited // 60, (waited, said)


def test_a_standby_worker_tries_every_half_second_and_says_nothing_while_the_port_is_taken(
        monkeypatch, caplog):
    """Another worker of the instance holds the port: a standby checks every STANDBY_SECONDS,
    without backing off (it takes over within half a second of the holder's end, however long
    it waited) and without a line (it is not a problem)."""
    clock = _Clock(waits=500)
    management = _retrying_on(monkeypatch, clock, standby=True, busy=True)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management._retry()
    assert set(clock.delays) == {Management.STANDBY_SECONDS}
    assert caplog.records == []


def test_a_worker_that_stops_while_its_bind_is_under_way_lets_the_port_go(monkeypatch, caplog):
    """stop() waits 2 s for a bind under way, and the bind may wait 5 s for the instance's
    lock: a server bound after the stop is stopped at once, not kept listening in a worker
    that is going away (a standby could not take the port over), nor said to be 'bound'."""
    stopped = []
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=50051, grpc_auth_token="t")
    management = Management(settings, make_system())
    management.RETRY_SECONDS = 0.01

    def bound_meanwhile(*args, **kwargs):
        management._stopped.set()                      # stop() came while this one bound
        return types.SimpleNamespace(address="127.0.0.1:50051", stop=stopped.append)

    monkeypatch.setattr(rpc.server, "start_server", bound_meanwhile)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management._retry()
    assert stopped == [None] and management.server is None
    assert not [r for r in caplog.records if "bound" in r.getMessage()], caplog.text


def test_stop_gives_calls_in_flight_the_grace_it_was_asked_for():
    """worker_exit stops the API with a grace: a DisconnectSubject or GetClients in flight is
    answered within it, not cut off."""
    graces = []
    management = Management(Settings.defaults(grpc_port=0), make_system())
    management.server = types.SimpleNamespace(stop=graces.append)
    management.stop(3.0)
    management.stop(3.0)
    assert graces == [3.0]


# -- the steps of a bind: the instance's lock, the check that the port is free ---------------
def test_a_worker_stuck_holding_the_bind_lock_delays_the_others_by_the_wait_only(tmp_path):
    """The lock is the instance's: a worker stopped (SIGSTOP, a debugger) while it holds it
    must not keep the others from ever binding GRPC_PORT, nor block their hub in flock (every
    stream of theirs would freeze): they try it every 10 ms and go on without it after
    `wait` seconds. A turn that ended lets go of the lock at once."""
    import fcntl
    import os

    from rpc.server import _turn
    lock = str(tmp_path / "grpc-bind.lock")
    stuck = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(stuck, fcntl.LOCK_EX)
    took = []

    def take_a_turn():
        with _turn(lock, 0.2):
            took.append(time.monotonic())

    started = time.monotonic()
    turn = threading.Thread(target=take_a_turn, daemon=True)
    try:
        turn.start()
        turn.join(3)
        assert took, "still waiting for the lock after 3 s"
        assert took[0] - started >= 0.2
    finally:
        os.close(stuck)
        turn.join(3)
    with _turn(lock, 5.0):
        pass
    mine = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)   # BlockingIOError: still held
    finally:
        os.close(mine)


def test_a_port_a_dead_holder_left_in_time_wait_is_free_to_take():
    """A holder that died with connections open leaves them in TIME_WAIT for a minute; gRPC
    binds the port all the same, so a standby must not find it taken: it stood by for that
    minute, the management API gone, and a worker starting then said 'standing by'."""
    from rpc.server import port_taken, start_server
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # as gRPC's own has
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()                            # the holder's side closes first: TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    assert not port_taken("127.0.0.1", port)
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port, grpc_auth_token="t")
    start_server(settings, make_system()).stop(None)     # as gRPC itself finds it
