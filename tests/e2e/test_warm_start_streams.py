"""Streams that open while the worker is still starting (real Kafka, real gunicorn).

A worker takes connections before its consumer has its partitions: at an instance's start,
and when gunicorn replaces a worker beside others that serve. What is produced in between
is read by the warm start, as history. A stream that opened then must still get it, with
history or without: here Kafka is out of the gateway's reach (a relay that is not listening
yet) while the streams open and the events are produced, then comes within reach.
"""
from __future__ import annotations

import json

import pytest

from tests.harness import Relay, Service
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _send(producer, topic, numbers):
    for n in numbers:
        producer(topic, {"id": f"e{n}", "type": "early.test", "source": "svc", "data": n},
                 partition=n % 3)
    producer.flush()
    return [f"e{n}" for n in numbers]


def _ids(events):
    return [json.loads(e["data"])["id"] for e in events if e["event"] != "gap"]


@pytest.mark.parametrize("history_size", [100, 6], ids=["history-holds-it", "history-short"])
def test_streams_opened_before_kafka_was_reached_get_what_was_produced_meanwhile(
        kafka, topics, producer, tmp_path, history_size):
    """With SSE_HISTORY_SIZE=6 the history keeps 6 of the 20 events produced meanwhile: the
    stream with history reads Kafka too (replaying the history, it missed 14)."""
    topic = topics("early")["early"]
    relay = Relay(kafka.bootstrap)
    svc = Service(relay.address, [topic], tmp_path / "gunicorn.log",
                  SSE_HISTORY_SIZE=history_size)
    streams: list[SSEClient] = []
    try:
        svc.start(healthy=False)
        for query in ("history=false", "history=false&types=early.*", ""):
            stream = SSEClient(f"{svc.url}/events?{query}", timeout=10)
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=10)
            streams.append(stream)
        meanwhile = _send(producer, topic, range(20))
        relay.open()
        svc.wait_healthy(expect_partitions=3)
        after = _send(producer, topic, range(20, 25))
        for stream in streams:
            stream.read_count(25, timeout=20)
            got = _ids(stream.events)
            assert sorted(got) == sorted(meanwhile + after), (stream.events, svc.log_tail())
            assert len(got) == len(set(got))
    finally:
        for stream in streams:
            stream.close()
        svc.stop()
        relay.close()
