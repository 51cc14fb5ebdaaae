"""Partitions added to a topic while the gateway runs (README "Events from Kafka": picked up
within KAFKA_METADATA_REFRESH_MS and read from their beginning)."""
import json
import time

import pytest

from tests.harness import http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _ids(events):
    return sorted(json.loads(e["data"])["id"] for e in events if e["event"] != "gap")


def test_partitions_added_while_running_are_read_from_their_beginning(
        kafka, topics, service, producer):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewPartitions
    topic = topics("grow", partitions=1)["grow"]
    svc = service([topic], expect_partitions=1)
    client = SSEClient(f"{svc.url}/events?history=false")
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    producer(topic, {"id": "old-0", "type": "t"}, partition=0).get(timeout=10)
    client.read_count(1)
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        admin.create_partitions({topic: NewPartitions(3)})
    finally:
        admin.close()
    # written at once, before the gateway can have seen the new partitions
    fresh = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
    deadline = time.monotonic() + 20
    while len(fresh.partitions_for(topic)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    for n in range(9):
        value = json.dumps({"id": f"new-{n}", "type": "t"}).encode()
        fresh.send(topic, value, partition=n % 3).get(timeout=10)
    fresh.close()
    got = client.read_count(10, timeout=30)
    client.read_for(1.0)
    assert _ids(client.events) == sorted(["old-0"] + [f"new-{n}" for n in range(9)])
    status, health = http_json(svc.url + "/health")
    assert status == 200 and len(health["kafka"]["partitions"]) == 3
    # a resume from the first event gets exactly what followed, new partitions included
    again = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": got[0]["id"]})
    again.read_count(9, timeout=20)
    again.read_for(1.0)
    assert _ids(again.events) == sorted(f"new-{n}" for n in range(9))
    client.close()
    again.close()


def test_a_topic_created_when_none_existed_at_start_is_read_from_its_beginning(
        kafka, service, producer):
    """No topic of KAFKA_TOPICS at start (a fresh environment): the first one created was
    taken for the start and read from its end, and a stream already open lost everything
    written before the gateway noticed it (200 produced, 5 received), with no gap event."""
    import uuid
    from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"late.{uuid.uuid4().hex[:8]}"
    svc = service([topic], SSE_HEARTBEAT_SECONDS=1)
    time.sleep(6)                           # connected, and the topic is missing
    live = SSEClient(f"{svc.url}/events?history=false")
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    event = {"type": "t", "source": "s", "timestamp": "2025-01-06T12:00:00Z"}
    for n in range(200):
        producer(topic, {**event, "id": f"e{n}", "data": {"n": n}}, partition=0)
    producer.flush()
    deadline = time.monotonic() + 20
    while (time.monotonic() < deadline
           and not http_json(svc.url + "/health")[1]["kafka"]["partitions"]):
        time.sleep(0.2)
    for n in range(200, 205):
        producer(topic, {**event, "id": f"e{n}", "data": {"n": n}}, partition=0)
    producer.flush()
    got = live.read_until(lambda evs: any(e["event"] != "gap" and json.loads(e["data"])["id"]
                                          == "e204" for e in evs), timeout=20)
    live.close()
    assert [json.loads(e["data"])["id"] for e in got] == [f"e{n}" for n in range(205)]
