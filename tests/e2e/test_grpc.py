"""The management API end to end: real gunicorn, real Kafka, a grpc Python client per RPC."""
import json
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import Service, free_port, http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

TOKEN = "e2e-secret-token"


class Api:
    def __init__(self, port):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.sse = sse_pb2_grpc.SSEManagementServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)


@pytest.fixture
def api_of():
    made = []

    def connect(svc):
        api = Api(svc.grpc_port)
        made.append(api)
        return api

    yield connect
    for api in made:
        api.channel.close()


def open_stream(svc, query="history=false"):
    """An SSE stream and its client id (from the `: client <id>` comment it opens with)."""
    client = SSEClient(f"{svc.url}/events?{query}", timeout=10,
                       headers={"User-Agent": "grpc-e2e/1"})
    client.read_until(lambda evs: client.parser.comments, timeout=10)
    (client_id,) = [c.split()[1] for c in client.parser.comments if c.startswith("client ")]
    return client, client_id


def wait_listed(api, ids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {c.id for c in api.sse.GetClients(pb.GetClientsRequest(limit=1000), timeout=5)
                  .clients}
        if set(ids) <= listed:
            return
        time.sleep(0.05)
    raise AssertionError(f"clients {set(ids) - listed} never registered")


def code_of(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_get_health_and_grpc_health_agree_with_slash_health(topics, service, api_of):
    svc = service(list(topics("gh").values()), expect_partitions=3, GRPC_PORT=free_port())
    api = api_of(svc)
    reply = api.sse.GetHealth(pb.GetHealthRequest(), timeout=5)
    status, body = http_json(svc.url + "/health")
    assert status == 200 and reply.status == body["status"] == "ok"
    assert reply.kafka.state == body["kafka"]["state"] == "connected"
    assert sorted(reply.kafka.partitions) == sorted(body["kafka"]["partitions"])
    assert len(reply.kafka.partitions) == 3
    for name in ("", "sse.SSEManagementService"):
        check = api.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    log = svc.log_tail(200)
    assert "GRPC_AUTH_TOKEN is not set: the management API" in log
    assert "health, reflection (gevent)" in log      # grpcio's gevent mode is on in the worker


def test_get_stats_shows_the_figures_of_slash_stats(topics, service, producer, api_of):
    topic = topics("gs")["gs"]
    svc = service([topic], expect_partitions=3, GRPC_PORT=free_port())
    api = api_of(svc)
    client, _ = open_stream(svc)
    for n in range(6):
        producer(topic, {"id": f"s{n}", "type": "blog.post.created", "source": "blog-service",
                         "data": {"n": n}}, partition=n % 3)
    producer(topic, b"not json", partition=0)
    producer.flush()
    client.read_count(6, timeout=10)
    deadline = time.monotonic() + 10
    while api.sse.GetStats(pb.GetStatsRequest(), timeout=5).invalid_events < 1:
        assert time.monotonic() < deadline, "the invalid record was never counted"
        time.sleep(0.05)

    reply = api.sse.GetStats(pb.GetStatsRequest(), timeout=5)
    figures = svc.stats()
    assert (reply.clients, reply.events_consumed, reply.events_delivered, reply.events_dropped,
            reply.invalid_events) == (1, 6, 6, 0, 1)
    for name in ("clients", "events_consumed", "events_delivered", "events_dropped",
                 "invalid_events", "connections_total", "filter_groups", "kafka_state",
                 "history_size"):
        assert getattr(reply, name) == figures[name], name
    assert reply.topics[topic].consumed == figures["per_topic"][topic] == 6
    assert reply.topics[topic].delivered == figures["delivered_per_topic"][topic] == 6
    assert reply.topics[topic].invalid == figures["invalid_per_topic"][topic] == 1
    assert reply.history_size == 6
    assert 0 < reply.uptime_seconds <= figures["uptime_seconds"] + 5
    client.close()


def test_get_clients_pages_are_consistent_with_slash_stats(topics, service, api_of):
    svc = service(list(topics("gc").values()), expect_partitions=3, GRPC_PORT=free_port())
    api = api_of(svc)
    streams = [open_stream(svc, f"history=false&event_types=blog.*&n={n}") for n in range(7)]
    ids = [client_id for _, client_id in streams]
    wait_listed(api, ids)

    pages, offset = [], 0
    while True:
        reply = api.sse.GetClients(pb.GetClientsRequest(limit=3, offset=offset), timeout=5)
        assert (reply.limit, reply.offset) == (3, offset)
        assert reply.total == svc.stats()["clients"] == 7
        if not reply.clients:
            break
        pages.append([c.id for c in reply.clients])
        offset += 3
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == ids          # oldest first, none twice

    first = api.sse.GetClients(pb.GetClientsRequest(limit=1), timeout=5).clients[0]
    assert first.id == ids[0] and first.remote_addr == "127.0.0.1"
    assert first.user_agent == "grpc-e2e/1" and list(first.event_types) == ["blog.*"]
    assert first.filter == "event_types=blog.*" and first.connected_at.seconds > 0

    default = api.sse.GetClients(pb.GetClientsRequest(), timeout=5)
    assert default.limit == 100 and len(default.clients) == 7
    assert api.sse.GetClients(pb.GetClientsRequest(limit=10**6), timeout=5).limit == 1000
    only_total = api.sse.GetClients(pb.GetClientsRequest(limit=0), timeout=5)
    assert only_total.total == 7 and not only_total.clients
    code, details = code_of(lambda: api.sse.GetClients(pb.GetClientsRequest(limit=-1), timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit" in details
    for client, _ in streams:
        client.close()


def test_disconnect_client_closes_the_live_stream(topics, service, producer, api_of):
    topic = topics("gd")["gd"]
    svc = service([topic], expect_partitions=3, GRPC_PORT=free_port())
    api = api_of(svc)
    (victim, victim_id), (bystander, bystander_id) = open_stream(svc), open_stream(svc)
    wait_listed(api, [victim_id, bystander_id])

    reply = api.sse.DisconnectClient(pb.DisconnectClientRequest(client_id=victim_id), timeout=5)
    assert (reply.client_id, reply.disconnected) == (victim_id, True)
    started = time.monotonic()
    victim.read_until(lambda evs: False, timeout=5)
    assert victim.closed and time.monotonic() - started < 2, "the stream was not ended"
    assert "closing: disconnected by operator" in victim.parser.comments

    producer(topic, {"id": "after", "type": "blog.post.created", "source": "blog-service",
                     "data": {}})
    producer.flush()
    assert [json.loads(e["data"])["id"] for e in bystander.read_count(1, timeout=10)] == ["after"]
    assert not bystander.closed
    listed = api.sse.GetClients(pb.GetClientsRequest(), timeout=5)
    assert [c.id for c in listed.clients] == [bystander_id]
    assert listed.total == svc.stats()["clients"] == 1

    for unknown in (victim_id, "abc-123"):
        code, details = code_of(lambda: api.sse.DisconnectClient(
            pb.DisconnectClientRequest(client_id=unknown), timeout=5))
        assert code == grpc.StatusCode.NOT_FOUND and unknown in details
    bystander.close()


def test_a_token_guards_the_management_calls_but_not_health(topics, service, api_of):
    svc = service(list(topics("ga").values()), expect_partitions=3, GRPC_PORT=free_port(),
                  GRPC_AUTH_TOKEN=TOKEN)
    api = api_of(svc)
    for metadata in (None, [("authorization", "Bearer nope")]):
        code, _ = code_of(lambda: api.sse.GetStats(pb.GetStatsRequest(), timeout=5,
                                                    metadata=metadata))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    good = [("authorization", f"Bearer {TOKEN}")]
    assert api.sse.GetHealth(pb.GetHealthRequest(), timeout=5, metadata=good).status == "ok"
    check = api.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert "unauthenticated" not in svc.log_tail(200)


class _Starting(Service):
    """A service whose Kafka never answers: wait until /health answers at all (503)."""

    def wait_healthy(self, expect_partitions=None, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return http_json(self.url + "/health", timeout=2)[1]
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"service never answered:\n{self.log_tail()}")


def test_without_kafka_health_is_not_serving_and_get_health_degraded(tmp_path, api_of):
    svc = _Starting(f"127.0.0.1:{free_port()}", ["nowhere.topic"], tmp_path / "gunicorn.log",
                    GRPC_PORT=free_port())
    try:
        svc.start()
        api = api_of(svc)
        reply = api.sse.GetHealth(pb.GetHealthRequest(), timeout=5)
        status, body = http_json(svc.url + "/health")
        assert status == 503 and reply.status == body["status"] == "degraded"
        # asked one after the other: the state may move from connecting to unreachable between
        assert {reply.kafka.state, body["kafka"]["state"]} <= {"connecting", "unreachable"}
        check = api.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        svc.stop()
