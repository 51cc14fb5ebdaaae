"""web/worker.py when the worker stops (SIGTERM: a stop, a reload): what it had accepted is
served, not closed unanswered (CI: test_drain's /livez during a reload got a reset)."""
import socket

import gevent

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
