"""A Last-Event-ID beyond a partition's end (Kafka's log truncated by an unclean leader
election, or an id forged or issued for another cluster), against real Kafka and gunicorn."""
import json
import subprocess
import threading
import time

import pytest

from actors.log_edges import PAST_END_SECONDS
from actors.consumer import LAG_INTERVAL_S
from actors.resume import Frontier
from tests import npm
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
    offsets passed its place. Now it is sent a `truncated` gap whose id is a place at the end,
    and closed; resumed from that id, it gets every event produced since it first came, once
    each, in order."""
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
        [gap] = early                       # nothing of the partition while it was past the end,
        assert gap["event"] == "gap"        # then where it resumes: a `gap` event, whose id
        [part] = json.loads(gap["data"])["partitions"]          # every client adopts
        assert part["reason"] == "truncated" and part["requested_offset"] == 100_000
        place = stream.parser.last_id
        assert place == gap["id"] and place != forged
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


EVENTSOURCE = "eventsource@5.1.5"      # npm's most used EventSource for Node
PROBE_MJS = """
import { pathToFileURL } from 'node:url';
const [, , module, url, ms] = process.argv;
const { EventSource } = await import(pathToFileURL(module).href);
const seen = [];
const source = new EventSource(url);
source.onmessage = (e) => seen.push({ data: e.data, id: e.lastEventId });
source.addEventListener('gap', (e) => seen.push({ event: 'gap', data: e.data, id: e.lastEventId }));
setTimeout(() => {
  source.close();
  console.log(JSON.stringify(seen));
  process.exit(0);
}, Number(ms));
"""


@pytest.fixture(scope="module")
def npm_eventsource(tmp_path_factory):
    where = tmp_path_factory.mktemp("eventsource")
    node = npm.install(EVENTSOURCE, where)
    probe = where / "probe.mjs"
    probe.write_text(PROBE_MJS)
    return node, probe, where / "node_modules/eventsource/dist/index.js"


def test_npm_eventsource_resumed_past_the_end_reconnects_from_the_gap_and_misses_nothing(
        kafka, topics, service, npm_eventsource):
    """npm's eventsource drops the id of a block without data: sent the place as an id-only
    block, it reconnected without Last-Event-ID, so the URL's id applied again, every 20 s,
    forever (0 of 100 events). The place now comes in a `gap` event, which it dispatches."""
    node, probe, module = npm_eventsource
    topic = topics("pastnpm", partitions=1)["pastnpm"]
    svc = service([topic], expect_partitions=1, SSE_RETRY_MS=500)
    producer = _producer(kafka)
    for n in range(3):
        producer.send(topic, _event(n))
    producer.flush(timeout=10)
    first = SSEClient(f"{svc.url}/events")
    first.read_until(lambda evs: len(evs) >= 3, timeout=15)
    first.close()
    deadline = time.monotonic() + 15
    while svc.stats()["clients"] and time.monotonic() < deadline:   # the first one left
        time.sleep(0.05)
    forged = Frontier([topic], {(topic, 0): 100_000}).token()
    lasts = PAST_END_SECONDS + 3 * LAG_INTERVAL_S + 8
    run = subprocess.Popen([node, str(probe), str(module),
                            f"{svc.url}/events?history=false&unnamed=1&last_event_id={forged}",
                            str(int(lasts * 1000))], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while svc.stats()["clients"] != 1 and time.monotonic() < deadline:  # it came (alone)
        time.sleep(0.05)
    sent, n, started = [], 3, time.monotonic()
    while time.monotonic() - started < lasts - 4:      # the last ones have time to arrive
        producer.send(topic, _event(n))
        producer.flush(timeout=10)
        sent.append(n)
        n += 1
        time.sleep(0.25)
    out, err = run.communicate(timeout=lasts + 30)
    producer.close()
    assert run.returncode == 0, err[-500:]
    seen = json.loads(out)
    gaps = [s for s in seen if s.get("event") == "gap"]
    assert len(gaps) == 1 and json.loads(gaps[0]["data"])["reason"] == "truncated", seen[:3]
    assert [json.loads(s["data"])["data"]["n"] for s in seen if "event" not in s] == sent
