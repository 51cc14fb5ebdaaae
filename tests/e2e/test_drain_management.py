"""A draining worker's streams stay within reach of the management API: after a SIGHUP the
old worker closes its streams over SSE_DRAIN_SECONDS, events still flowing to them; the new
worker's public gRPC port must list them and end the one an operator names (a revoked
subject must not read on for the rest of the drain)."""
from __future__ import annotations

import json
import signal

import grpc
import pytest

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.authtools import wait_for
from tests.harness import Service, free_port, holder_of
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e
STREAMS = 4


def workers(svc) -> set[int]:
    pid = svc.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return {int(p) for p in children.read().split()}


def new_holder(svc, old: set[int]) -> bool:
    """Does a worker started since `old` (the workers then) hold the public gRPC port?"""
    try:
        return holder_of(svc.grpc_port, workers(svc)) not in old
    except AssertionError:                      # between the old one and the new one
        return False


def test_a_draining_workers_streams_are_listed_and_ended_by_the_management_api(
        kafka, topics, tmp_path):
    from kafka import KafkaProducer
    topic = topics("drain-mgmt", partitions=1)["drain-mgmt"]
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
        wait_for(answers, 20, what="the management API")
        for _ in range(STREAMS):
            stream = SSEClient(f"{svc.url}/events?history=false")
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=5)
            streams.append(stream)
        youngest = streams[-1]                      # the drain ends the oldest first
        client_id = youngest.parser.comments[0].split("client ", 1)[1].split()[0]
        assert api.GetClients(pb.GetClientsRequest(), timeout=5).total == STREAMS
        old = workers(svc)
        svc.process.send_signal(signal.SIGHUP)
        wait_for(lambda: new_holder(svc, old), 20, what="the new worker holding the gRPC port")
        wait_for(answers, 20, what="the new worker's management API")
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
