"""Hostile `since` values end to end (real Kafka, real gunicorn): times before the epoch replay
from the earliest retained event, far-future times start live, malformed values are refused
with a JSON 400, and no request's failure closes the shared replay consumer (issue 11, item 7).
"""
import json
import time
from urllib.parse import quote

import pytest

from tests.kafkatools import ten_with_five_deleted
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _send(producer, topic, numbers):
    for n in numbers:
        producer(topic, {"id": f"e{n}", "type": "blog.post.created", "source": "svc",
                         "data": {"n": n}}, partition=n % 3)
    producer.flush()
    return [f"e{n}" for n in numbers]


def _ids(events):
    return sorted(json.loads(e["data"])["id"] for e in events if e["event"] != "gap")


BEFORE_THE_EPOCH = ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "-1",
                    "-99999999999999", "0"]


def test_a_time_before_the_epoch_replays_from_the_earliest_event(topics, service, producer):
    topic = topics("early")["early"]
    svc = service([topic], expect_partitions=3, SSE_HISTORY_SIZE=5)
    sent = _send(producer, topic, range(12))
    clients = {}
    for since in BEFORE_THE_EPOCH:
        client = clients[since] = SSEClient(f"{svc.url}/events?since={quote(since)}")
        assert client.status == 200, (since, client.body[-300:])
        client.read_until(lambda evs: len(evs) >= 12, timeout=15)
        client.read_for(0.3)
        assert not client.closed, (since, client.body[-300:])
        assert _ids(client.events) == sorted(sent), (since, client.body[-300:])
    live = _send(producer, topic, [12])
    for since, client in clients.items():
        client.read_until(lambda evs: len(evs) >= 13, timeout=10)
        assert _ids(client.events) == sorted(sent + live), since
        client.close()
    assert "replay for client" not in svc.log_tail(300)    # the shared reader was never closed


def test_a_time_before_the_epoch_replays_records_kafka_has_no_time_for(kafka, topics, service):
    """A producer may send a record without a time (-1; kafka-python passes it on): Kafka's
    offsets-for-times passes over it, and since=0 (the earliest event) must not."""
    from kafka import KafkaProducer
    topic = topics("timeless", partitions=1)["timeless"]
    svc = service([topic], expect_partitions=1, SSE_HISTORY_SIZE=5)
    raw = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
    for n, timestamp_ms in enumerate([-1, None]):
        raw.send(topic, json.dumps({"id": f"e{n}", "type": "t", "source": "svc",
                                    "data": {}}).encode(), timestamp_ms=timestamp_ms).get(10)
    raw.close()
    deadline = time.monotonic() + 10
    while svc.stats()["events_consumed"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)            # consumed before the clients come: not live for them
    for since in ("0", "-1", "1969-12-31T23:59:59Z"):
        client = SSEClient(f"{svc.url}/events?since={quote(since)}")
        client.read_until(lambda evs: len(evs) >= 2, timeout=5)
        assert _ids(client.events) == ["e0", "e1"], (since, client.body[-300:])
        client.close()


def test_a_time_later_than_any_event_starts_live(topics, service, producer):
    topic = topics("late")["late"]
    svc = service([topic], expect_partitions=3, SSE_HISTORY_SIZE=5)
    _send(producer, topic, range(5))
    deadline = time.monotonic() + 10
    while svc.stats()["events_consumed"] < 5 and time.monotonic() < deadline:
        time.sleep(0.1)            # consumed before the client comes: not live for it
    for n, since in enumerate(["9999-12-31T23:59:59Z", "999999999999999"]):
        client = SSEClient(f"{svc.url}/events?since={quote(since)}")
        assert client.status == 200
        client.read_for(1.0)
        live = _send(producer, topic, [100 + n])
        client.read_until(lambda evs: len(evs) >= 1, timeout=10)
        assert _ids(client.events) == live and not client.closed, client.body[-300:]
        client.close()


def test_a_since_later_than_its_events_resumes_what_its_stream_missed(topics, service, producer):
    """since= later than every event starts live; its EventSource reconnects to the same URL
    with the id of its last event and must get the events that came meanwhile."""
    topic = topics("ahead")["ahead"]
    svc = service([topic], expect_partitions=3, SSE_HISTORY_SIZE=5)
    url = f"{svc.url}/events?since=9999-12-31T23:59:59Z"
    client = SSEClient(url)
    client.read_for(1.0)
    shown = _send(producer, topic, [0, 1, 2])
    client.read_until(lambda evs: len(evs) >= 3, timeout=10)
    assert _ids(client.events) == shown, client.body[-300:]
    last_id = client.parser.last_id
    client.close()
    missed = _send(producer, topic, [3, 4, 5])
    deadline = time.monotonic() + 10
    while svc.stats()["events_consumed"] < 6 and time.monotonic() < deadline:
        time.sleep(0.1)            # consumed before the reconnect: not live for it
    again = SSEClient(url, headers={"Last-Event-ID": last_id})
    again.read_until(lambda evs: len(evs) >= 3, timeout=5)
    assert _ids(again.events) == missed, again.body[-300:]
    again.close()


MALFORMED = ["99999999999999999999", "1e3", "yesterday", "\u00b2", "1969-13-01T00:00:00Z",
             "NaN", "-", "--1", "-9999999999999999", "1736164800"]


def test_a_malformed_since_gets_a_json_400(topics, service):
    topic = topics("bad")["bad"]
    svc = service([topic], expect_partitions=3)
    for since in MALFORMED:
        client = SSEClient(f"{svc.url}/events?since={quote(since)}")
        assert client.status == 400, (since, client.status, client.body[-300:])
        body = client.json()
        assert body["error"] == "bad_request" and body["message"].startswith("since:"), body


def test_a_time_before_what_kafka_retains_plans_a_retention_gap(kafka, topics):
    """Kafka answers a time before its oldest record with that record's offset (the log
    start): the plan must take that as a time that may lie in the deleted records."""
    from types import SimpleNamespace

    from actors.filters import Filter
    from actors.kafka_reader import KafkaReader
    from actors.messages import ReadRange
    from actors.replay import ReplayActor
    from actors.settings import Settings
    name = topics("since.gone", partitions=1)["since.gone"]
    ten_with_five_deleted(kafka.bootstrap, name)
    settings = Settings.defaults(kafka_brokers=(kafka.bootstrap,), kafka_topics=(name,))
    actor = ReplayActor(settings=settings)
    actor.reader = KafkaReader(settings)
    p = (name, 0)
    try:
        for since_ms, gaps in [(0, [("retention", p, 0, 5)]), (time.time() * 1000 - 3.6e6,
                                                              [("retention", p, 0, 5)])]:
            request = ReadRange("c", Filter(), None, {p: 10}, SimpleNamespace(), int(since_ms))
            assert actor.plan(request, actor.log_start({p})) == ({p: 5}, gaps)
    finally:
        actor.reader.close()


def test_a_since_stream_resumed_gets_what_came_to_a_partition_it_had_seen_nothing_of(
        topics, service, producer):
    """Its id says offset 0 where it had seen nothing yet; that 0 was taken for 'not seen'
    and looked up by time again, so what came there meanwhile, stamped before `since`, was
    skipped without a gap (a replay audit)."""
    topic = topics("ahead0")["ahead0"]
    svc = service([topic], expect_partitions=3, SSE_HISTORY_SIZE=5)
    url = f"{svc.url}/events?since=9999-12-31T23:59:59Z"
    client = SSEClient(url)
    client.read_for(1.0)
    shown = _send(producer, topic, [0])                 # partition 0 only
    client.read_until(lambda evs: len(evs) >= 1, timeout=10)
    assert _ids(client.events) == shown, client.body[-300:]
    last_id = client.parser.last_id
    client.close()
    missed = _send(producer, topic, [1, 2, 3])          # partitions 1, 2 and 0
    deadline = time.monotonic() + 10
    while svc.stats()["events_consumed"] < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    again = SSEClient(url, headers={"Last-Event-ID": last_id})
    again.read_for(3.0)
    assert _ids(again.events) == sorted(missed), again.body[-300:]
    again.close()
