"""Records Kafka deleted before the live consumer read them: the clients are told with a
`gap` event (never a silent jump), and a resume from inside the hole is told too."""
import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _send(producer, topic, numbers):
    for n in numbers:
        producer(topic, {"id": f"e{n}", "type": "blog.post.created", "source": "svc",
                         "data": {"n": n}}, partition=0)
    producer.flush()


def _worker(svc) -> int:
    pid = svc.process.pid
    [child] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def _ids(events):
    return [json.loads(e["data"])["id"] for e in events if e["event"] != "gap"]


def test_records_deleted_before_the_live_consumer_read_them_yield_a_gap(
        kafka, topics, service, producer):
    topic = topics("hole", partitions=1)["hole"]
    svc = service([topic], expect_partitions=1)
    client = SSEClient(f"{svc.url}/events?history=false", timeout=20)
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    _send(producer, topic, range(0, 3))
    client.read_count(3)
    before_hole = client.events[-1]["id"]              # the position 3: inside the hole below
    worker = _worker(svc)
    os.kill(worker, signal.SIGSTOP)                    # the gateway reads nothing meanwhile
    try:
        # Its pending fetch is answered (empty) after 500 ms, into the socket's buffer; the
        # answer came 0.54-0.57 s after the stop beside two busy cores: 2 s leaves room.
        time.sleep(2.0)
        _send(producer, topic, range(3, 8))
        admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
        try:
            admin.delete_records({TopicPartition(topic, 0): 8})   # what retention would do
        finally:
            admin.close()
    finally:
        os.kill(worker, signal.SIGCONT)
    _send(producer, topic, range(8, 11))
    client.read_until(lambda evs: len(_ids(evs)) >= 6, timeout=15)
    client.read_for(0.5)
    gaps = [e for e in client.events if e["event"] == "gap"]
    assert len(gaps) == 1, client.events
    body = json.loads(gaps[0]["data"])
    assert body == {"reason": "retention", "partitions": [
        {"topic": topic, "partition": 0, "requested_offset": 3, "resumed_offset": 8,
         "reason": "retention"}]}
    assert _ids(client.events) == ["e0", "e1", "e2", "e8", "e9", "e10"]   # exactly once
    assert [e["event"] for e in client.events][3] == "gap"                # before the later ones
    client.close()

    after_gap = gaps[0]["id"]                          # resuming after the gap: not told again
    again = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": after_gap})
    again.read_count(3)
    again.read_for(0.3)
    assert [e["event"] for e in again.events].count("gap") == 0
    assert _ids(again.events) == ["e8", "e9", "e10"]
    again.close()

    inside = SSEClient(f"{svc.url}/events?last_event_id={quote(before_hole)}")
    inside.read_count(4)
    inside.read_for(0.3)
    assert inside.events[0]["event"] == "gap"
    [part] = json.loads(inside.events[0]["data"])["partitions"]
    assert (part["reason"], part["requested_offset"], part["resumed_offset"]) == ("retention", 3, 8)
    assert _ids(inside.events) == ["e8", "e9", "e10"]
    inside.close()
