"""A draining worker's streams stay within reach of the management API: after a SIGHUP the
old worker closes its streams over SSE_DRAIN_SECONDS, events still flowing to them; the new
worker's public gRPC port must list them and end the one an operator names (a revoked
subject must not read on for the rest of the drain)."""
from __future__ import annotations

import json
import signal
import time
import uuid

import grpc
import pytest

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import Service, free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e
STREAMS = 4


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_a_draining_workers_streams_are_listed_and_ended_by_the_management_api(kafka, tmp_path):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"drain-mgmt.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    svc = Service(kafka.bootstrap, [topic], tmp_path / "gateway.log", GRPC_PORT=free_port(),
                  WORKERS=1, SSE_DRAIN_SECONDS=8)
    svc.start(expect_partitions=1)
    channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
    api = sse_pb2_grpc.SSEManagementServiceStub(channel)
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=5)
    streams = []

    def answers() -> bool:
        try:
            return api.GetHealth(pb.GetHealthRequest(), timeout=2) is not None
        except grpc.RpcError:
            return False
    try:
        _wait(answers, 20, "the management API")
        for _ in range(STREAMS):
            stream = SSEClient(f"{svc.url}/events?history=false")
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=5)
            streams.append(stream)
        youngest = streams[-1]                      # the drain ends the oldest first
        client_id = youngest.parser.comments[0].split("client ", 1)[1].split()[0]
        assert api.GetClients(pb.GetClientsRequest(), timeout=5).total == STREAMS
        svc.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        _wait(answers, 20, "the new worker's management API")
        assert not youngest.closed
        listed = api.GetClients(pb.GetClientsRequest(), timeout=5)
        assert 1 <= listed.total <= STREAMS and client_id in {c.id for c in listed.clients}
        api.DisconnectClient(pb.DisconnectClientRequest(client_id=client_id), timeout=5)
        for n in range(3):
            producer.send(topic, json.dumps({"id": f"late{n}", "type": "t"}).encode())
        producer.flush()
        got = youngest.read_until(lambda evs: youngest.closed, timeout=5)
        assert youngest.closed
        assert not [e for e in got if "late" in e.get("data", "")]
    finally:
        producer.close(timeout=5)
        for stream in streams:
            stream.close()
        channel.close()
        svc.stop()
