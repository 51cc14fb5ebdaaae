"""A SIGHUP reload (real gunicorn, real Kafka): the management API comes back on the new
worker within seconds, and the old worker's streams end cleanly and resume on the new one."""
import json
import os
import signal
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

# The channel's own reconnect back-off (1 s and growing) would add to the measured outage.
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100),
                  ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 200)]
GRPC_BACK_WITHIN = 5.0      # longest gRPC outage allowed around a reload (seconds)


def workers_of(svc) -> set[int]:
    pid = svc.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return {int(p) for p in children.read().split()}


def wait_gone(pids, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return True
        time.sleep(0.05)
    return False


def grpc_serving(channel) -> bool:
    try:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1)
        return check.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


class HealthWatch:
    """grpc.health.v1 Check every 0.1 s in a thread: the longest time it did not answer."""

    def __init__(self, channel):
        self.channel, self.samples = channel, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.done.wait(0.1):
            self.samples.append((time.monotonic(), grpc_serving(self.channel)))

    def stop(self) -> tuple[float, bool]:
        self.done.set()
        self.thread.join(5)
        longest, down_since = 0.0, None
        for at, ok in self.samples:
            if not ok and down_since is None:
                down_since = at
            elif ok and down_since is not None:
                longest, down_since = max(longest, at - down_since), None
        if down_since is not None:
            longest = max(longest, self.samples[-1][0] - down_since)
        return longest, bool(self.samples) and self.samples[-1][1]


def send(producer, topic, numbers):
    for n in numbers:
        producer(topic, {"id": f"e{n}", "type": "link.clicked", "source": "reload",
                         "data": {"n": n}}, partition=n % 3)
    producer.flush()
    return [f"e{n}" for n in numbers]


def ids(events):
    return [json.loads(e["data"])["id"] for e in events if e["event"] not in ("gap", "error")]


def test_hup_brings_grpc_back_and_streams_resume_on_the_new_worker(topics, service, producer):
    topic = topics("reload")["reload"]
    svc = service([topic], expect_partitions=3, GRPC_PORT=free_port())
    channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}", options=FAST_RECONNECT)
    try:
        assert grpc_serving(channel)
        stream = SSEClient(f"{svc.url}/events?history=false", timeout=10)
        stream.read_until(lambda evs: stream.parser.comments, timeout=10)
        before = send(producer, topic, range(0, 6))
        stream.read_count(len(before), timeout=15)
        assert sorted(ids(stream.events)) == sorted(before), (stream.body, svc.log_tail(30))
        old = workers_of(svc)
        # A connection that has sent nothing yet (a browser's preconnect) kept the old worker
        # in its graceful shutdown (10 s) while it held the gRPC port.
        idle = socket.create_connection(("127.0.0.1", svc.port))

        watch = HealthWatch(channel).start()
        hup = time.monotonic()
        svc.process.send_signal(signal.SIGHUP)
        stream.read_until(lambda evs: False, timeout=20)
        assert stream.closed, "the old worker's stream did not end after the reload"
        assert stream._decoder.done, "the stream was cut, not ended (no final chunk)"
        missed = send(producer, topic, range(6, 12))
        assert wait_gone(old, 20), f"old worker(s) {old} still running 20 s after HUP"
        gone = time.monotonic() - hup
        time.sleep(GRPC_BACK_WITHIN)
        outage, answering = watch.stop()
        print(f"\nafter HUP: old worker gone at {gone:.2f} s; longest gRPC health outage "
              f"{outage:.2f} s; answering at the end: {answering}")
        assert answering and outage < GRPC_BACK_WITHIN, (
            f"gRPC health: longest outage {outage:.1f} s, answering at the end {answering}:\n"
            f"{svc.log_tail(30)}")
        api = sse_pb2_grpc.SSEManagementServiceStub(channel)
        assert api.GetHealth(pb.GetHealthRequest(), timeout=5).status == "ok"
        assert not workers_of(svc) & old

        again = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": stream.parser.last_id},
                          timeout=10)
        assert again.status == 200
        again.read_count(len(missed), timeout=15)
        live = send(producer, topic, range(12, 15))
        again.read_count(len(missed) + len(live), timeout=15)
        again.read_for(0.3)
        got = ids(again.events)
        assert sorted(got) == sorted(missed + live) and len(got) == len(set(got))
        again.close()
        idle.close()
    finally:
        channel.close()
