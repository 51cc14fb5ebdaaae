"""The Go load generator (bench/lg_go) keeps the same books as bench/loadgen.py:
`.venv/bin/python -m pytest bench/test_loadgen_go.py`.

A tiny SSE server (a thread per stream, chunked frames made with producer.event()) plays a
script per stream, chosen by the request's `s=` query; the load generators connect to it
over loopback exactly as in the benchmark, driven by the commands bench.py sends."""
from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

import loadgen
import loadgen_go
from producer import event

RUN = 7
TAGS = 3
TIMING = ("started_min", "ready_max", "cpu")   # differ between any two runs
ARRAYS = ("admit_ms", "lat")                    # per-stream/-event times: only their counts


def frame(run, seq):
    body = event(run, seq, 1_000_000 + seq).decode()
    return f"id: x:{seq}\nevent: bench.tick\ndata: {body}\n\n".encode()


def frames(run, seqs):
    return b"".join(frame(run, s) for s in seqs)


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def tagged_script(tag: int) -> bytes:
    """Tag k's own events of TAGS x 8 (event i is tag i % 3's seq i // 3), but tag 2 misses
    its seq 1, and one event of the next tag's subject (a leak: stale)."""
    own = [i // TAGS for i in range(8) if i % TAGS == tag and (tag, i) != (2, 5)]
    leak = frame(RUN * loadgen.TAG_SCALE + (tag + 1) % TAGS, 0)
    return frames(RUN * loadgen.TAG_SCALE + tag, own[:1]) + leak + \
        frames(RUN * loadgen.TAG_SCALE + tag, own[1:])


# each: the body (SSE text; sent chunked, in pieces), whether the stream ends after it
SCRIPTS = {
    "inorder": (frames(RUN, range(10)), False),
    "gap": (frames(RUN, [0, 1, 3, 4, 5, 6, 7, 8, 9]), False),
    "dup": (frames(RUN, [0, 1, 2, 3, 4, 5, 3, 6, 7, 8, 9]), False),
    "late": (frames(RUN, [0, 1, 3, 2, 4, 5, 6, 7, 8, 9]), False),
    "stale": (frame(RUN - 1, 5) + frames(RUN, range(10)), False),
    "end": (frames(RUN, range(5)), True),
    "inorder50": (frames(RUN, range(50)), False),
    # a storm stream: an older run's history, then ours from 40 on, 45 never comes
    "storm": (frames(RUN - 1, [98, 99]) + frames(RUN, [40, 41, 42, 43, 44, 46, 47, 48, 49]),
              False),
}


class FakeSSE:
    """HTTP/1.1 SSE server on 127.0.0.1: `s=deny` answers 401, `s=tagged&tag=k` needs an
    Authorization header; events start once `release` is set."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.release = threading.Event()
        self.headers_seen: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(4096)
                if not more:
                    return
                data += more
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            target = head.split(" ", 2)[1]
            query = parse_qs(urlsplit(target).query)
            name = query.get("s", ["inorder"])[0]
            auth = [x for x in head.split("\r\n") if x.lower().startswith("authorization:")]
            self.headers_seen += auth
            if name == "deny" or (name == "tagged" and not auth):
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunked(b"retry: 3000\n\n"))
            if name == "tagged":
                body, end = tagged_script(int(query["tag"][0])), False
            else:
                body, end = SCRIPTS[name]
            self.release.wait(20)
            # chunks of 3 events' size, written in 97-byte pieces: TCP may split anywhere
            size = 3 * len(frame(RUN, 0))
            stream = b"".join(chunked(body[i:i + size]) for i in range(0, len(body), size))
            if end:
                stream += b"0\r\n\r\n"
            for i in range(0, len(stream), 97):
                conn.sendall(stream[i:i + 97])
                time.sleep(0.0005)
            while conn.recv(4096):      # until the load generator drops the stream
                pass
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def server():
    s = FakeSSE()
    yield s
    s.close()


@pytest.fixture(scope="module")
def go_lg():
    binary = loadgen_go.build()
    child = loadgen_go.GoChild(binary, name="lg-go-test")
    yield child
    child.close()


@pytest.fixture(scope="module")
def py_lg():
    import bench
    child = bench.Child(multiprocessing.get_context("spawn"), loadgen.main, name="lg-py-test")
    yield child
    child.send(("quit",))
    child.proc.join(5)
    if child.proc.is_alive():
        child.proc.kill()


def session(lg, server, targets, *, sampled=0, total=10, tags=0, want=0, closed=0,
            storm=None):
    """connect_each `targets`, go, (storm: ("connect", path, n) of group 1), release the
    server, wait until the ticks counted `want` events and `closed` streams closed, expect
    `total` (and `tags`), finish. Returns (connected replies, the result)."""
    server.release.clear()
    ticks = {"events": 0, "closed": 0}

    def on_tick(_child, message):
        if message[0] == "tick":
            ticks["events"] += message[1]["events"]
            ticks["closed"] = message[1]["closed"]

    lg.send(("connect_each", server.url, targets, sampled, 4))
    replies = [lg.recv_kind("connected", 20, on_tick)]
    lg.send(("go", RUN, 0.0, 1e12))
    on_tick(lg, ("tick", lg.recv_kind("tick", 10)))     # the run is on: events count
    if storm is not None:
        path, n = storm
        lg.send(("connect", server.url + path, n, 0, n, 1))
        replies.append(lg.recv_kind("connected", 20, on_tick))
    server.release.set()
    deadline = time.monotonic() + 20
    while ticks["events"] < want or ticks["closed"] < closed:
        assert time.monotonic() < deadline, f"only {ticks} of {want} events, {closed} closed"
        on_tick(lg, ("tick", lg.recv_kind("tick", 10, on_tick)))
    lg.send(("expect", total, tags) if tags else ("expect", total))
    lg.send(("finish",))
    return replies, lg.recv_kind("result", 20, on_tick)


def target(name, tag=None, headers=()):
    query = f"s={name}" + (f"&tag={tag}" if tag is not None else "")
    return (f"/events?{query}", headers, tag)


MIXED = ["inorder", "gap", "dup", "late", "stale", "end", "deny"]
SESSIONS = {
    # every script on one stream each, 3 of the 7 sampled (the others take loadgen.py's fast
    # path where they can); 9 + 10 + 10 + 10 + 10 + 5 events counted, "end" closes
    "mixed": dict(targets=[target(x) for x in MIXED], sampled=3, want=54, closed=1),
    "tagged": dict(targets=[target("tagged", k, (("Authorization", f"Bearer t{k}"),))
                            for k in range(TAGS)], sampled=1, total=8, tags=TAGS, want=7),
    "storm": dict(targets=[target("inorder50")], sampled=1, total=50, want=50 + 2 * 9,
                  storm=("/events?s=storm", 2)),
}


@pytest.mark.parametrize("sampled", [0, 7])
def test_books_of_every_kind_of_stream(go_lg, server, sampled):
    replies, out = session(go_lg, server, **{**SESSIONS["mixed"], "sampled": sampled})
    assert (replies[0]["ok"], replies[0]["failed"], replies[0]["reasons"]) == \
        (6, 1, {"HTTP 401": 1})
    # gap: 2 missing; dup: 3 twice; late: 2 after 3 (not missing); stale: run 6's event;
    # end: the stream ended after 5 of 10
    assert (out["held"], out["closed_mid"], out["clients"]) == (5, 1, 6)
    assert (out["received"], out["missing"], out["clients_missing"]) == (54, 1 + 5, 2)
    assert (out["dups"], out["stale"], out["behind"]) == (1, 1, 5)
    assert out["close_reasons"] == {"end of stream": 1}
    assert out["window_events"] == out["events_total"] == 54
    assert out["sampled_clients"] == min(sampled, 6)
    samples = len(out["lat"]) // 8
    assert samples == (54 if sampled else 0) and len(out["lat_sent"]) == len(out["lat"])
    assert len(out["admit_ms"]) == 6 * 8 and out["groups"] == {}
    assert out["unsettled"] == {"not_started": 0, "tcp_connecting": 0, "awaiting_headers": 0,
                                "failed": 1, "reasons": {"HTTP 401": 1}}


def test_tagged_streams_count_other_subjects_events_as_stale(go_lg, server):
    replies, out = session(go_lg, server, **SESSIONS["tagged"])
    assert replies[0]["ok"] == TAGS
    assert sorted(server.headers_seen[-TAGS:]) == [f"Authorization: Bearer t{k}"
                                                  for k in range(TAGS)]
    # tag 0: seqs 0-2, tag 1: 0-2, tag 2: 0 of 0-1; each one leaked event of the next subject
    assert (out["received"], out["stale"], out["missing"], out["clients_missing"]) == \
        (7, 3, 1, 1)
    assert out["dups"] == 0 and out["behind"] == 1     # tag 2's seq 1 is after its last one


def test_an_anchored_storm_stream_has_books_of_its_own(go_lg, server):
    replies, out = session(go_lg, server, **SESSIONS["storm"])
    assert [r["ok"] for r in replies] == [1, 2]
    assert (out["received"], out["missing"], out["stale"], out["held"]) == (50, 0, 0, 1)
    storm = out["groups"][1]
    assert (storm["first_seq_min"], storm["first_seq_max"]) == (40, 40)
    assert (storm["received"], storm["missing"], storm["clients_missing"]) == (18, 2, 2)
    assert (storm["stale"], storm["dups"], storm["held"], storm["clients"]) == (4, 0, 2, 2)
    assert out["window_events"] == 50               # the window counts group 0 only
    assert out["events_total"] == 68


def test_a_refused_connect_and_a_reset_between_runs(go_lg):
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    go_lg.send(("connect", f"http://127.0.0.1:{port}/events", 3, 0, 2))
    reply = go_lg.recv_kind("connected", 10)
    assert (reply["ok"], reply["failed"], reply["reasons"]) == (0, 3, {"connect: ECONNREFUSED": 3})
    go_lg.send(("finish",))
    out = go_lg.recv_kind("result", 10)
    assert (out["clients"], out["received"], out["unsettled"]["failed"]) == (0, 0, 3)
    assert out["first_seq_min"] is None and out["started_min"] is None


@pytest.mark.parametrize("name", list(SESSIONS))
def test_the_same_result_as_the_python_worker(go_lg, py_lg, server, name):
    go_replies, go = session(go_lg, server, **SESSIONS[name])
    py_replies, py = session(py_lg, server, **SESSIONS[name])
    assert comparable(go) == comparable(py)
    assert [comparable(x) for x in go_replies] == [comparable(x) for x in py_replies]


def comparable(books: dict) -> dict:
    """`books` without what depends on time: timestamps and cpu dropped, per-stream admission
    and per-event latency arrays kept as their lengths, send times sorted."""
    out = {}
    for key, value in books.items():
        if key in TIMING or key in ("started", "last_ready"):
            continue
        if key in ARRAYS:
            out[key] = len(value)
        elif key == "lat_sent":
            out[key] = sorted(value[i:i + 8] for i in range(0, len(value), 8))
        elif key == "groups":
            out[key] = {g: comparable(b) for g, b in value.items()}
        else:
            out[key] = value
    return out


def test_build_is_cached(tmp_path):
    binary = loadgen_go.build(tmp_path / "lg")
    made = binary.stat().st_mtime_ns
    assert loadgen_go.build(tmp_path / "lg") == binary
    assert binary.stat().st_mtime_ns == made


def test_messages_decode_to_loadgen_tuples():
    import base64
    raw = ["result", {"lat": base64.b64encode(b"\x01" * 8).decode(), "admit_ms": "",
                      "groups": {"1": {"admit_ms": base64.b64encode(b"ab").decode()}}}]
    kind, body = loadgen_go.decode(raw)
    assert kind == "result" and body["lat"] == b"\x01" * 8 and body["admit_ms"] == b""
    assert body["groups"] == {1: {"admit_ms": b"ab"}}


def test_without_a_go_toolchain_the_python_worker_runs(monkeypatch):
    import bench

    def no_go(*_a, **_k):
        raise loadgen_go.BuildError("no Go toolchain (go) found")
    monkeypatch.setattr(loadgen_go, "build", no_go)
    monkeypatch.setattr(loadgen_go, "go_tool", lambda: None)
    args = bench.parse_args(["--auth", ""])
    assert args.lg == "go"
    assert bench.Bench(args)._build_lg() is None and args.lg == "python"


def test_more_streams_at_once_than_one_fill_opens_all_connect(go_lg, server):
    """fill() opens at most fillBatch (256) sockets per turn of the loop, reading the open
    streams in between: the rest must still be opened, at once, not at the next time-out."""
    server.release.clear()
    started = time.monotonic()
    go_lg.send(("connect", server.url + "/events?s=inorder", 300, 0, 300))
    reply = go_lg.recv_kind("connected", 30)
    assert (reply["ok"], reply["failed"]) == (300, 0)
    assert time.monotonic() - started < 5
    go_lg.send(("finish",))
    assert go_lg.recv_kind("result", 20)["clients"] == 300
    server.release.set()
