"""A replay's memory is bounded whatever its range and record size (issue #11, item 5).

1,000 records of 200 KB (200 MB) are replayed from Kafka; the gunicorn worker's resident
memory (VmRSS, sampled every 20 ms) must stay within MEMORY_BOUND of what it was when idle,
both for a client that reads everything and for one whose filter matches nothing and that
hangs up after half a second.
"""
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from actors.resume import Frontier
from tests.sse import _Chunked

pytestmark = pytest.mark.e2e

PARTITIONS = 3
RECORDS = 1000
RECORD_BYTES = 200_000
MEMORY_BOUND = 64 * 1024 * 1024


def _worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    assert len(children) == 1, f"expected one gunicorn worker, found {children}"
    return int(children[0])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Sampler:
    """The peak VmRSS of a process while it runs, sampled every 20 ms in a thread."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, _rss(pid), True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.peak = max(self.peak, _rss(self.pid))
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def _settled_rss(pid, seconds=3.0) -> int:
    """The worker's RSS once it stops changing much (after live consumption)."""
    deadline, last = time.monotonic() + 30, _rss(pid)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = _rss(pid)
        if abs(now - last) < 2 * 1024 * 1024:
            return now
        last = now
    return last


def _open(url, last_event_id):
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                  f"Last-Event-ID: {last_event_id}\r\n\r\n").encode())
    return sock


def _count_events(sock, wanted, timeout) -> int:
    """Read the stream, counting `data:` lines without keeping the bytes."""
    decoder, head, tail, count = _Chunked(), b"", b"", 0
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    data = rest
    while True:
        text = tail + decoder.feed(data)
        count += text.count(b"\ndata: ")
        tail = text[-7:]
        if count >= wanted or decoder.done or time.monotonic() > deadline:
            return count
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        data = sock.recv(1 << 20)
        if not data:
            return count


def test_a_large_replay_stays_within_the_memory_bound(kafka, topics, service):
    topic = topics("large")["large"]
    svc = service([topic], expect_partitions=PARTITIONS, SSE_HISTORY_SIZE=10,
                  SSE_MAX_EVENT_BYTES=1_048_576)
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=5,
                             max_request_size=1_048_576)
    pad = "x" * RECORD_BYTES
    for n in range(RECORDS):
        producer.send(topic, json.dumps({"id": f"e{n}", "type": "big", "source": "svc",
                                         "data": pad}).encode(), partition=n % PARTITIONS)
    producer.flush(timeout=120)
    producer.close(timeout=5)
    deadline = time.monotonic() + 60
    while svc.stats()["events_consumed"] < RECORDS and time.monotonic() < deadline:
        time.sleep(0.2)
    worker = _worker_pid(svc.process.pid)
    from_zero = Frontier([topic], {(topic, p): 0 for p in range(PARTITIONS)}).token()

    # A client whose filter matches nothing, gone after half a second.
    idle = _settled_rss(worker)
    sampler = _Sampler(worker)
    sock = _open(f"{svc.url}/events?event_types=nothing.matches", from_zero)
    time.sleep(0.5)
    sock.close()
    time.sleep(3.0)
    nothing_growth = sampler.stop() - idle

    # A client that reads all 200 MB.
    idle = _settled_rss(worker)
    sampler = _Sampler(worker)
    sock = _open(f"{svc.url}/events", from_zero)
    received = _count_events(sock, RECORDS, timeout=120)
    sock.close()
    full_growth = sampler.stop() - idle

    mb = 1024 * 1024
    print(f"worker RSS growth during a replay of {RECORDS} x {RECORD_BYTES // 1000} KB: "
          f"no-match client {nothing_growth / mb:.0f} MB, full reader {full_growth / mb:.0f} MB "
          f"(idle {idle / mb:.0f} MB)")
    assert received == RECORDS
    assert nothing_growth < MEMORY_BOUND, f"{nothing_growth / mb:.0f} MB"
    assert full_growth < MEMORY_BOUND, f"{full_growth / mb:.0f} MB"
