"""Many concurrent streams: every client gets every matching event exactly once, in order."""
import json
import threading
from collections import defaultdict

import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

CLIENTS = 200
EVENTS_PER_PARTITION = 30


def _partition_sequences(events):
    by_partition = defaultdict(list)
    for event in events:
        partition, n = json.loads(event["data"])["id"][1:].split("-")
        by_partition[int(partition)].append(int(n))
    return by_partition


def test_200_clients_each_receive_every_matching_event_once_in_order(topics, service, producer):
    topic = topics("fan")["fan"]
    svc = service([topic], expect_partitions=3, SSE_MAX_CLIENTS_PER_IP=1000)
    filters = ["", "event_types=*.created"]
    clients = [SSEClient(f"{svc.url}/events?history=false&{filters[i % 2]}", timeout=30)
               for i in range(CLIENTS)]
    for client in clients:
        client.read_until(lambda evs, c=client: c.parser.comments, timeout=10)
    assert svc.stats()["clients"] == CLIENTS

    sent = []
    for partition in range(3):
        for n in range(EVENTS_PER_PARTITION):
            kind = "created" if n % 3 else "deleted"
            event = {"id": f"p{partition}-{n}", "type": f"link.{kind}", "source": "link-service",
                     "data": {"n": n}}
            producer(topic, event, partition=partition)
            sent.append((partition, event))
    producer.flush()

    expected_all = len(sent)
    expected_created = sum(1 for _, e in sent if e["type"].endswith("created"))

    def read(client, count):
        client.read_count(count, timeout=30)
        client.read_for(0.2)

    threads = [threading.Thread(target=read, args=(c, expected_all if i % 2 == 0 else expected_created))
               for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for i, client in enumerate(clients):
        wanted = [e for _, e in sent if i % 2 == 0 or e["type"].endswith("created")]
        got = [json.loads(e["data"]) for e in client.events]
        assert len(got) == len(wanted), f"client {i}: {len(got)} of {len(wanted)}"
        ids = [e["id"] for e in got]
        assert len(set(ids)) == len(ids), f"client {i} got duplicates"
        assert sorted(ids) == sorted(e["id"] for e in wanted)
        for partition, numbers in _partition_sequences(client.events).items():
            assert numbers == sorted(numbers), f"client {i} partition {partition} out of order"
        client.close()
    stats = svc.stats()
    assert stats["events_dropped"] == 0 and stats["slow_disconnects"] == 0
