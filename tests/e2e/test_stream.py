"""/events end to end: real Kafka, real gunicorn, a stdlib client reading the real socket."""
import json
import re
import time
from urllib.parse import quote

import pytest

from actors.resume import decode
from scripts.demo_producer import CATALOGUE
from tests.e2e.test_wire import _read_until, _request
from tests.harness import http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

# The seed's curl examples: query string -> which demo event types must arrive.
SEED_FILTERS = {
    "": lambda t, s: True,
    "event_types=blog.*": lambda t, s: t.startswith("blog."),
    "event_types=blog.post.created,twitchbot.message.created":
        lambda t, s: t in ("blog.post.created", "twitchbot.message.created"),
    "event_types=twitchbot.*": lambda t, s: t.startswith("twitchbot."),
    "sources=blog-service": lambda t, s: s == "blog-service",
    "sources=blog-service,twitchbot-service": lambda t, s: s in ("blog-service", "twitchbot-service"),
    "event_types=*.created&sources=blog-service":
        lambda t, s: t.endswith(".created") and s == "blog-service",
    "event_types=blog.*,twitchbot.message.*":
        lambda t, s: t.startswith("blog.") or t.startswith("twitchbot.message."),
}


def _event(event_type, n, source=None):
    return {"id": f"evt-{n}", "type": event_type, "source": source or CATALOGUE[event_type][1],
            "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}}


def _data(events):
    return [json.loads(e["data"]) for e in events]


@pytest.fixture
def demo(topics, service, producer):
    """A service streaming one topic; `publish(types)` sends one event per type, in order."""
    topic = topics("events")["events"]
    svc = service([topic], expect_partitions=3)
    counter = iter(range(10**6))

    def publish(types, partition=0):
        sent = [_event(t, next(counter)) for t in types]
        for e in sent:
            producer(topic, e, partition=partition)
        producer.flush()
        return sent

    svc.topic, svc.publish = topic, publish
    return svc


def test_every_seed_filter_example_live_and_from_history(demo):
    live = {query: SSEClient(f"{demo.url}/events?{query}&history=false") for query in SEED_FILTERS}
    for client in live.values():
        client.read_until(lambda evs: client.parser.comments, timeout=5)
    sent = demo.publish(list(CATALOGUE))
    for query, wanted in SEED_FILTERS.items():
        expected = [e for e in sent if wanted(e["type"], e["source"])]
        client = live[query]
        got = client.read_count(len(expected), timeout=10)
        client.read_for(0.3)  # nothing more may arrive
        assert _data(client.events) == expected, query
        assert [e["event"] for e in client.events] == [e["type"] for e in expected]
        client.close()
        fresh = SSEClient(f"{demo.url}/events?{query}")   # history on connect
        assert _data(fresh.read_count(len(expected))) == expected, query
        fresh.close()
        assert got


def test_stream_headers_retry_and_unnamed_events(demo):
    client = SSEClient(f"{demo.url}/events?unnamed=1&history=0")
    assert client.status == 200
    assert client.headers["Content-Type"].startswith("text/event-stream")
    # no-transform: a compressing proxy (Express compression(), webpack-dev-server) held
    # the whole stream back, EventSource never opened
    assert client.headers["Cache-Control"] == "no-cache, no-transform"
    assert client.headers["X-Accel-Buffering"] == "no"
    demo.publish(["link.clicked"])
    [event] = client.read_count(1)
    assert event["event"] == "message" and 3000 <= client.parser.retry <= 3750
    assert decode([demo.topic], event["id"]) == {(demo.topic, 0): 1, (demo.topic, 1): 0,
                                                  (demo.topic, 2): 0}
    client.close()


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(demo, how):
    first = SSEClient(f"{demo.url}/events?history=false")
    first.read_until(lambda evs: first.parser.comments, timeout=5)
    sent = demo.publish(["link.clicked"] * 5)
    seen = first.read_count(5)
    first.close()
    missed = demo.publish(["blog.post.created"] * 4)
    last = seen[-1]["id"]
    if how == "header":
        again = SSEClient(f"{demo.url}/events", headers={"Last-Event-ID": last})
    else:
        again = SSEClient(f"{demo.url}/events?last_event_id={quote(last)}")
    assert _data(again.read_count(4)) == missed
    live = demo.publish(["link.created"] * 2)
    again.read_count(6)
    again.read_for(0.3)
    assert _data(again.events) == missed + live
    assert _data(seen) == sent
    again.close()


def test_heartbeat_comments_arrive(topics, service):
    topic = topics("hb")["hb"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=1)
    client = SSEClient(f"{svc.url}/events")
    client.read_until(lambda evs: client.parser.comments.count("heartbeat") >= 2, timeout=5)
    assert client.parser.comments.count("heartbeat") >= 2
    client.close()


def test_malformed_records_are_skipped_and_counted(demo, producer):
    client = SSEClient(f"{demo.url}/events?history=false")
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    good = demo.publish(["blog.post.created"])
    for bad in (b"{not json", b"[1,2,3]", b"\xff\xfe\xfa", json.dumps({"type": 42}).encode()):
        producer(demo.topic, bad, partition=0)
    producer(demo.topic, _event("evil\r\nevent: injected\n\nid: 1", 99, source="x"), partition=0)
    good += demo.publish(["link.clicked"])
    events = client.read_count(3)
    client.read_for(0.3)
    assert len(client.events) == 3
    assert _data([events[0], events[2]]) == good
    assert events[1]["event"] == "evil__event: injected__id: 1"
    assert json.loads(events[1]["data"])["type"] == "evil\r\nevent: injected\n\nid: 1"
    stats = demo.stats()
    assert stats["invalid_events"] == 4 and stats["invalid_per_topic"] == {demo.topic: 4}
    client.close()


def test_bad_filters_get_400_json_before_any_stream(demo):
    for query in ("event_types=%3Cscript%3E", "sources=a%0Ab", "unnamed=perhaps",
                  "event_types=" + ",".join(f"t{i}" for i in range(101))):
        status, body = http_json(f"{demo.url}/events?{query}")
        assert status == 400 and body["error"] == "bad_request", query
        assert body["message"]


def test_health_and_stats(demo):
    status, health = http_json(demo.url + "/health")
    assert status == 200 and health["kafka"]["state"] == "connected"
    assert sorted(health["kafka"]["partitions"]) == [f"{demo.topic}:{p}" for p in range(3)]
    demo.publish(["link.clicked", "link.created"])
    client = SSEClient(f"{demo.url}/events")
    client.read_count(2)
    stats = demo.stats()
    assert stats["clients"] == 1 and stats["events_consumed"] == 2
    assert stats["per_topic"] == {demo.topic: 2} and stats["history_size"] == 2
    assert stats["uptime_seconds"] > 0
    client.close()


def test_a_vanished_client_is_noticed_and_released(topics, service):
    topic = topics("gone")["gone"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=60)   # no write needed
    clients = [SSEClient(f"{svc.url}/events") for _ in range(5)]
    assert svc.stats()["clients"] == 5
    for client in clients:
        client.close()
    deadline = time.monotonic() + 3
    while svc.stats()["clients"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.stats()["clients"] == 0


def test_sigterm_ends_streams_cleanly_and_quickly(demo):
    client = SSEClient(f"{demo.url}/events")
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    took = demo.stop()
    client.read_for(1)
    assert client.closed and "closing: server shutting down" in client.parser.comments
    assert took < 5, f"shutdown took {took:.1f}s"
    assert demo.process.returncode == 0


@pytest.mark.parametrize("query", ["", "?history=false"])
def test_an_idle_stream_is_sent_its_position_once(topics, service, query):
    """With its history (the default), an idle stream's first heartbeat sent its opening id
    again: one more id-only block, which httpx-sse and fetch-event-source hand over as an
    empty message."""
    topic = topics("idle")["idle"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=1)
    sock = _request(svc, "HTTP/1.0", f"/events{query}")           # no chunks to undo
    text = _read_until(sock, lambda raw: False, timeout=3.5).partition(b"\r\n\r\n")[2].decode()
    sock.close()
    assert text.count(": heartbeat") >= 2, text
    blocks = [block for block in re.split(r"\n\n", text) if block.strip()]
    fields = [[line for line in block.split("\n")
               if line and not line.startswith((":", "retry:"))]
              for block in blocks]
    ids = [f for f in fields if f]
    assert len(ids) == 1 and len(ids[0]) == 1 and ids[0][0].startswith("id: "), text
