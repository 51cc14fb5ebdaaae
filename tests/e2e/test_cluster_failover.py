"""A 3-broker cluster loses the leader of a streamed partition mid-stream (kill -9, or hung)."""
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import Service
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

CLIENTS = 200
EVENTS = 600          # over about 12 s, the leader dies a third of the way in


def _create(cluster, topic):
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, 3, 3)])
    finally:
        admin.close()
    for partition in range(3):
        cluster.wait_for_isr(topic, partition, size=3)


def _produce(cluster, topic, sent: list, failures: list, kill_at: int, on_kill):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                             linger_ms=5, request_timeout_ms=15000, retries=2**31 - 1,
                             delivery_timeout_ms=60000)
    futures = []
    for n in range(EVENTS):
        if n == kill_at:
            on_kill()
        value = json.dumps({"id": f"e{n}", "type": "cluster.tick", "source": "test",
                            "data": {"n": n}}).encode()
        futures.append((n, producer.send(topic, value, partition=n % 3)))
        time.sleep(0.02)
    for n, future in futures:
        try:
            future.get(timeout=60)
            sent.append(n)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on
            failures.append((n, repr(exc)))
    producer.close(timeout=10)


def test_a_killed_partition_leader_costs_no_event_and_no_duplicate(kafka_cluster, tmp_path):
    topic = f"ha.{uuid.uuid4().hex[:8]}"
    _create(kafka_cluster, topic)
    svc = Service(kafka_cluster.bootstrap, [topic], tmp_path / "gateway.log",
                  SSE_MAX_CLIENTS_PER_IP=1000, SSE_HEARTBEAT_SECONDS=5)
    svc.start(expect_partitions=3, timeout=40)
    clients = [SSEClient(f"{svc.url}/events?history=false", timeout=30) for _ in range(CLIENTS)]
    for client in clients:
        client.read_until(lambda evs, c=client: c.parser.comments, timeout=10)

    victim = kafka_cluster.leader_of(topic, 0)
    killed = {}

    def kill():
        killed["at"] = time.time()
        kafka_cluster.kill_node(victim)

    watcher = clients[0]
    arrivals = {}

    def watch():                   # when each event of partition 0 reached one client
        while len(arrivals) < EVENTS and not watcher.closed:
            before = len(watcher.events)
            watcher.read_until(lambda evs: len(evs) > before, timeout=1)
            for e in watcher.events[before:]:
                arrivals.setdefault(json.loads(e["data"])["data"]["n"], time.time())
            if time.time() - killed.get("at", time.time()) > 40:
                break

    observer = threading.Thread(target=watch)
    observer.start()
    sent, failures = [], []
    _produce(kafka_cluster, topic, sent, failures, EVENTS // 3, kill)
    observer.join()
    after_kill = sorted(t - killed["at"] for n, t in arrivals.items()
                        if n % 3 == 0 and n > EVENTS // 3)
    if after_kill:                 # a figure for the notes, not a timed assertion
        print(f"\nfirst event of the killed leader's partition after the kill: "
              f"{after_kill[0]:.2f} s")
    assert not failures, failures[:5]
    new_leader = kafka_cluster.wait_for_leader(topic, 0, not_node=victim)

    def read(client):
        client.read_count(len(sent), timeout=60)
        client.read_for(0.3)

    threads = [threading.Thread(target=read, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, client in enumerate(clients):
        numbers = [json.loads(e["data"])["data"]["n"] for e in client.events]
        assert len(numbers) == len(set(numbers)), f"client {i} got duplicates"
        assert sorted(numbers) == sorted(sent), f"client {i}: {len(numbers)} of {len(sent)}"
        for partition in range(3):
            mine = [n for n in numbers if n % 3 == partition]
            assert mine == sorted(mine), f"client {i} partition {partition} out of order"
        client.close()
    stats = svc.stats()
    assert stats["events_dropped"] == 0 and stats["slow_disconnects"] == 0
    svc.stop()

    kafka_cluster.start_node(victim)                   # and the killed broker rejoins
    assert victim in kafka_cluster.wait_for_isr(topic, 0, size=3, timeout=90)
    assert new_leader != victim


def test_a_leader_out_of_the_gateways_reach_holds_back_only_its_partition(kafka_cluster, tmp_path):
    """Node 3 is up for Kafka but advertises an address the gateway cannot reach (a listener
    misconfigured for clients, a firewall). The gateway used to time out on its offsets for
    ever and read nothing; now the other partitions stream, /health names the broker, and the
    partition is read once the broker is mended."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from tests.harness import http_json
    topic = f"reach.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [1], 1: [2], 2: [3]})])
    finally:
        admin.close()
    host, port = kafka_cluster.node_bootstrap(3).rsplit(":", 1)
    kafka_cluster.stop_node(3)
    svc, mended = None, False
    try:
        kafka_cluster.start_node(3, overrides=f"advertised.listeners=PLAINTEXT://127.0.0.2:{port}")
        svc = Service(kafka_cluster.bootstrap_servers[0], [topic], tmp_path / "gateway.log",
                      KAFKA_METADATA_REFRESH_MS=1000)
        health = svc.start(expect_partitions=2, timeout=40).wait_healthy(2)
        assert sorted(health["kafka"]["partitions"]) == [f"{topic}:0", f"{topic}:1"]
        assert f"{topic}:2 not read: its leader, broker 3 at 127.0.0.2:{port}" in \
            health["kafka"]["detail"]
        client = SSEClient(f"{svc.url}/events?history=false", timeout=30)
        client.read_until(lambda evs: client.parser.comments, timeout=10)
        from kafka import KafkaProducer
        producer = KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap_servers[:2])
        for partition in (0, 1):
            producer.send(topic, json.dumps({"data": partition}).encode(), partition=partition)
        producer.flush(10)
        assert sorted(json.loads(e["data"])["data"] for e in client.read_count(2, timeout=10)) \
            == [0, 1]
        kafka_cluster.stop_node(3)
        kafka_cluster.start_node(3)                    # mended
        mended = True
        kafka_cluster.wait_until(lambda: len(http_json(f"{svc.url}/health")[1]["kafka"]
                                             ["partitions"]) == 3, timeout=40,
                                 what="the mended broker's partition assigned")
        producer = KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap_servers)
        producer.send(topic, json.dumps({"data": 2}).encode(), partition=2)
        producer.flush(10)
        assert json.loads(client.read_count(3, timeout=10)[-1]["data"])["data"] == 2
        assert "Traceback" not in svc.log_tail(400)
        client.close()
        producer.close()
    finally:
        if svc is not None:
            svc.stop()
        if not mended:                                 # the other tests get the cluster back
            kafka_cluster.stop_node(3)
            kafka_cluster.start_node(3)


def _node_pid(cluster, node: int) -> int:
    return int((Path(cluster.info["DATA_DIR"]) / f"node-{node}" / "kafka.pid").read_text()
               .split()[0])


def test_a_hung_partition_leader_holds_the_stream_no_longer_than_kafka_does(kafka_cluster,
                                                                            tmp_path, request):
    """The leader of a partition stops answering but keeps its connections (SIGSTOP: a stalled
    disk, a paused VM). Kafka moved leadership in about 15 s, yet the gateway's fetch waited
    for kafka-python's 30 s request timeout: events the new leader had acknowledged reached
    the streams 15-25 s later (an audit). Now an event reaches a stream within seconds of its
    acknowledgement (or, acknowledged as the leader stopped, of the failover), and nothing is
    lost or repeated. (With /stats asked every second, as monitoring does, the 30 s showed in
    every run; without, the consumer found the new leader sooner: how the two meet is not
    known.)"""
    from kafka import KafkaProducer
    topic = f"hung.{uuid.uuid4().hex[:8]}"
    _create(kafka_cluster, topic)
    svc = Service(kafka_cluster.bootstrap, [topic], tmp_path / "gateway.log",
                  SSE_HEARTBEAT_SECONDS=5)
    request.addfinalizer(svc.stop)          # stopped, pass or fail
    svc.start(expect_partitions=3, timeout=40)
    client = SSEClient(f"{svc.url}/events?history=false", timeout=30)
    client.read_until(lambda evs: client.parser.comments, timeout=10)
    arrivals, acked = {}, {}
    done = threading.Event()

    def watch():
        while not done.is_set() and not client.closed:
            before = len(client.events)
            client.read_until(lambda evs, b=before: len(evs) > b, timeout=1)
            for e in client.events[before:]:
                arrivals.setdefault(json.loads(e["data"])["data"]["n"], time.time())

    def poll():             # monitoring, as the audit's: without it the stall did not show
        from tests.harness import http_json
        while not done.is_set():
            try:
                http_json(svc.url + "/stats", timeout=10)
            except OSError:
                pass
            time.sleep(1)

    observer = threading.Thread(target=watch)
    observer.start()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    producer = KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap_servers, acks="all",
                             linger_ms=0, request_timeout_ms=15000, retries=2**31 - 1,
                             delivery_timeout_ms=90000)
    victim = kafka_cluster.leader_of(topic, 0)
    pid = _node_pid(kafka_cluster, victim)
    futures = []
    try:
        for n in range(1050):                   # 35 s, the leader hung from 5 s to 35 s
            if n == 150:
                os.kill(pid, signal.SIGSTOP)
            value = json.dumps({"id": f"e{n}", "type": "hung.tick", "data": {"n": n}}).encode()
            future = producer.send(topic, value, partition=n % 3)
            future.add_callback(lambda _meta, n=n: acked.setdefault(n, time.time()))
            futures.append(future)
            time.sleep(0.033)
    finally:
        os.kill(pid, signal.SIGCONT)
    for future in futures:
        future.get(timeout=90)
    producer.close(timeout=10)
    deadline = time.monotonic() + 30
    while len(arrivals) < len(futures) and time.monotonic() < deadline:
        time.sleep(0.2)
    done.set()
    observer.join()
    numbers = [json.loads(e["data"])["data"]["n"] for e in client.events]
    assert sorted(numbers) == list(range(len(futures))), "lost or repeated"
    for partition in range(3):
        mine = [n for n in numbers if n % 3 == partition]
        assert mine == sorted(mine), f"partition {partition} out of order"
    # An event the hung leader acknowledged just before it stopped (its fetch answer not yet
    # sent) can reach no consumer before Kafka elects another leader: late from then on.
    failover = min(acked[n] for n in acked if n >= 150 and n % 3 == 0)
    late = max(arrivals[n] - max(acked[n], failover) for n in acked)
    assert late < 8, f"an event reached the stream {late:.1f} s after Kafka could serve it"
    client.close()
    svc.stop()
    assert victim in kafka_cluster.wait_for_isr(topic, 0, size=3, timeout=90)
