"""web/worker.py when the worker stops (SIGTERM: a stop, a reload): what it had accepted is
served, not closed unanswered (CI: test_drain's /livez during a reload got a reset)."""
import signal
import socket
from functools import partial
from types import SimpleNamespace

import gevent
import pytest

from web import worker
from web.door import Door, DoorLimits


def _worker(alive: bool) -> worker.GatewayWorker:
    gw = object.__new__(worker.GatewayWorker)     # no gunicorn arbiter: only what handle() uses
    gw.alive = alive
    gw.door = Door(DoorLimits(timeout=10, per_address=10, total=100))
    gw._unacked_ms = 0
    return gw


def _shut(sock) -> bool:
    """The peer of `sock` reads EOF: the worker shut it."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_connection_accepted_before_the_stop_is_served(monkeypatch):
    """The SIGTERM handler can run between a connection's accept (even inside gevent's accept
    burst) and its greenlet: the connection was then closed unanswered, though the worker
    could still answer it."""
    served = []
    monkeypatch.setattr(worker.GeventWorker, "handle",
                        lambda self, listener, client, addr: served.append(client))
    gw = _worker(alive=False)
    ours, theirs = socket.socketpair()
    gw.handle(None, ours, ("127.0.0.1", 40000))
    assert served == [ours] and not _shut(theirs)
    assert len(gw.door) == 0                      # no longer pending once handled
    ours.close()
    theirs.close()


def test_a_stopping_worker_gives_a_request_head_on_its_way_time_to_arrive(monkeypatch):
    monkeypatch.setattr(worker, "SWEEP_SECONDS", 0.01)
    monkeypatch.setattr(worker, "STOP_GRACE_SECONDS", 0.3)
    gw = _worker(alive=False)
    arriving, arriving_peer = socket.socketpair()
    silent, silent_peer = socket.socketpair()
    gw.door.enter(arriving, ("127.0.0.1", 40001), 0.0)
    gw.door.enter(silent, ("127.0.0.1", 40002), 0.0)
    sweeper = gevent.spawn(gw._sweep)
    gevent.sleep(0.1)
    assert not _shut(arriving_peer) and not _shut(silent_peer)     # not at once
    gw.door.done(arriving)                        # its head completed: it is served
    sweeper.join(2)
    assert sweeper.dead
    assert not _shut(arriving_peer)
    assert _shut(silent_peer)                     # still half-sent after the grace: ended
    for sock in (arriving, arriving_peer, silent, silent_peer):
        sock.close()


def test_sigterm_wakes_the_services_shutdown_watcher_at_once(monkeypatch):
    woke = []
    gw = _worker(alive=True)
    gw.sse_service = SimpleNamespace(wake=lambda: woke.append(gw.alive))
    monkeypatch.setattr(worker.BurstServer, "running", set())
    gw.handle_exit(signal.SIGTERM, None)
    gevent.sleep(0.05)
    assert woke == [False]                        # after alive turned false, not a poll later


def _burst_server(slots: int):
    """A worker's BurstServer, started, on a loopback listener of its own, with a pool of
    `slots`: (server, listener, address)."""
    import gevent.pool
    import gevent.socket
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    address = listener.getsockname()
    gw = _worker(alive=False)
    gw._bound = {listener: worker._Bound(address)}
    server = worker.BurstServer(listener, handle=partial(gw.handle, listener),
                                spawn=gevent.pool.Pool(slots))
    server.start()
    return server, listener, address


@pytest.fixture
def served_server(monkeypatch):
    """A worker's BurstServer on a loopback port whose handler answers b"HTTP/1.1 200" and
    records the listener name it is given: (server, address, names). Closed at the end."""
    names = []
    monkeypatch.setattr(worker.GeventWorker, "handle", lambda self, listener, client, addr:
                        (names.append(listener.getsockname()), client.sendall(b"HTTP/1.1 200")))
    server, listener, address = _burst_server(slots=10)
    try:
        yield server, address, names
    finally:
        server.close()
        listener.close()


def test_a_stopping_worker_serves_what_was_queued_and_refuses_what_comes_after(served_server):
    """On a stop the master closes its listeners first; a worker that only stopped accepting
    kept its copy open, so the kernel queued new connections there and reset them when
    gunicorn closed it, up to a second later (a rolling deploy's balancer cannot move those).
    Now what is queued is served and the socket closed: what comes after is refused. The
    connections served after the close still get the listener's name (gunicorn asks it)."""
    _server, address, names = served_server
    queued = [socket.create_connection(address) for _ in range(3)]   # not accepted yet
    refused = None
    try:
        worker.GatewayWorker._stop_listening()
        try:
            refused = socket.create_connection(address, timeout=1)
        except ConnectionRefusedError:
            pass
        gevent.sleep(0.05)
        assert refused is None, "a connection after the stop was taken into a closed worker's queue"
        assert names == [address] * 3
        for client in queued:
            client.settimeout(1)
            assert client.recv(12) == b"HTTP/1.1 200"
    finally:
        for client in [*queued, *([refused] if refused else [])]:
            client.close()


def test_a_second_sigterm_stops_quietly(served_server):
    """systemd's default KillMode sends SIGTERM to the master and to each worker, and the
    master sends its own: the second stop found the servers closed, and raised."""
    server, _address, _names = served_server
    worker.GatewayWorker._stop_listening()
    worker.GatewayWorker._stop_listening()          # raised AttributeError: no 'socket'
    assert server.closed


def test_a_stopping_worker_whose_pool_is_full_closes_its_listener_at_once(monkeypatch):
    """With every slot of the pool held by a stream, taking one more queued connection waits
    for a stream to end: the stop hung there, its listener still open (queuing connections
    that are reset later) and the drain not yet woken that would end those streams."""
    import gevent.event
    release = gevent.event.Event()
    monkeypatch.setattr(worker.GeventWorker, "handle",
                        lambda self, listener, client, addr: release.wait())
    monkeypatch.setattr(worker.BurstServer, "running", worker.weakref.WeakSet())
    server, listener, address = _burst_server(slots=1)
    clients = [socket.create_connection(address)]
    try:
        gevent.sleep(0.05)                              # the stream holding the only slot
        clients += [socket.create_connection(address) for _ in range(2)]    # queued
        stopping = gevent.spawn(worker.GatewayWorker._stop_listening)
        stopping.join(1)
        assert stopping.dead and server.closed
    finally:
        release.set()
        gevent.sleep(0.05)
        server.close()
        listener.close()
        for client in clients:
            client.close()
