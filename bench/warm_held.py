"""What streams held by a warm start cost: N `history=false` streams open on a worker that
cannot reach Kafka yet, events are produced, then Kafka comes within reach.

    .venv/bin/python bench/warm_held.py [--streams 1000] [--events 20]

Starts one Kafka broker (tests/harness.py, the test suite's own) and the gateway under
gunicorn with one worker, its Kafka behind a relay that refuses connections until opened
(tests.harness.Relay). Opens --streams streams, produces --events events, opens the relay,
and prints how long after that the first, median and last stream had every event, and the
worker's log line of the one Kafka read that served them. The first seconds are
kafka-python's reconnect back-off to a bootstrap that refused it.
"""
from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import harness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    kafka = harness.LocalKafka(harness.free_port_pair())
    kafka.start()
    relay = svc = None
    try:
        topic = f"warm-held.{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
        admin.create_topics([NewTopic(topic, 3, 1)])
        admin.close()
        relay = harness.Relay(kafka.bootstrap)
        log = Path(tempfile.mkdtemp(prefix="warm-held-")) / "gunicorn.log"
        svc = harness.Service(relay.address, [topic], log, SSE_MAX_CLIENTS=100_000,
                              SSE_MAX_CLIENTS_PER_IP=100_000)
        svc.start(healthy=False)
        streams = _open(svc.port, args.streams)
        time.sleep(2)
        producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
        for n in range(args.events):
            producer.send(topic, json.dumps({"id": f"e{n}", "type": "t"}).encode(),
                          partition=n % 3)
        producer.flush()
        producer.close()
        opened = time.monotonic()
        relay.open()
        took = _until_all(streams, args.events, opened)
        print(f"{args.streams} held streams: {len(took)} got all {args.events} events; after "
              f"Kafka came within reach: first {took[0]:.2f} s, median "
              f"{took[len(took) // 2]:.2f} s, last {took[-1]:.2f} s")
        print(*[line for line in log.read_text().splitlines() if "replayed" in line], sep="\n")
        for sock in streams:
            sock.close()
    finally:
        if svc is not None:
            svc.stop()
        if relay is not None:
            relay.close()
        kafka.stop()


def _open(port: int, count: int) -> list[socket.socket]:
    streams = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: bench\r\n\r\n")
        sock.setblocking(False)
        streams.append(sock)
    return streams


def _until_all(streams, events: int, since: float, timeout: float = 120.0) -> list[float]:
    """Seconds from `since` until each stream had `events` events, sorted."""
    selector = selectors.DefaultSelector()
    for sock in streams:
        selector.register(sock, selectors.EVENT_READ, [b""])
    took = []
    while len(took) < len(streams) and time.monotonic() - since < timeout:
        for key, _ in selector.select(1):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            key.data[0] += data
            if data and key.data[0].count(b'"id":"e') >= events:
                took.append(time.monotonic() - since)
                selector.unregister(key.fileobj)
    return sorted(took)


if __name__ == "__main__":
    main()
