"""web/close_watch: a client that left, reset, stopped reading or kept sending is noticed,
each with its own reason (real TCP sockets on the loopback, under gevent)."""
import subprocess
import sys
from pathlib import Path

UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import socket, time
import gevent
from web import close_watch


def pair():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    cli = socket.socket()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cli.connect(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    return conn, cli


def noticed(conn, act, within=10.0):
    reasons = []
    unwatch = close_watch.watch({"gunicorn.socket": conn}, reasons.append)
    act()
    deadline = time.monotonic() + within
    while not reasons and time.monotonic() < deadline:
        gevent.sleep(0.02)
    gevent.sleep(0.1)
    unwatch()
    return reasons


def fill(conn):
    try:
        while True:
            conn._sock.send(b"x" * 65536)
    except BlockingIOError:
        pass


# a client whose window stays shut: nothing acknowledged past TCP_USER_TIMEOUT
conn, cli = pair()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 300)
assert noticed(conn, lambda: fill(conn)) == [close_watch.UNACKNOWLEDGED]

conn, cli = pair()
assert noticed(conn, cli.close) == [close_watch.GONE]

conn, cli = pair()
cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
assert noticed(conn, cli.close) == [close_watch.GONE]          # reset

conn, cli = pair()
assert noticed(conn, lambda: cli.shutdown(socket.SHUT_WR)) == [close_watch.GONE]   # half-closed

conn, cli = pair()
cli.setblocking(False)
def flood():
    try:
        for _ in range(64):
            cli.send(b"y" * 4096)
    except BlockingIOError:
        pass
assert noticed(conn, flood) == [close_watch.TOO_MUCH]

conn, cli = pair()
sent = lambda: cli.send(b"GET /next HTTP/1.1\r\n\r\n")
assert noticed(conn, sent, within=0.3) == []           # read and dropped
try:
    conn._sock.recv(1, socket.MSG_DONTWAIT)
    raise SystemExit("the bytes after the request were left in the socket")
except BlockingIOError:
    pass
print("ok")
'''


def test_each_way_of_leaving_is_noticed_with_its_reason():
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]


def test_a_peer_the_kernel_gave_up_on_is_told_apart_from_one_that_closed():
    import errno

    from web.close_watch import GONE, UNACKNOWLEDGED, gone_reason
    for code in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH):   # its link died
        assert gone_reason(OSError(code, "x")) == UNACKNOWLEDGED
    assert gone_reason(TimeoutError(errno.ETIMEDOUT, "timed out")) == UNACKNOWLEDGED
    for error in (ConnectionResetError(), BrokenPipeError(), None):
        assert gone_reason(error) == GONE
