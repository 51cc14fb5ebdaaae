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


# -- the reconnect storm's books (issue 15) --------------------------------------------------------
def storm_client(w, tag=None):
    c = client(w, tag=tag)
    c.group, c.anchor = 1, True
    return c


def test_a_storm_stream_counts_from_its_first_event_of_the_run(worker):
    c = storm_client(worker)
    history = frame(6, 98) + frame(6, 99) + b"".join(frame(7, i) for i in range(40, 45))
    worker.on_body(c, history, 1.0)                         # older run's history, then ours
    worker.on_body(c, b"".join(frame(7, i) for i in range(45, 50)), 1.0)     # live
    worker.set_expect(50)
    assert (c.first, c.recv, c.stale, c.dups, c.missing(c.expect)) == (40, 10, 2, 0, 0)


def test_a_storm_stream_with_a_gap_a_repeat_or_an_early_end_loses_events(worker):
    gap, repeat, short, nothing = (storm_client(worker) for _ in range(4))
    worker.on_body(gap, b"".join(frame(7, i) for i in (40, 41, 43, 44)), 1.0)
    worker.on_body(repeat, b"".join(frame(7, i) for i in (40, 41, 41, 42, 43, 44)), 1.0)
    worker.on_body(short, b"".join(frame(7, i) for i in (40, 41, 42)), 1.0)
    worker.on_body(nothing, frame(6, 99), 1.0)              # only an older run's history
    worker.set_expect(45)
    books = [(c.missing(c.expect), c.dups) for c in (gap, repeat, short, nothing)]
    assert books == [(1, 0), (0, 1), (2, 0), (45, 0)]
    assert loadgen.books([gap, short, nothing])["behind"] == 0 + 2 + 45


def test_the_storm_group_has_books_of_its_own(worker):
    connected = client(worker)
    stormy = storm_client(worker)
    worker.on_body(connected, b"".join(frame(7, i) for i in range(10)), 1.0)
    worker.on_body(stormy, b"".join(frame(7, i) for i in (5, 6, 8, 9)), 1.0)
    worker.set_expect(10)
    out = worker.result()
    assert (out["missing"], out["held"], out["received"]) == (0, 1, 10)
    storm = out["groups"][1]
    assert (storm["missing"], storm["clients_missing"], storm["held"]) == (1, 1, 1)
    assert out["unsettled"]["awaiting_headers"] == 0
    assert (storm["first_seq_min"], storm["first_seq_max"]) == (5, 5)


def test_streams_opened_during_a_run_join_it_anchored(worker):
    worker.go(7, 0, 10**12)
    worker.start_connect("http://127.0.0.1:9/events", 3, 0, 3, group=1)
    opened = list(worker.clients.values())
    assert [(c.run, c.group, c.anchor) for c in opened] == [(7, 1, True)] * 3
    stuck = worker.result()["unsettled"]        # cut short: where the streams were
    assert stuck["tcp_connecting"] + stuck["failed"] == 3 and stuck["awaiting_headers"] == 0
    assert not worker.pending and not worker.connecting and not worker.clients


def test_storm_window_latency_and_both_groups_books():
    import numpy as np
    from array import array

    import bench

    def book(lat_sent, storm):
        lat = array("q", (ms * 1000 for ms, _t in lat_sent))
        sent = array("q", (int(t * 1e6) for _ms, t in lat_sent))
        return {"held": 10, "closed_mid": 0, "missing": 0, "clients_missing": 0, "dups": 0,
                "behind": 1, "sampled_clients": 2, "lat": lat.tobytes(), "lat_sent": sent.tobytes(),
                "groups": {1: storm}}
    storm = {"held": 50, "closed_mid": 0, "missing": 3, "clients_missing": 1, "dups": 0,
             "stale": 4, "received": 100, "first_seq_min": 40, "first_seq_max": 60, "behind": 2,
             "started_min": 100.0, "ready_max": 100.5,
             "admit_ms": array("d", [100.0] * 49 + [500.0]).tobytes()}
    # before the storm (t < 100) 10 ms; during it (100..102) 500 ms; after it 1 ms
    books = [book([(10, 99.0 + i / 100) for i in range(100)]
                  + [(500, 100.0 + i / 50) for i in range(100)]
                  + [(1, 103.0 + i / 100) for i in range(100)], storm)] * 2
    out = bench.storm_books(books, 100.0, 102.0, 99.0)
    assert out["p99_ms"] == 500 and out["pre_p99_ms"] == 10
    assert out["latency_samples"] == 200
    assert (out["storm_missing"], out["storm_held"], out["storm_other_runs"]) == (6, 100, 8)
    assert out["storm_first_seq"] == [40, 60] and out["behind"] == 2 * (1 + 2)
    assert (out["admitted"], out["admit_s"], out["streams_per_s"]) == (100, 0.5, 200.0)
    assert out["admit_p50_ms"] == 100 and out["admit_p99_ms"] > 400
    assert np.isclose(out["max_ms"], 500)


@pytest.mark.parametrize("change, status", [
    ({}, "ok"), ({"storm_missing": 2}, "LOSS"), ({"dups": 1}, "LOSS"),
    ({"storm_missing": 2, "missing": 3, "behind": 5}, "saturated"),     # only the tail is late
    ({"storm_missing": 2, "missing": 3, "behind": 4}, "LOSS"),          # and one gap
    ({"refused": 5, "refused_reasons": {"HTTP 503": 5}}, "saturated"),
    ({"aborted": "a client fell 6.0s behind"}, "saturated"),
])
def test_storm_status(change, status):
    import bench
    res = {"n": 1000, "opened": 1000, "storm": 5000, "missing": 0, "dups": 0,
           "storm_missing": 0, "storm_dups": 0, "refused": 0, **change}
    assert bench.storm_status(res)[0] == status


def test_connect_summary_and_grpc_window():
    from array import array

    import bench
    from grpc_probe import window_stats
    replies = [{"ok": 2, "failed": 1, "reasons": {"HTTP 503": 1}, "started": 10.0,
                "last_ready": 10.5, "admit_ms": array("d", [100, 400]).tobytes()},
               {"ok": 2, "failed": 0, "reasons": {}, "started": 10.1, "last_ready": 11.0,
                "admit_ms": array("d", [200, 900]).tobytes()}]
    s = bench.connect_summary(replies)
    assert (s["ok"], s["failed"], s["reasons"], s["seconds"], s["per_s"]) == \
        (4, 1, {"HTTP 503": 1}, 1.0, 4.0)
    calls = [(float(t), float(t)) for t in range(100)]      # the call at t took t ms
    w = window_stats(calls, [5.0, 50.0], 10, 19)
    assert (w["count"], w["errors"], w["p50_ms"], w["max_ms"]) == (10, 0, 14.5, 19.0)
    few = window_stats([(float(t), float(t)) for t in range(81)], [])
    assert few["p99_ms"] == 79.2 and few["max_ms"] == 80.0     # 81 calls: p99 is not the max


# -- the targets' verdicts ----------------------------------------------------------------------
def row(w, n, r, **kw):
    base = {"system": "gateway", "workers": w, "n": n, "r": r, "status": "ok", "held": n,
            "missing": 0, "dups": 0, "closed_mid": 0, "p99_ms": 40.0, "floor_p99_ms": 30.0,
            "delivered_per_s": n * r, "kb_per_conn": 20.0, "conn_per_s": 1000.0,
            "grpc": {"count": 250, "errors": 0, "p50_ms": 2.0, "p99_ms": 10.0}}
    return {**base, **kw}


def storm_row(w, **kw):
    base = {"system": "gateway", "workers": w, "scenario": "storm", "n": 1000, "r": 100,
            "storm": 5000, "status": "ok", "admitted": 5000, "refused": 0, "admit_s": 0.8,
            "streams_per_s": 6250.0, "p99_ms": 120.0, "pre_p99_ms": 40.0, "missing": 0,
            "dups": 0, "closed_mid": 0, "storm_missing": 0, "storm_dups": 0,
            "storm_closed_mid": 0}
    return {**base, **kw}


def passing_run():
    rows = []
    for w in (1, 2):
        rows += [row(w, 1000, 100), row(w, 2000, 100), row(w, 1000, 500),
                 row(w, 2000, 10),
                 row(w, 1000, 2000, probe=True, status="saturated",
                     delivered_per_s=500_000 * w, note="delivered 25% of offered"),
                 row(w, 2000, 100, system="nchan", p99_ms=80.0), storm_row(w)]
    rows += [row(1, 1000, 100, system="python", status="saturated",
                 delivered_per_s=50_000, note="delivered 50%")]
    return rows


def verdicts(rows, reasons=None):
    import report
    return {t["id"]: t for t in report.targets(rows, {}, reasons)}


def replace(rows, match, **kw):
    return [{**x, **kw} if all(x.get(k) == v for k, v in match.items()) else x for x in rows]


def test_every_target_passes_on_a_passing_run():
    got = verdicts(passing_run())
    assert {k: t["verdict"] for k, t in got.items()} == {k: "PASS" for k in got}
    assert "i15-storm-rate" in got and "i6-vs-python" in got and len(got) == 13


@pytest.mark.parametrize("match, change, target", [
    ({"workers": 2, "r": 2000}, {"delivered_per_s": 1.6 * 500_000}, "i15-scaling"),
    ({"workers": 2, "n": 1000, "r": 100, "scenario": None}, {"p99_ms": 56.0},    # 26 over
     "i15-latency"),
    ({"workers": 2, "n": 1000, "r": 100, "scenario": None}, {"missing": 1}, "i15-latency"),
    ({"workers": 2, "n": 2000, "r": 100, "system": "gateway"}, {"p99_ms": 81.0},
     "i15-2000-vs-nchan"),
    ({"workers": 2, "scenario": "storm"}, {"streams_per_s": 4999.0}, "i15-storm-rate"),
    ({"workers": 2, "scenario": "storm"}, {"refused": 3, "admitted": 4997}, "i15-storm-rate"),
    ({"workers": 2, "scenario": "storm"}, {"p99_ms": 251.0}, "i15-storm-p99"),
    ({"workers": 2, "scenario": "storm"}, {"storm_dups": 1}, "i15-storm-p99"),
    ({"workers": 2, "n": 1000, "r": 100, "scenario": None},
     {"grpc": {"count": 250, "errors": 0, "p50_ms": 9.0, "p99_ms": 51.0}}, "i15-grpc"),
    ({"workers": 2, "n": 2000, "r": 10}, {"kb_per_conn": 30.5}, "i15-idle-kb"),
    ({"workers": 1, "n": 1000, "r": 100, "scenario": None}, {"p99_ms": 51.0}, "i6-1000x100"),
])
def test_a_miss_is_a_miss_and_shows_its_reason(match, change, target):
    rows = replace(passing_run(), match, **change)
    got = verdicts(rows, {target: "flame graph: json encoding", "i15-grpc-x": "unused"})
    assert got[target]["verdict"] == "MISS"
    assert got[target]["reason"] == "flame graph: json encoding"
    assert [k for k, t in got.items() if t["verdict"] != "PASS"] == [target]


def test_judged_at_two_workers_with_one_worker_beside():
    rows = replace(passing_run(), {"workers": 1, "n": 1000, "r": 100, "scenario": None},
                   p99_ms=90.0)
    got = verdicts(rows)
    assert got["i15-latency"]["verdict"] == "PASS"          # w=1 is shown, not judged
    assert "w=1: p99 90.0 - kafka 30.0 = 60.0 ms" in got["i15-latency"]["measured"]
    assert got["i6-1000x100"]["verdict"] == "MISS"          # issue 6 is judged at w=1


def test_undecidable_targets_are_na():
    rows = replace(passing_run(), {"workers": 1, "r": 2000}, status="ok")   # w=1 not saturated
    rows = [x for x in rows if x["system"] != "nchan"]
    got = verdicts(rows)
    assert got["i15-scaling"]["verdict"] == "n/a"
    assert got["i15-2000-vs-nchan"]["verdict"] == "n/a"
    rows = replace(passing_run(), {"system": "nchan"}, status="saturated")
    assert verdicts(rows)["i15-2000-vs-nchan"]["verdict"] == "PASS"     # nchan could not


def test_the_report_prints_the_reason_of_a_miss_and_the_storm_table():
    import report
    rows = replace(passing_run(), {"workers": 2, "scenario": "storm"}, p99_ms=300.0)
    doc = report.build(rows, {}, {"i15-storm-p99": "history replay holds the hub"})
    md = doc["markdown"]
    assert "| MISS | history replay holds the hub |" in md
    assert "## Reconnect storm" in md and "| gateway | 2 | 1000 | 100 | 5000 | 5000 |" in md
    assert "-- reason: history replay holds the hub" in doc["text"]
