"""A topic deleted and created again: offsets restart at 0, and nobody silently loses events."""
import json
import time
import uuid

import pytest

from actors.resume import incarnation_tag
from tests.harness import http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _event(n):
    return {"id": f"e{n}", "type": "blog.post.created", "source": "blog", "data": {"n": n}}


def _ns(events):
    return [json.loads(e["data"])["data"]["n"] for e in events if e["event"] != "gap"]


def _health_until(svc, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, health = http_json(svc.url + "/health", timeout=3)
        if predicate(health):
            return health
        time.sleep(0.3)
    raise AssertionError(f"/health never matched: {health}")


def _topic_id(admin, topic):
    deadline = time.monotonic() + 10
    while (found := admin.describe_topics([topic])[0]["topic_id"]) is None:   # just created
        assert time.monotonic() < deadline, f"{topic} has no topic id"
        time.sleep(0.2)
    return uuid.UUID(str(found))


def _recreate(svc, admin, topic, partitions=1):
    """Delete and create the topic again, until its tag in ids differs (once in 65,535 it
    does not: actors/resume.py)."""
    old = incarnation_tag(_topic_id(admin, topic))
    _delete_and_create(svc, admin, topic, partitions)
    while incarnation_tag(_topic_id(admin, topic)) == old:
        _delete_and_create(svc, admin, topic, partitions)


def _delete_and_create(svc, admin, topic, partitions):
    from kafka.admin import NewTopic
    admin.delete_topics([topic])
    health = _health_until(svc, lambda h: f"topic {topic} no longer exists" in h["kafka"]["detail"])
    assert f"{topic}:0" not in health["kafka"]["partitions"]
    deadline = time.monotonic() + 30
    while True:                                # deletion finishes in the background
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
            return
        except Exception:  # noqa: BLE001 - TopicAlreadyExists while it is being deleted
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_resume_from_before_the_recreation_gets_a_gap_event_and_every_new_event(
        kafka, topics, service, producer):
    from kafka.admin import KafkaAdminClient
    topic = topics("again", partitions=1)["again"]
    svc = service([topic], expect_partitions=1, SSE_HISTORY_SIZE=5)
    first = SSEClient(f"{svc.url}/events?history=false")
    for n in range(20):
        producer(topic, _event(n))
    producer.flush()
    seen = first.read_until(lambda evs: len(evs) >= 20, timeout=15)
    assert _ns(seen) == list(range(20))
    last_id = seen[-1]["id"]
    first.close()

    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        _recreate(svc, admin, topic)
    finally:
        admin.close()
    _health_until(svc, lambda h: "was deleted and created again" in h["kafka"]["detail"]
                  and f"{topic}:0" in h["kafka"]["partitions"])
    live = SSEClient(f"{svc.url}/events?history=false")
    live.read_until(lambda evs: live.parser.last_id, timeout=5)
    for n in range(100, 110):
        producer(topic, _event(n))
    producer.flush()
    assert _ns(live.read_until(lambda evs: len(evs) >= 10, timeout=15)) == list(range(100, 110))
    live.close()

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": last_id})
    events = resumed.read_until(lambda evs: len(evs) >= 11, timeout=20)
    assert events[0]["event"] == "gap"
    gap = json.loads(events[0]["data"])
    assert gap["reason"] == "topic_recreated"
    assert gap["partitions"] == [{"topic": topic, "partition": 0, "requested_offset": 20,
                                  "resumed_offset": 0, "reason": "topic_recreated"}]
    assert _ns(events) == list(range(100, 110))       # the new offsets 0-9, none skipped
    resumed.close()


def test_a_stream_open_through_the_recreation_of_a_3_partition_topic_gets_each_new_event_once(
        kafka, topics, service, producer):
    from kafka.admin import KafkaAdminClient
    topic = topics("again3", partitions=3)["again3"]
    svc = service([topic], expect_partitions=3)
    live = SSEClient(f"{svc.url}/events?history=false")
    live.read_until(lambda evs: live.parser.last_id, timeout=5)
    for n in range(30):
        producer(topic, _event(n), partition=n % 3)
    producer.flush()
    before = live.read_until(lambda evs: len(evs) >= 30, timeout=15)
    last_id = before[-1]["id"]
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        _recreate(svc, admin, topic, partitions=3)
    finally:
        admin.close()
    _health_until(svc, lambda h: "was deleted and created again" in h["kafka"]["detail"]
                  and all(f"{topic}:{p}" in h["kafka"]["partitions"] for p in range(3)))
    for n in range(100, 130):
        producer(topic, _event(n), partition=n % 3)
    producer.flush()
    events = live.read_until(lambda evs: len(_ns(evs)) >= 60, timeout=20)
    live.read_until(lambda evs: False, timeout=1.5)             # a duplicate would come now
    assert sorted(_ns(live.events)) == list(range(30)) + list(range(100, 130)), _ns(events)
    # the new incarnation, listed before the gateway read it anew, is no log cut short
    assert [e for e in live.events if e["event"] == "gap"] == []
    assert "unclean" not in svc.log_path.read_text(errors="replace")
    live.close()

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": last_id})
    events = resumed.read_until(lambda evs: len(_ns(evs)) >= 30, timeout=20)
    assert events[0]["event"] == "gap"
    gap = json.loads(events[0]["data"])
    assert sorted((p["partition"], p["resumed_offset"]) for p in gap["partitions"]) == [
        (0, 0), (1, 0), (2, 0)]
    assert sorted(_ns(events)) == list(range(100, 130))
    resumed.close()



def test_a_topic_recreated_with_fewer_partitions_leaves_resumes_that_read_kafka_working(
        kafka, topics, service, producer):
    """Kafka ops audit: after a topic went from 3 partitions to 2, the vanished partition
    stayed in the live positions and every resume that read Kafka ended with 'replay
    unavailable (Kafka unreachable)', ids issued after the re-creation too, until a restart."""
    from kafka.admin import KafkaAdminClient
    names = topics("shrinks", "stays", partitions=3)
    shrinks, stays = names["shrinks"], names["stays"]
    svc = service([shrinks, stays], expect_partitions=6, SSE_HISTORY_SIZE=5)
    for n in range(30):                         # each of its partitions read past 0
        producer(shrinks, _event(1000 + n), partition=n % 3)
    producer.flush()
    SSEClient(f"{svc.url}/events?since=0").read_until(lambda evs: len(evs) >= 30, timeout=15)
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        _recreate(svc, admin, shrinks, partitions=2)
    finally:
        admin.close()
    _health_until(svc, lambda h: "was deleted and created again" in h["kafka"]["detail"]
                  and f"{shrinks}:1" in h["kafka"]["partitions"])
    first = SSEClient(f"{svc.url}/events?history=false")
    first.read_until(lambda evs: first.parser.last_id, timeout=5)      # its opening id
    place = first.parser.last_id
    first.close()
    for n in range(40):                         # past the history: the resume reads Kafka
        producer(stays, _event(n), partition=n % 3)
    producer.flush()
    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": place})
    events = resumed.read_until(lambda evs: len(_ns(evs)) >= 40 or resumed.closed, timeout=20)
    assert sorted(_ns(events)) == list(range(40)), resumed.parser.comments[-3:]
    resumed.close()
