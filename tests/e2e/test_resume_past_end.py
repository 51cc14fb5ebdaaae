"""A Last-Event-ID beyond a partition's end (Kafka's log truncated by an unclean leader
election, or an id forged or issued for another cluster), against real Kafka and gunicorn."""
import json
import threading
import time

import pytest

from actors.broker import PAST_END_SECONDS
from actors.consumer import LAG_INTERVAL_S
from actors.resume import Frontier
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _producer(kafka):
    from kafka import KafkaProducer
    return KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=0)


def _event(n):
    return json.dumps({"type": "blog.post.created", "source": "blog-service",
                       "data": {"n": n}}).encode()


def test_a_stream_resumed_past_a_partitions_end_gets_everything_sent_after_it_came(
        kafka, topics, service):
    """Such a stream dropped every later record of the partition, in silence, until Kafka's
    offsets passed its place. Now it is sent a place at the end and closed; resumed from that
    id, it gets every event produced since it first came, once each, in order."""
    topic = topics("pastend", partitions=1)["pastend"]
    svc = service([topic], expect_partitions=1)
    producer = _producer(kafka)
    for n in range(5):
        producer.send(topic, _event(n))
    producer.flush(timeout=10)
    SSEClient(f"{svc.url}/events").read_until(lambda evs: len(evs) >= 5, timeout=15)

    forged = Frontier([topic], {(topic, 0): 100_000}).token()
    stream = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": forged}, timeout=60)
    stop, sent = threading.Event(), []

    def produce():
        n = 5
        while not stop.is_set():
            producer.send(topic, _event(n))
            producer.flush(timeout=10)
            sent.append(n)
            n += 1
            time.sleep(0.25)
    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        early = stream.read_until(lambda evs: stream.closed,
                                  timeout=PAST_END_SECONDS + 3 * LAG_INTERVAL_S + 10)
        assert stream.closed, "the stream past the end was never ended"
        assert early == []                  # nothing of the partition while it was past the end
        place = stream.parser.last_id
        assert place and place != forged
        assert any(c.startswith(f"closing: resumed past the end of {topic}:0 ")
                   for c in stream.parser.comments), stream.parser.comments[-3:]
        resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": place}, timeout=30)
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join(timeout=15)
    expected = list(sent)
    resumed.read_until(lambda evs: len(evs) >= len(expected), timeout=20)
    got = resumed.read_for(0.5)                 # every event read (nothing more may come)
    assert [json.loads(e["data"])["data"]["n"] for e in got] == expected
    assert "resumed past the end of " + topic + ":0" in svc.log_tail(400)
    resumed.close()
    producer.close()
