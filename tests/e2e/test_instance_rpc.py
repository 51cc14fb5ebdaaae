"""One management API for WORKERS=2 (real gunicorn, real Kafka): the worker that holds the
public gRPC port asks the other over its private socket. A stuck worker (SIGSTOP) makes the
instance's GetStats UNAVAILABLE within the caller's deadline and its health degraded; when
the holder dies (SIGKILL) a live worker (the other, or gunicorn's replacement if it binds
first) takes the port over and the dead socket goes."""
import json
import os
import signal
import time
from urllib.request import urlopen

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import free_port, holder_of
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def peer_pids(svc) -> set[int]:
    return {int(path.stem) for path in svc.peer_sockets()}


def wait_for(check, timeout=20.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture
def two_workers(topics, service):
    svc = service(list(topics("inst").values()), expect_partitions=3, GRPC_PORT=free_port(),
                  WORKERS=2)
    wait_for(lambda: len(peer_pids(svc)) == 2, what="both workers' sockets")
    channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
    yield svc, channel, sse_pb2_grpc.SSEManagementServiceStub(channel)
    channel.close()


def test_a_stuck_worker_makes_get_stats_unavailable_within_the_deadline(two_workers):
    svc, channel, api = two_workers
    assert api.GetStats(pb.GetStatsRequest(), timeout=5).kafka_state == "connected"
    pids = peer_pids(svc)
    stuck = (pids - {holder_of(svc.grpc_port, pids)}).pop()
    os.kill(stuck, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            api.GetStats(pb.GetStatsRequest(), timeout=1.5)
        took = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
        assert f"worker {stuck}" in caught.value.details()
        assert took < 1.5                              # answered before the caller gave up
        health = api.GetHealth(pb.GetHealthRequest(), timeout=5)
        assert health.status == "degraded" and f"worker {stuck} did not answer" in \
            health.kafka.detail
        checker = health_pb2_grpc.HealthStub(channel)
        wait_for(lambda: checker.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                 == health_pb2.HealthCheckResponse.NOT_SERVING, what="NOT_SERVING")
    finally:
        os.kill(stuck, signal.SIGCONT)
    assert api.GetHealth(pb.GetHealthRequest(), timeout=5).status == "ok"
    assert api.GetStats(pb.GetStatsRequest(), timeout=5).kafka_state == "connected"


def test_when_the_port_holder_dies_a_live_worker_takes_the_port_over(two_workers):
    svc, channel, api = two_workers
    streams = [SSEClient(f"{svc.url}/events?history=false", timeout=10) for _ in range(6)]
    try:
        for stream in streams:
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=10)
        wait_for(lambda: api.GetClients(pb.GetClientsRequest(), timeout=5).total == 6,
                 what="6 clients listed")
        pids = peer_pids(svc)
        holder = holder_of(svc.grpc_port, pids)
        survivor = (pids - {holder}).pop()
        os.kill(holder, signal.SIGKILL)

        def answered():
            try:
                return api.GetClients(pb.GetClientsRequest(), timeout=2)
            except grpc.RpcError:
                return None
        page = wait_for(answered, what="GetClients on the taken-over port")
        # the survivor retries every 0.5 s, and gunicorn's replacement may bind first
        live = (peer_pids(svc) | {survivor}) - {holder}
        assert holder_of(svc.grpc_port, live) in live
        assert page.total == len(page.clients) <= 6      # the dead worker's clients are gone
        replaced = wait_for(lambda: len(peer_pids(svc)) == 2 and peer_pids(svc),
                            what="gunicorn's replacement joining")
        assert holder not in replaced and survivor in replaced
        assert api.GetStats(pb.GetStatsRequest(), timeout=5).clients == \
            api.GetClients(pb.GetClientsRequest(), timeout=5).total
    finally:
        for stream in streams:
            stream.close()


def test_the_instance_counters_never_go_backwards_when_a_worker_is_killed(two_workers, producer):
    """Counters summed over the workers keep a killed worker's share: /stats and /metrics
    would otherwise fall by it (Prometheus reads a fall as a reset, a spike in rate())."""
    from tests.e2e.test_workers import Workers, stream_over
    svc, _channel, _api = two_workers
    health = json.loads(urlopen(f"{svc.url}/health", timeout=5).read())
    topic = health["kafka"]["partitions"][0].rpartition(":")[0]
    svc_workers = Workers(svc)
    pids = svc_workers.wait_for(2)
    streams = [stream_over(sock, f"{svc.url}/events?history=false")
               for _pid, sock in svc_workers.connect({pid: 3 for pid in pids})]
    try:
        for stream in streams:
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=10)
        for n in range(5):
            producer(topic, {"id": f"k{n}", "type": "kill.t", "source": "t", "data": {}})
        producer.flush()
        for stream in streams:
            stream.read_until(lambda evs: len(evs) >= 5, timeout=15)
        counted = ("connections_total", "events_delivered")

        def figures():
            body = json.loads(urlopen(f"{svc.url}/stats", timeout=5).read())
            metrics = urlopen(f"{svc.url}/metrics", timeout=5).read().decode()
            opened = [line for line in metrics.splitlines()
                      if line.startswith("sse_connections_total ")]
            return {**{name: body[name] for name in counted},
                    "sse_connections_total": float(opened[0].split()[1])}
        before = wait_for(lambda: (f := figures())["events_delivered"] >= 30 and f,
                          what="6 streams counted, 30 events delivered")
        victim = (pids - {holder_of(svc.grpc_port, pids)}).pop()
        os.kill(victim, signal.SIGKILL)
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                seen.append(figures())
            except OSError:
                pass
            replaced = peer_pids(svc)
            if len(replaced) == 2 and victim not in replaced:
                break
            time.sleep(0.2)
        seen.append(figures())
        fell = [after for after in seen if any(after[k] < before[k] for k in before)]
        assert not fell, f"before the kill {before}; after: {fell[:3]}"
    finally:
        for stream in streams:
            stream.close()


def test_a_reload_keeps_what_the_replaced_workers_counted(two_workers, producer):
    """SIGHUP replaces every worker: each leaves its last counts, also those counted since
    the last /stats, to the instance."""
    svc, _channel, _api = two_workers
    health = json.loads(urlopen(f"{svc.url}/health", timeout=5).read())
    topic = health["kafka"]["partitions"][0].rpartition(":")[0]
    streams = [SSEClient(f"{svc.url}/events?history=false", timeout=10) for _ in range(4)]

    def delivered():
        return json.loads(urlopen(f"{svc.url}/stats", timeout=5).read())["events_delivered"]

    def send(label):
        for n in range(5):
            producer(topic, {"id": f"{label}{n}", "type": "reload.t", "source": "t", "data": {}})
        producer.flush()
    try:
        for stream in streams:
            stream.read_until(lambda evs, s=stream: s.parser.comments, timeout=10)
        send("a")
        wait_for(lambda: delivered() >= 20, what="20 deliveries counted")
        send("b")
        for stream in streams:
            stream.read_until(lambda evs: len(evs) >= 10, timeout=15)
        old = peer_pids(svc)
        svc.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(peer_pids(svc)) == 2 and not peer_pids(svc) & old, timeout=40,
                 what="two new workers")
        assert wait_for(lambda: delivered() >= 40, timeout=5, what="40 deliveries kept")
    finally:
        for stream in streams:
            stream.close()
