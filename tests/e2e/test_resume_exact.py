"""Exactness of resumes against a real Kafka: after every event of a stream over two topics of
three partitions, with and without a filter, from the history and from Kafka, a resume gets
exactly the rest; and a `since=` stream reconnecting with its Last-Event-ID gets only what
it missed."""
import json
import time
from urllib.parse import quote

import pytest

from tests.kafkatools import ten_with_five_deleted
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

EVENTS = 30


def _send(producer, topics, numbers):
    """Event n goes to topic n % 2, partition n % 3; odd ones are link.clicked."""
    for n in numbers:
        topic = topics[n % 2]
        producer(topic, {"id": f"e{n}", "type": "link.clicked" if n % 3 == 1 else "blog.post.created",
                         "source": "svc", "data": {"n": n}}, partition=n % 3)
    producer.flush()


def _numbers(events):
    return [json.loads(e["data"])["data"]["n"] for e in events if e["event"] != "gap"]


def _in_partition_order(numbers):
    for key in {(n % 2, n % 3) for n in numbers}:
        mine = [n for n in numbers if (n % 2, n % 3) == key]
        assert mine == sorted(mine), f"partition {key} out of order: {mine}"


def _opened(url, **kw):
    client = SSEClient(url, **kw)
    client.read_until(lambda evs: client.parser.last_id, timeout=10)
    return client


def _resume_after_each(url, reference, starting_id, header):
    """Resume after the opening id and after every event of `reference`: exactly the rest."""
    checked = 0
    ids = [starting_id] + [e["id"] for e in reference]
    numbers = _numbers(reference)
    for i, sse_id in enumerate(ids):
        rest = numbers[i:]
        if header:
            client = SSEClient(url, headers={"Last-Event-ID": sse_id})
        else:
            client = SSEClient(f"{url}&last_event_id={quote(sse_id)}")
        client.read_count(len(rest), timeout=20)
        client.read_for(0.2)
        client.close()
        got = _numbers(client.events)
        assert not [e for e in client.events if e["event"] == "gap"], sse_id
        assert sorted(got) == sorted(rest) and len(got) == len(set(got)), (i, got, rest)
        _in_partition_order(got)
        checked += 1
    return checked


@pytest.mark.parametrize("types", ["", "link.*"])
def test_a_resume_after_any_event_gets_exactly_the_rest(topics, service, producer, types):
    made = topics("exact.a", "exact.b")
    names = [made["exact.a"], made["exact.b"]]
    svc = service(names, expect_partitions=6, SSE_HISTORY_SIZE=8)
    url = f"{svc.url}/events?history=false&event_types={types}"
    reference = _opened(url)
    start = reference.parser.last_id
    _send(producer, names, range(EVENTS))
    wanted = [n for n in range(EVENTS) if not types or n % 3 == 1]
    reference.read_count(len(wanted), timeout=20)
    reference.read_for(0.2)
    reference.close()
    assert sorted(_numbers(reference.events)) == wanted
    # the first resumes are older than the history (read from Kafka), the last ones are not
    checked = _resume_after_each(url, reference.events, start, header=True)
    assert checked == len(wanted) + 1
    assert svc.stats()["kafka_replays"] >= 1


def test_a_since_stream_reconnecting_with_its_last_event_id_gets_only_what_it_missed(
        topics, service, producer):
    made = topics("exact.since")
    name = made["exact.since"]
    svc = service([name], expect_partitions=3)
    _send(producer, [name, name], range(EVENTS))
    url = f"{svc.url}/events?since=0"
    first = SSEClient(url)
    first.read_count(12, timeout=20)
    first.close()
    cut = first.events[11]["id"]
    seen = _numbers(first.events[:12])
    again = SSEClient(url, headers={"Last-Event-ID": cut})
    again.read_count(EVENTS - 12, timeout=20)
    again.read_for(0.5)
    again.close()
    got = _numbers(again.events)
    assert sorted(got + seen) == list(range(EVENTS)) and len(got) == EVENTS - 12


def test_hopping_between_instances_that_read_in_other_orders_repeats_nothing(
        kafka, topics, service):
    """Instance A reads partition 1's events first (they were produced first); instance B,
    started later, reads them back by time, partition 0's first (their timestamps are
    earlier). A client that saw partition 1 on A, then one event on B, then resumes on A must
    get the rest of partition 0 only: B's own ids say nothing of partition 1 yet."""
    from kafka import KafkaProducer
    name = topics("exact.hop")["exact.hop"]
    first = service([name], expect_partitions=3)
    client = _opened(f"{first.url}/events?history=false")
    own = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
    base = int(time.time() * 1000) - 60_000

    def send(numbers, partition, at):
        for n in numbers:
            own.send(name, json.dumps({"id": f"e{n}", "type": "t", "source": "s",
                                       "data": {"n": n}}).encode(),
                     partition=partition, timestamp_ms=at + n)
        own.flush(timeout=10)
    try:
        send(range(0, 5), 1, base + 1000)
        client.read_count(5, timeout=20)
        send(range(5, 10), 0, base)
        client.read_count(10, timeout=20)
    finally:
        own.close(timeout=5)
    client.close()
    assert _numbers(client.events) == list(range(10))
    second = service([name], expect_partitions=3)
    on_b = SSEClient(f"{second.url}/events", headers={"Last-Event-ID": client.events[4]["id"]})
    on_b.read_count(1, timeout=20)
    on_b.close()
    assert _numbers(on_b.events)[:1] == [5]
    assert second.stats()["kafka_replays"] == 0           # B's warm start holds all ten
    back = SSEClient(f"{first.url}/events", headers={"Last-Event-ID": on_b.events[0]["id"]})
    back.read_count(4, timeout=20)
    back.read_for(0.5)
    back.close()
    assert _numbers(back.events) == [6, 7, 8, 9]


def test_a_replay_reader_told_of_records_deleted_under_it_says_where_kafka_resumes(
        kafka, topics):
    """Retention can delete what a replay planned to read (its log start was looked up a
    moment before, or its client paused it). The replay reader used to reset to the oldest
    record without a word: 2-4 were skipped and no `gap` said so."""
    from actors.kafka_reader import KafkaReader, Retained
    from actors.settings import Settings
    name = topics("exact.gone")["exact.gone"]
    ten_with_five_deleted(kafka.bootstrap, name)
    p = (name, 0)
    reader = KafkaReader(Settings.defaults(kafka_brokers=(kafka.bootstrap,), kafka_topics=(name,)))
    try:
        with pytest.raises(Retained) as gone:
            for _ in range(40):
                reader.fetch({p: (2, 10)})
        assert gone.value.offsets == {p: (2, 5)}
        got, at = [], 5
        for _ in range(40):
            records, positions = reader.fetch({p: (at, 10)})
            got += [r.offset for r in records]
            at = positions[p]
            if at >= 10:
                break
        assert got == [5, 6, 7, 8, 9]
    finally:
        reader.close()


def test_a_replay_reader_that_read_one_topic_can_still_look_up_the_others(topics, kafka,
                                                                          producer):
    """The reader's assign() narrows kafka-python's metadata to the topics it read last; at
    the next refresh the others' partitions were gone from it, and a look-up of their offsets
    ended in a KeyError (kafka-python leaves an unknown partition out of its answer): every
    resume that needed them ended 'replay unavailable (Kafka unreachable)'."""
    from actors.kafka_reader import KafkaReader
    from actors.settings import Settings
    names = list(topics("exact.one", "exact.other").values())
    _send(producer, names, range(12))
    reader = KafkaReader(Settings.defaults(kafka_brokers=(kafka.bootstrap,),
                                           kafka_topics=tuple(names),
                                           kafka_metadata_refresh_ms=1000))
    try:
        one = (names[0], 0)
        deadline = time.monotonic() + 3           # past a metadata refresh: names[1] gone
        while time.monotonic() < deadline:
            reader.fetch({one: (0, 2)}, timeout_ms=100)
        every = {(name, p) for name in names for p in range(3)}      # the one read, and not
        begin, end = reader.bounds(every)
        assert begin == {p: 0 for p in every} and end == {p: 2 for p in every}
        assert set(reader.offsets_for_time(every, 0)) == every
    finally:
        reader.close()


def test_a_topic_appended_to_kafka_topics_tells_a_resuming_client_with_a_gap(
        topics, service, producer):
    """A topic appended to KAFKA_TOPICS at a restart: the ids of the old list cannot be read,
    and their clients started over as new streams without a word (300 events missed, no gap:
    a Kafka-scale audit). The stream says so first: `gap`, reason topics_changed, whose id is
    its place on the new gateway."""
    made = topics("appended-a", "appended-b")
    first, second = made["appended-a"], made["appended-b"]
    before = service([first], expect_partitions=3)
    stream = SSEClient(f"{before.url}/events?history=false", timeout=10)
    try:
        stream.read_until(lambda _events: stream.parser.comments, timeout=10)
        _send(producer, [first, first], range(2))
        old_id = stream.read_count(2, timeout=15)[-1]["id"]
    finally:
        stream.close()
    after = service([first, second], expect_partitions=6)
    resumed = SSEClient(f"{after.url}/events?history=false",
                        headers={"Last-Event-ID": old_id}, timeout=10)
    try:
        [gap] = resumed.read_until(lambda events: events, timeout=10)
    finally:
        resumed.close()
    assert gap["event"] == "gap" and json.loads(gap["data"]) == {"reason": "topics_changed",
                                                                  "partitions": []}
    _send(producer, [second, second], range(2, 4))        # after the gap's place
    again = SSEClient(f"{after.url}/events?history=false",
                      headers={"Last-Event-ID": gap["id"]}, timeout=10)
    try:                                # its id is a place of this gateway: read on from there
        assert sorted(_numbers(again.read_count(2, timeout=15))) == [2, 3]
    finally:
        again.close()
