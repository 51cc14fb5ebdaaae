"""The load generator's books must be right: `.venv/bin/python -m pytest bench/test_loadgen.py`."""
from __future__ import annotations

import socket

import pytest

import loadgen
from loadgen import STREAM, Client, Worker, dechunk
from producer import event


class FakeConn:
    def __init__(self):
        self.sent = []

    def fileno(self):
        return self._sock.fileno()

    def send(self, message):
        self.sent.append(message)


@pytest.fixture
def worker():
    a, b = socket.socketpair()
    conn = FakeConn()
    conn._sock = a
    w = Worker(conn)
    w.run, w.ws, w.we = 7, 0, 10**18
    yield w
    a.close()
    b.close()


def frame(run, seq, t=1):
    body = event(run, seq, t).decode()
    return f"id: x:{seq}\nevent: bench.tick\ndata: {body}\n\n".encode()


def client(w, sampled=False, tag=None):
    s = socket.socket()
    c = Client(s, sampled)
    c.state, c.tag = STREAM, tag
    c.run = w.run if tag is None else w.run * loadgen.TAG_SCALE + tag
    w.clients[c.fd] = c
    return c


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


@pytest.mark.parametrize("sampled", [False, True])
def test_contiguous_events_in_odd_pieces(worker, sampled):
    c = client(worker, sampled)
    c.chunked = True
    stream = b"".join(chunked(b"retry: 3000\n\n") + chunked(b"".join(frame(7, i) for i in r))
                      for r in (range(0, 3), range(3, 4), range(4, 10)))
    for cut in range(0, len(stream), 37):          # TCP may split anywhere
        worker.on_body(c, stream[cut:cut + 37], 1.0)
    assert (c.next, c.recv, c.dups, c.missing(10)) == (10, 10, 0, 0)
    assert len(worker.lat) == (10 if sampled else 0)


@pytest.mark.parametrize("sampled", [False, True])
def test_gap_duplicate_late_and_stale(worker, sampled):
    c = client(worker, sampled)
    body = b"".join(frame(7, i) for i in (0, 1, 3, 3, 2, 4)) + frame(6, 5) + frame(7, 1)
    worker.on_body(c, body, 1.0)
    # 2 arrived late (not missing), 3 twice and 1 again are duplicates, run 6 is stale
    assert (c.recv, c.dups, c.stale, c.missing(5)) == (5, 2, 1, 0)
    assert c.missing(7) == 2        # 5 and 6 never came


def test_missing_in_the_middle_of_a_fast_chunk(worker):
    c = client(worker)
    worker.on_body(c, b"".join(frame(7, i) for i in (0, 1, 2)), 1.0)
    worker.on_body(c, b"".join(frame(7, i) for i in (3, 5, 6)), 1.0)
    assert (c.recv, c.dups, c.missing(7)) == (6, 0, 1)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_tagged_stream_counts_other_subjects_events_as_stale(worker, sampled):
    tags = 3
    clients = [client(worker, sampled, tag) for tag in range(tags)]
    worker.go(7, 0, 10**12)
    for i in range(8):      # event i is tag i % 3's seq i // 3; client 0 gets all of them
        worker.on_body(clients[0], frame(7 * loadgen.TAG_SCALE + i % tags, i // tags), 1.0)
    for i in (1, 4):        # client 1 gets its own two events, client 2 nothing
        worker.on_body(clients[1], frame(7 * loadgen.TAG_SCALE + 1, i // tags), 1.0)
    worker.set_expect(8, tags)
    books = [(c.expect, c.recv, c.stale, c.missing(c.expect)) for c in clients]
    assert books == [(3, 3, 5, 0), (3, 2, 0, 1), (2, 0, 0, 2)]


def test_connect_each_builds_one_request_per_target(worker):
    worker.start_connect("http://127.0.0.1:9/events", 2, 1, 0,
                         [("/events?ticket=a", (), 0),
                          ("/events", (("Authorization", "Bearer t"),), 1)])
    requests = {tag: request for _s, request, tag in worker.pending}
    assert requests[0].startswith(b"GET /events?ticket=a HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer t\r\n" in requests[1]
    assert requests[1].endswith(b"\r\n\r\n") and b"Authorization" not in requests[0]


def test_dechunk_keeps_partial_size_lines():
    c = Client(socket.socket(), False)
    data = chunked(b"hello") + chunked(b"world!") + b"0\r\n\r\n"
    out = b"".join(dechunk(c, data[i:i + 3]) for i in range(0, len(data), 3))
    assert out == b"helloworld!" and c.eof


def test_event_regex_reads_what_the_gateway_reencodes():
    import json
    raw = event(3, 42, 123456)
    again = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    for text in (raw, again, json.dumps(json.loads(raw)).encode()):
        m = loadgen.EVENT.search(text)
        assert (int(m[1]), int(m[2]), int(m[3])) == (3, 42, 123456)
