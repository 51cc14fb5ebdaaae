"""Kafka replays under attack and in a reconnect storm (issue #11, item 4).

Replays the history cannot serve read Kafka. They must not be amplified (clients resuming the
same range share one read), must not outlive their client (a closed stream's replay is
cancelled at once) and must be fair across client addresses (one address's queue of replays
cannot delay another address's resume).
"""
import json
import re
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import pytest

from actors.resume import Frontier
from tests.sse import SSEParser, _Chunked

pytestmark = pytest.mark.e2e

PARTITIONS = 3


class Stream:
    """A raw SSE stream from a chosen source address; records when its first event came."""

    def __init__(self, url, last_event_id=None, source="127.0.0.1", timeout=60.0):
        parts = urlsplit(url)
        self.started = time.monotonic()
        self.first_at = None
        self.events = []
        self.closed = False
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout,
                                             source_address=(source, 0))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"GET {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
                "Accept: text/event-stream"]
        if last_event_id:
            head.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.parser, self.decoder, self.buffer = SSEParser(), _Chunked(), b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the headers: {self.buffer!r}")
            self.buffer += chunk
        status, _, rest = self.buffer.partition(b"\r\n\r\n")
        assert b" 200 " in status.split(b"\r\n")[0], status
        self._feed(rest)

    def _feed(self, data):
        events = self.parser.feed(self.decoder.feed(data))
        if events and self.first_at is None:
            self.first_at = time.monotonic()
        self.events.extend(events)

    @property
    def first_event_s(self):
        return None if self.first_at is None else self.first_at - self.started

    def read_until(self, done, timeout):
        deadline = time.monotonic() + timeout
        while not done(self) and not self.closed and time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self._feed(chunk)
        return self

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _ids(stream):
    return [json.loads(e["data"])["id"] for e in stream.events if e["event"] != "gap"]


def _fill(bootstrap, topic, count, size=200):
    """`count` events spread round-robin over the partitions: e0, e1, ... (id = its number)."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=20, batch_size=262144)
    pad = "x" * size
    for n in range(count):
        producer.send(topic, json.dumps({"id": f"e{n}", "type": "bulk", "source": "svc",
                                         "data": pad}).encode(), partition=n % PARTITIONS)
    producer.flush(timeout=60)
    producer.close(timeout=5)


def _token(topic, offsets):
    return Frontier([topic], {(topic, p): offsets[p] for p in range(PARTITIONS)}).token()


def _expected(count, offsets):
    return {f"e{n}" for n in range(count) if n // PARTITIONS >= offsets[n % PARTITIONS]}


def _wait_for_frontier(svc, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.stats().get("events_consumed", 0) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"the service did not consume {count} events: {svc.stats()}")


def test_abandoned_replays_are_cancelled_and_do_not_delay_other_resumes(kafka, topics, service):
    topic = topics("abandon")["abandon"]
    count = 12000
    svc = service([topic], expect_partitions=PARTITIONS)
    _fill(kafka.bootstrap, topic, count)
    _wait_for_frontier(svc, count)
    from_zero = _token(topic, [0, 0, 0])
    for _ in range(30):                 # each asks for SSE_REPLAY_MAX_EVENTS records, then leaves
        attacker = Stream(f"{svc.url}/events", from_zero)
        time.sleep(0.3)
        attacker.close()
    per_partition = count // PARTITIONS
    near_end = [per_partition - 60] * PARTITIONS       # 180 events: just past the history
    results = {}
    for source in ("127.0.0.2", "127.0.0.1"):           # another address, and the attacker's
        normal = Stream(f"{svc.url}/events", _token(topic, near_end), source=source)
        want = _expected(count, near_end)
        normal.read_until(lambda s: len(s.events) >= len(want), timeout=60)
        normal.close()
        results[source] = normal.first_event_s
        assert set(_ids(normal)) == want and len(_ids(normal)) == len(want)
    print(f"time to first event after 30 abandoned replays: {results}")
    assert all(t is not None and t < 3.0 for t in results.values()), results


def test_one_address_cannot_delay_another_addresss_resume(kafka, topics, service):
    topic = topics("fair")["fair"]
    count = 12000
    svc = service([topic], expect_partitions=PARTITIONS)
    _fill(kafka.bootstrap, topic, count)
    _wait_for_frontier(svc, count)
    # 30 open resumes from different starts (no two can share a read), all reading.
    heavy = [Stream(f"{svc.url}/events", _token(topic, [i, i, i])) for i in range(30)]
    readers = [threading.Thread(target=s.read_until, args=(lambda s: False, 120), daemon=True)
               for s in heavy]
    for reader in readers:
        reader.start()
    time.sleep(0.5)
    per_partition = count // PARTITIONS
    near_end = [per_partition - 60] * PARTITIONS
    normal = Stream(f"{svc.url}/events", _token(topic, near_end), source="127.0.0.2")
    want = _expected(count, near_end)
    normal.read_until(lambda s: len(s.events) >= len(want), timeout=90)
    normal.close()
    for stream in heavy:
        stream.close()
    print(f"time to first event beside 30 heavy replays of another address: "
          f"{normal.first_event_s}")
    assert set(_ids(normal)) == want
    assert normal.first_event_s is not None and normal.first_event_s < 3.0, normal.first_event_s


def test_a_reconnect_storm_just_past_the_history_is_served_within_5_seconds(kafka, topics,
                                                                           service):
    topic = topics("storm")["storm"]
    count = 300                                   # the history keeps the last 100
    svc = service([topic], expect_partitions=PARTITIONS)
    _fill(kafka.bootstrap, topic, count)
    _wait_for_frontier(svc, count)
    token, want = _token(topic, [0, 0, 0]), _expected(count, [0, 0, 0])
    clients, streams, errors = 200, [], []
    gate = threading.Barrier(clients)

    def resume(i):
        gate.wait()
        try:
            stream = Stream(f"{svc.url}/events", token, source=f"127.0.0.{1 + i % 20}")
            streams.append(stream.read_until(lambda s: len(s.events) >= len(want), 60))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=resume, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for stream in streams:
        stream.close()
    assert not errors, errors[:3]
    firsts = sorted(s.first_event_s if s.first_event_s is not None else float("inf")
                    for s in streams)
    print(f"storm of {clients}: time to first event p50 {statistics.median(firsts):.2f} s, "
          f"max {firsts[-1]:.2f} s")
    assert len(streams) == clients
    assert all(set(_ids(s)) == want and len(_ids(s)) == len(want) for s in streams)
    assert firsts[-1] < 5.0, f"p50 {statistics.median(firsts):.2f} s, max {firsts[-1]:.2f} s"
    reads = re.findall(r"replayed (\d+) record\(s\) from Kafka to (\d+) client",
                       svc.log_path.read_text(errors="replace"))
    print(f"storm of {clients}: {len(reads)} Kafka read(s) served them")
    assert sum(int(served) for _, served in reads) == clients and len(reads) <= clients // 10


def test_resumes_sharing_reads_while_events_flow_get_every_event_exactly_once(kafka, topics,
                                                                              service):
    topic = topics("flowing")["flowing"]
    svc = service([topic], expect_partitions=PARTITIONS)
    _fill(kafka.bootstrap, topic, 300)
    _wait_for_frontier(svc, 300)
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
    total = 600

    def flow():                       # e300..e599 at about 100 events/s
        for n in range(300, total):
            producer.send(topic, json.dumps({"id": f"e{n}", "type": "bulk", "source": "svc",
                                             "data": n}).encode(), partition=n % PARTITIONS)
            time.sleep(0.01)
        producer.flush(timeout=30)

    flowing = threading.Thread(target=flow)
    flowing.start()
    streams = []
    for i in range(20):               # each subscribes at a different live frontier
        streams.append(Stream(f"{svc.url}/events", _token(topic, [0, 0, 0]),
                              source=f"127.0.0.{1 + i % 4}"))
        time.sleep(0.1)
    flowing.join()
    producer.close(timeout=5)
    want = {f"e{n}" for n in range(total)}
    for stream in streams:
        stream.read_until(lambda s: len(s.events) >= total, timeout=30).read_until(
            lambda s: False, 0.3)
        stream.close()
        got = _ids(stream)
        assert set(got) == want and len(got) == total, (len(got), len(set(got)))
        numbers = [int(i[1:]) for i in got]
        for p in range(PARTITIONS):
            mine = [n for n in numbers if n % PARTITIONS == p]
            assert mine == sorted(mine), f"partition {p} out of order"
