"""An unclean leader election cuts a streamed partition's log under the gateway's position, and
the new leader writes past that position before the gateway reads it again (a 3-node cluster:
a partition on nodes 1 and 2, node 3 keeping the controllers' quorum)."""
import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from actors import resume
from tests.harness import Service
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

COMMON, OLD, NEW = 5, 10, 20     # records on both replicas, on the old leader only, on the new


def _produce(cluster, topic, numbers, generation, acks, nodes):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[cluster.bootstrap_servers[n - 1] for n in nodes],
                             acks=acks, linger_ms=0, retries=5, request_timeout_ms=10000)
    try:
        for n in numbers:
            value = {"id": f"{generation}{n}", "type": "u.tick", "data": {"n": n}}
            producer.send(topic, json.dumps(value).encode(), partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)


def _worker(svc) -> int:
    children = Path(f"/proc/{svc.process.pid}/task/{svc.process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _offset(topic, sse_id) -> int:
    return resume.decode([topic], sse_id)[(topic, 0)]


def test_the_new_leaders_records_reach_the_streams_from_where_the_logs_part(
        kafka_cluster, tmp_path, request):
    """The gateway read offsets 0..14 from node 1; node 1 died with 5..14 on it alone, node 2
    was elected without them and took 20 new records at 5..24 while the gateway's worker was
    stopped. A live stream gets every record once, a `truncated` gap from 15 back to 5, then
    the new leader's 5..24 (kafka-python's divergence, not the new log's end); a resume from
    inside the cut gets that gap and ends, and its reconnect reads the new records. Before,
    the new leader's 5..14 were skipped without a gap."""
    from kafka.admin import KafkaAdminClient, NewTopic
    cluster = kafka_cluster
    topic = f"unclean.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 2]}, topic_configs={
            "unclean.leader.election.enable": "true", "min.insync.replicas": "1"})])
    finally:
        admin.close()
    cluster.wait_until(lambda: cluster.leader_of(topic, 0) == 1
                       and cluster.isr_of(topic, 0) == [1, 2], what="leader 1, ISR [1, 2]")
    svc = Service(",".join(cluster.bootstrap_servers), [topic], tmp_path / "gateway.log",
                  KAFKA_METADATA_REFRESH_MS=2000, SSE_HEARTBEAT_SECONDS=5)
    request.addfinalizer(svc.stop)
    request.addfinalizer(lambda: [cluster.start_node(n) for n in (1, 2)
                                  if not cluster.node_running(n)])
    svc.start(expect_partitions=1, timeout=40)
    live = SSEClient(f"{svc.url}/events", timeout=30)
    _produce(cluster, topic, range(COMMON), "common", "all", [1, 2, 3])
    cluster.stop_node(2)
    cluster.wait_until(lambda: cluster.isr_of(topic, 0) == [1], what="ISR [1]")
    _produce(cluster, topic, range(COMMON, COMMON + OLD), "old", 1, [1, 3])
    live.read_until(lambda evs: len(evs) >= COMMON + OLD, timeout=20)
    inside = live.events[COMMON + 5]["id"]                # after old10: offset 11, to be cut
    worker = _worker(svc)
    os.kill(worker, signal.SIGSTOP)
    try:
        cluster.kill_node(1)
        cluster.start_node(2)
        cluster.wait_until(lambda: cluster.leader_of(topic, 0) == 2, timeout=45,
                           what="node 2 elected (unclean)")
        _produce(cluster, topic, range(100, 100 + NEW), "new", 1, [2, 3])
    finally:
        os.kill(worker, signal.SIGCONT)
    live.read_until(lambda evs: len(evs) >= COMMON + OLD + 1 + NEW, timeout=30)
    said = [json.loads(e["data"]) for e in live.events]
    assert [d["id"] for d in said if "id" in d] == (
        [f"common{n}" for n in range(COMMON)] + [f"old{n}" for n in range(COMMON, COMMON + OLD)]
        + [f"new{n}" for n in range(100, 100 + NEW)])
    [gap] = [e for e in live.events if e["event"] == "gap"]
    assert live.events.index(gap) == COMMON + OLD and _offset(topic, gap["id"]) == COMMON
    assert json.loads(gap["data"])["partitions"] == [
        {"topic": topic, "partition": 0, "requested_offset": COMMON + OLD,
         "resumed_offset": COMMON, "reason": "truncated"}]
    assert "was truncated at offset 5, before this gateway's position 15" in \
        (tmp_path / "gateway.log").read_text()

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": inside}, timeout=30)
    resumed.read_until(lambda evs: resumed.closed, timeout=10)
    assert resumed.closed and [e["event"] for e in resumed.events] == ["gap"]
    assert _offset(topic, resumed.events[0]["id"]) == COMMON
    again = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": resumed.events[0]["id"]},
                      timeout=30)
    again.read_until(lambda evs: len(evs) >= NEW, timeout=15)
    assert [json.loads(e["data"])["id"] for e in again.events] == [
        f"new{n}" for n in range(100, 100 + NEW)]
    for client in (live, resumed, again):
        client.close()
