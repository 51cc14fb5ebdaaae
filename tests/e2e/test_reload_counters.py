"""The instance's counters across a SIGHUP: the new worker joins while the old one drains,
and the count of records read goes on from what the old one had read, not from what the
last /stats saw (found by an audit: it froze until the new worker caught up)."""
from __future__ import annotations

import json
import signal
import time

import pytest

from tests.authtools import wait_for
from tests.harness import Service
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _workers(svc) -> set[int]:
    pid = svc.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return {int(p) for p in children.read().split()}


def test_records_read_after_a_sighup_add_to_what_the_old_worker_read(kafka, topics, tmp_path):
    from kafka import KafkaProducer
    topic = topics("reload-counters", partitions=1)["reload-counters"]
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=5)

    def produce(count: int) -> None:
        for n in range(count):
            producer.send(topic, json.dumps({"type": "t", "data": n}).encode())
        producer.flush()
    # a drain of 8 s with a stream open: the old worker settles its last counts well after
    # the new one has joined
    svc = Service(kafka.bootstrap, [topic], tmp_path / "gateway.log", WORKERS=1,
                  SSE_DRAIN_SECONDS=8)
    svc.start(expect_partitions=1)
    held = SSEClient(f"{svc.url}/events?history=false")
    try:
        produce(100)
        wait_for(lambda: svc.stats()["events_consumed"] == 100, 20, what="100 read")
        produce(1000)                               # nobody asks /stats meanwhile
        time.sleep(3)
        old = _workers(svc)
        svc.process.send_signal(signal.SIGHUP)
        wait_for(lambda: _workers(svc) and not _workers(svc) & old, 30, what="the old worker gone")
        svc.wait_healthy(expect_partitions=1, timeout=30)
        assert svc.stats()["events_consumed"] == 1100
        produce(500)
        wait_for(lambda: svc.stats()["events_consumed"] == 1600, 20, what="1,600 read")
    finally:
        held.close()
        producer.close(timeout=5)
        svc.stop()
