"""A topic of KAFKA_TOPICS deleted (and not created again) while the gateway runs."""
import json

import pytest

from tests.e2e.test_topic_recreated import _health_until
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _event(n):
    return {"id": f"e{n}", "type": "blog.post.created", "source": "blog", "data": {"n": n}}


def _ns(events):
    return [json.loads(e["data"])["data"]["n"] for e in events if e["event"] != "gap"]


def test_replays_go_on_without_a_deleted_topic(kafka, topics, service, producer):
    """Every replay from Kafka asked about the deleted topic too, failed as `Kafka
    unreachable`, and its client reconnected into the same failure: no resume past the
    history, no since=, for anyone, until the topic came back. And the history kept
    replaying the deleted topic's events to new streams."""
    from kafka.admin import KafkaAdminClient
    made = topics("gone", "kept", partitions=1)
    gone, kept = made["gone"], made["kept"]
    svc = service([gone, kept], expect_partitions=2, SSE_HISTORY_SIZE=2,
                  KAFKA_METADATA_REFRESH_MS=1000)
    first = SSEClient(f"{svc.url}/events?history=false")
    first.read_until(lambda evs: first.parser.last_id, timeout=5)
    old_id = first.parser.last_id                   # before every event: past the history
    for topic, base, total in ((kept, 0, 5), (gone, 100, 10)):    # the history: gone's last
        for n in range(5):
            producer(topic, _event(base + n))
        producer.flush()
        first.read_until(lambda evs, total=total: len(evs) >= total, timeout=10)
    first.close()
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        admin.delete_topics([gone])
    finally:
        admin.close()
    _health_until(svc, lambda h: f"topic {gone} no longer exists" in h["kafka"]["detail"])

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": old_id})
    events = resumed.read_until(lambda evs: len(evs) >= 6, timeout=10)
    resumed.close()
    assert b"closing" not in resumed.body, resumed.body
    assert events[0]["event"] == "gap"
    assert json.loads(events[0]["data"])["partitions"] == [
        {"topic": gone, "partition": 0, "requested_offset": 0, "resumed_offset": 5,
         "reason": "topic_deleted"}]
    assert _ns(events) == list(range(5))

    new = SSEClient(f"{svc.url}/events")            # its history: without the deleted topic
    producer(kept, _event(5))
    producer.flush()
    events = new.read_until(lambda evs: 5 in _ns(evs), timeout=10)
    new.close()
    assert _ns(events) == [5]

    since = SSEClient(f"{svc.url}/events?since=0")
    events = since.read_until(lambda evs: len(evs) >= 6, timeout=10)
    since.close()
    assert b"closing" not in since.body, since.body
    assert _ns(events) == list(range(6))
