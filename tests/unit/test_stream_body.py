"""web/stream.StreamBody against a fake Stream: writes, the end, the slow and stuck checks."""
import socket
from types import SimpleNamespace

from actors.filters import Filter
from web import close_watch
from web.slow_writes import WriteChecker
from web.stream import STUCK_AFTER, StreamBody


class FakeStream:
    def __init__(self, chunks=()):
        self.info = SimpleNamespace(id="c1", remote_addr="10.0.0.1",
                                    filter=Filter.parse(None, None))
        self.chunks = list(chunks)
        self.closed_reason = None
        self.taken_oldest_ms = 0
        self.sent = self.dropped = 0
        self.ended = 0
        self.slow = False
        self.reported = 0

    def take(self, timeout=None):
        if self.chunks:
            return self.chunks.pop(0)
        self.closed_reason = self.closed_reason or "test over"
        return b"", 0, None

    def written(self, count, last_id):
        self.sent += count

    @property
    def finished(self):
        return self.closed_reason is not None and not self.chunks

    def close(self, reason):
        self.closed_reason = reason

    def lagging(self, now):
        return self.slow

    def report_slow(self):
        self.reported += 1

    def end(self):
        self.ended += 1


def test_a_body_writes_the_opening_then_the_chunks_and_ends_the_stream_once():
    stream = FakeStream([(b"data: 1\n\n", 1, "id1"), (b"data: 2\n\n", 1, "id2")])
    checker = WriteChecker()
    body = StreamBody(stream, b"retry: 1000\n\n", {}, checker)
    out = list(body)
    assert out[0].startswith(b"retry: 1000\n\n: client c1")
    assert out[1:] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert stream.sent == 2 and body.reason == "test over"
    body.close()
    assert stream.ended == 1 and checker.serving == set()


def test_an_unstarted_body_still_ends_its_stream():
    stream = FakeStream()
    StreamBody(stream, b"", {}, WriteChecker()).close()
    assert stream.ended == 1


def test_a_lagging_stream_is_reported_once():
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        stream.slow = True
        body.check(0.0)
        body.check(1.0)
        assert stream.reported == 1
    finally:
        a.close()
        b.close()


def test_a_closed_stream_stuck_on_its_last_write_is_cut():
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        body.writing, stream.closed_reason = True, "server shutting down"
        body.check(10.0)
        body.check(10.0 + STUCK_AFTER / 2)
        assert body.sock is a                       # not yet
        body.check(10.0 + STUCK_AFTER)
        assert body.sock is None and "not reading, connection cut" in body.reason
        assert b.recv(1) == b""                     # the peer sees the connection shut
    finally:
        a.close()
        b.close()


def test_an_open_stream_inside_a_long_write_is_never_cut():
    """Only a closed stream's stuck last write is cut: a client still reading slowly (a big
    batch over a thin link, a write of more than STUCK_AFTER) keeps its connection."""
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        body.writing = True                             # open: no closed_reason
        body.check(10.0)
        body.check(10.0 + STUCK_AFTER)
        body.check(10.0 + STUCK_AFTER + 1.0)
        assert body.sock is a and "connection cut" not in body.reason
        a.sendall(b"data: 1\n\n")                       # the peer still gets what is written
        assert b.recv(16) == b"data: 1\n\n"
    finally:
        a.close()
        b.close()


def test_the_opening_comment_names_the_subject_on_one_line():
    stream = FakeStream()
    stream.info.subject = "alice\nevent: forged"          # a subject cannot add a line
    out = list(StreamBody(stream, b"retry: 1000\n\n", {}, None))
    assert out[0].startswith(b"retry: 1000\n\n: client c1 subject alice")
    assert b"\nevent: forged" not in out[0]
    anonymous = FakeStream()
    assert list(StreamBody(anonymous, b"", {}, None))[0] == b": client c1\n"


def test_a_body_given_a_first_write_hands_it_the_opening_and_yields_the_rest():
    stream = FakeStream([(b"data: 1\n\n", 1, "id1")])
    body = StreamBody(stream, b"retry: 1000\n\n", {}, None)
    sent = []
    body.first_write = sent.append        # web/events_path.py: head + first chunk, one send
    assert list(body) == [b"data: 1\n\n"]
    assert len(sent) == 1 and sent[0].startswith(b"retry: 1000\n\n: client c1")
    assert stream.sent == 1 and not body.writing


class DirectStream(FakeStream):
    def go_direct(self, send, chunked, observe=None, gone=None):
        self.direct = (send, chunked)
        self.gone = gone


class FailingSocket:
    """gunicorn's gevent socket over a real one (for the close watch), whose writes fail."""

    def __init__(self, real, error):
        self.real, self.error = real, error
        self._sock = real

    def fileno(self):
        return self.real.fileno()

    def sendall(self, data):
        raise self.error


def _direct_body(stream, error):
    a, b = socket.socketpair()
    sock = FailingSocket(a, error)
    environ = {"gunicorn.socket": sock, "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = StreamBody(stream, b"", environ, None)
    body.first_write = lambda data: None
    return body, (a, b)


def test_a_stream_closed_as_slow_is_logged_as_slow_when_its_last_write_fails():
    stream = DirectStream([(b": closing: slow client: buffer full\n", 0, None)])
    stream.closed_reason = "slow client: buffer full"      # counted as slow by the broker
    body, pair = _direct_body(stream, ConnectionResetError())
    try:
        assert list(body) == []
        assert body.reason == "slow client: buffer full" and stream.ended == 1
    finally:
        for s in pair:
            s.close()


def test_a_write_that_times_out_unacknowledged_says_so():
    stream = DirectStream([(b"data: 1\n\n", 1, "id1")])
    body, pair = _direct_body(stream, TimeoutError(110, "Connection timed out"))
    try:
        assert list(body) == []
        assert body.reason == close_watch.UNACKNOWLEDGED and stream.ended == 1
        assert stream.gone is close_watch.gone_reason      # the broker's own sends say the same
    finally:
        for s in pair:
            s.close()


def test_behind_a_tls_proxy_the_broker_still_writes_to_the_plain_socket_itself():
    """gunicorn sets wsgi.url_scheme to https from a trusted proxy's X-Forwarded-Proto (any
    local address by default): the socket is plain all the same, and the direct lane stays."""
    stream = DirectStream([(b"data: 1\n\n", 1, "id1")])
    body, pair = _direct_body(stream, None)
    body.environ["wsgi.url_scheme"] = "https"
    body.sock.sendall = lambda data: None
    try:
        assert list(body) == []
        assert stream.direct == (pair[0].send, True) and stream.sent == 1
    finally:
        for s in pair:
            s.close()


def test_a_tls_socket_is_never_written_to_beneath_its_encryption():
    stream = DirectStream([(b"data: 1\n\n", 1, "id1")])
    body, pair = _direct_body(stream, None)
    body.sock._sslobj = object()                # gunicorn's own TLS (certfile)
    try:
        assert list(body) == [b"data: 1\n\n"]
        assert not hasattr(stream, "direct")
    finally:
        for s in pair:
            s.close()


def test_a_stream_already_closed_is_not_reported_slow_but_cut_if_its_write_sticks():
    """Closed (its client left, an operator, the drain) with events waiting: the broker has
    nothing left to end, and counting it a slow disconnect would count a client that left."""
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        stream.slow, stream.closed_reason, body.writing = True, "client went away", True
        body.check(0.0)
        body.check(STUCK_AFTER)
        assert stream.reported == 0
        assert body.sock is None and body.reason == "client went away; not reading, connection cut"
    finally:
        a.close()
        b.close()


def test_a_closed_stream_stuck_in_a_yielded_write_is_watched_and_cut():
    """Through gunicorn's own writes (TLS, or no plain socket to hand the broker), a body
    suspended at its yield is inside a write: a closed stream whose client stopped reading
    there was never checked, or never seen writing, and held its slot and the stopping
    worker's drain until gunicorn's graceful timeout killed the worker."""
    stream = FakeStream([(b"data: 1\n\n", 1, "id1")])
    checker = WriteChecker()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, checker)
        frames = iter(body)
        next(frames)                                    # the opening
        assert next(frames) == b"data: 1\n\n"           # the server is writing it
        assert checker.serving == {body}
        stream.closed_reason = "server shutting down"
        checker.check(10.0)
        checker.check(10.0 + STUCK_AFTER)
        assert body.sock is None and "not reading, connection cut" in body.reason
        b.settimeout(1)
        assert b.recv(100) == b""                       # (nothing was read off the socket)
        body.close()
        assert checker.serving == set() and stream.ended == 1
    finally:
        a.close()
        b.close()


def test_a_last_write_that_went_through_starts_the_stuck_clock_again():
    """A closed stream writing its last events to a slow reader: each write that finishes
    proves the client reads. Timed from the first write instead, a later write was cut the
    moment it began, and the client lost the events and the closing line."""
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        stream.closed_reason = "server shutting down"
        body.writing = True
        body.check(10.0)
        body.writing = False                            # that write went through
        body.check(11.0)
        body.writing = True                             # the next one
        body.check(10.0 + STUCK_AFTER + 0.5)
        body.check(10.0 + STUCK_AFTER + 1.0)
        assert body.sock is a and "connection cut" not in body.reason
    finally:
        a.close()
        b.close()


def test_checks_after_the_cut_do_nothing(caplog):
    """The body stays in the checker's set until its write fails: each check of it meanwhile
    logged 'checking stream ... failed' with a traceback."""
    stream = FakeStream()
    checker = WriteChecker()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        checker.track(body)
        body.writing, stream.closed_reason = True, "server shutting down"
        for now in (10.0, 10.0 + STUCK_AFTER, 11.0 + STUCK_AFTER, 10.0 + 2 * STUCK_AFTER):
            checker.check(now)
        assert body.sock is None and caplog.records == []
    finally:
        a.close()
        b.close()


def test_a_write_blocked_on_a_cut_connection_fails_as_a_broken_pipe():
    """gevent's own shutdown woke the blocked write with 'File descriptor was closed in
    another greenlet' (EBADF), which gunicorn logs as a socket error with its traceback."""
    import gevent
    import gevent.socket
    stream = FakeStream()
    a, b = gevent.socket.socketpair()

    def write():
        try:
            a.sendall(b"x" * 10_000_000)                 # more than the buffers take
        except OSError as exc:
            return exc
    try:
        writer = gevent.spawn(write)
        gevent.sleep(0.05)                               # blocked: the peer does not read
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        body.writing, stream.closed_reason = True, "server shutting down"
        body.check(10.0)
        body.check(10.0 + STUCK_AFTER)
        assert isinstance(writer.get(timeout=2), BrokenPipeError)
    finally:
        a.close()
        b.close()


def test_a_cut_during_a_direct_write_keeps_the_reason_the_cut_gave():
    """The log line of a client cut for not reading says so; the failure of the write it was
    stuck in came after and overwrote it with the stream's plain close reason."""
    stream = DirectStream([(b"data: 1\n\n", 1, "id1")])
    stream.closed_reason = "server shutting down"
    body, pair = _direct_body(stream, None)

    def stuck(data):                            # the checker runs while the write hangs
        body.check(10.0)
        body.check(10.0 + STUCK_AFTER)
        raise BrokenPipeError(32, "Broken pipe")
    body.sock.sendall, body.sock.dup = stuck, pair[0].dup
    try:
        assert list(body) == []
        assert body.reason == "server shutting down; not reading, connection cut"
    finally:
        for s in pair:
            s.close()


def test_one_yielded_live_write_in_latency_sample_is_timed(monkeypatch):
    """Through gunicorn's own writes (TLS): the delivery latency histogram stayed empty."""
    from web import stream as stream_module
    observed = []
    monkeypatch.setattr(stream_module.metrics, "observe_write", observed.append)
    every = stream_module.LATENCY_SAMPLE
    stream = FakeStream([(b"data: %d\n\n" % n, 1, f"id{n}") for n in range(every + 1)])
    stream.taken_oldest_ms = 1_700_000_000_000
    assert len(list(StreamBody(stream, b"", {}, None))) == every + 2
    assert observed == [1_700_000_000_000] * 2                   # the first and the next


def test_a_client_that_closes_its_end_ends_its_stream_at_once():
    """Noticed by the close watch within milliseconds; without it, only writes found the
    client gone, one to two heartbeats later, its slot held meanwhile."""
    import gevent
    stream = FakeStream()
    a, b = socket.socketpair()
    try:
        body = StreamBody(stream, b"", {"gunicorn.socket": a}, None)
        next(iter(body))                                    # the opening is written
        b.close()
        gevent.sleep(0.05)
        assert stream.closed_reason == close_watch.GONE
        body.close()
    finally:
        a.close()
        b.close()
