"""Bursts and cuts end to end (real Kafka, real gunicorn): a Kafka batch far larger than
SSE_EVENT_BUFFER_SIZE reaches every fast client whole, and a client cut before its first event
resumes exactly from the id its stream opened with."""
import json
import threading
import time

import pytest

from tests.harness import eventually, free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _event(n, type_="link.clicked"):
    return {"id": f"e{n}", "type": type_, "source": "burst", "data": {"n": n}}


def _ids(events):
    return [json.loads(e["data"])["id"] for e in events if e["event"] != "gap"]


def _opened(client):
    client.read_until(lambda evs: client.parser.comments, timeout=10)
    return client


@pytest.fixture
def batching_producer(kafka):
    """A producer that holds everything until flush(): the whole burst goes as one batch."""
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=60_000,
                      delivery_timeout_ms=180_000, batch_size=4 << 20,
                      max_request_size=8 << 20)
    yield p
    p.close(timeout=5)


def test_a_burst_in_one_batch_reaches_all_50_fast_clients(topics, service, batching_producer):
    topic = topics("burst", partitions=1)["burst"]
    svc = service([topic], expect_partitions=1, SSE_MAX_CLIENTS_PER_IP=100)
    clients = [_opened(SSEClient(f"{svc.url}/events?history=false&event_types=link.*",
                                 timeout=30)) for _ in range(50)]
    assert eventually(lambda: svc.stats()["clients"] == 50)
    for n in range(1000):
        batching_producer.send(topic, json.dumps(_event(n)).encode(), partition=0)
    batching_producer.flush(timeout=30)
    readers = [threading.Thread(target=c.read_count, args=(1000, 90)) for c in clients]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    stats = svc.stats()
    received = [len(c.events) for c in clients]
    assert stats["slow_disconnects"] == 0 and received == [1000] * 50, (
        f"received per client {received}, stats {stats}\n{svc.log_tail(5)}")
    assert all(_ids(c.events) == [f"e{n}" for n in range(1000)] for c in clients)
    assert stats["clients"] == 50 and stats["events_dropped"] == 0
    for c in clients:
        c.close()


def _disconnect(svc, client_id):
    import grpc
    from rpc import sse_pb2 as pb, sse_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
        stub = sse_pb2_grpc.SSEManagementServiceStub(channel)
        reply = stub.DisconnectClient(pb.DisconnectClientRequest(client_id=client_id), timeout=5)
    assert reply.disconnected


def _client_id(client) -> str:
    return next(c.split()[1] for c in client.parser.comments if c.startswith("client "))


@pytest.mark.parametrize("query", ["history=false", "history=true"])
def test_a_client_cut_before_any_event_resumes_from_its_opening_id(topics, service, producer,
                                                                   query):
    topic = topics("cut")["cut"]
    svc = service([topic], expect_partitions=3, GRPC_PORT=free_port())
    for n in range(6):                   # history for the new client (and none with false)
        producer(topic, _event(n, "blog.post.created"), partition=n % 3)
    producer.flush()
    assert eventually(lambda: svc.stats()["events_consumed"] == 6)
    client = _opened(SSEClient(f"{svc.url}/events?{query}&event_types=link.*", timeout=30))
    # Its opening block set an id although no event has matched it yet.
    assert eventually(lambda: client.read_for(0.2) is not None and client.parser.last_id, 5), (
        f"no id before the first event: {client.body[:300]!r}")
    opening_id = client.parser.last_id
    _disconnect(svc, _client_id(client))
    client.read_until(lambda evs: False, timeout=5)
    assert client.closed and not client.events
    assert "closing: disconnected by operator" in client.parser.comments
    for n in range(6, 18):               # missed while away
        producer(topic, _event(n), partition=n % 3)
    producer.flush()
    assert eventually(lambda: svc.stats()["events_consumed"] == 18)
    again = SSEClient(f"{svc.url}/events?{query}&event_types=link.*",
                      headers={"Last-Event-ID": opening_id}, timeout=30)
    again.read_count(12, timeout=15)
    producer(topic, _event(18), partition=0)
    producer.flush()
    again.read_count(13, timeout=15)
    again.read_for(0.3)
    got = _ids(again.events)
    assert sorted(got) == sorted(f"e{n}" for n in range(6, 19)) and len(got) == len(set(got))
    again.close()


def test_a_client_whose_socket_takes_nothing_is_still_cut(topics, service, producer):
    """Far under the byte budget: the time rule (events waiting over 5 s for a
    socket that takes nothing) cuts it, even once no new batch comes to judge it."""
    import socket
    topic = topics("stuck")["stuck"]
    svc = service([topic], expect_partitions=3, SSE_EVENT_BUFFER_SIZE=20,
                  SSE_MAX_EVENT_BYTES=1 << 20)          # a byte budget of 20 MiB
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", svc.port))
    stuck.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n\r\n")
    normal = _opened(SSEClient(f"{svc.url}/events?history=false", timeout=30))
    assert eventually(lambda: svc.stats()["clients"] == 2)
    started = time.monotonic()
    for n in range(1000):                # 10 MB: more than the kernel's buffers hold
        producer(topic, {**_event(n), "data": {"n": n, "pad": "x" * 10_000}}, partition=n % 3)
    producer.flush()
    normal.read_count(1000, timeout=60)
    assert len(normal.events) == 1000
    assert eventually(lambda: svc.stats()["slow_disconnects"] == 1, 20), svc.stats()
    took = time.monotonic() - started
    assert 4.0 < took < 20, took
    assert svc.stats()["clients"] == 1
    assert eventually(lambda: "slow client: buffer full; not reading, connection cut"
                 in svc.log_path.read_text(), 10)
    print(f"\nthe stuck client was cut {took:.1f} s after the events were sent")
    stuck.close()
    normal.close()
