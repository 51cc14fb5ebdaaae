"""WORKERS=2 as one instance, end to end (real Kafka, real gunicorn): whichever worker a
connection lands on, the limits, the management API, /stats and /metrics are the instance's,
and a worker killed with SIGKILL is replaced without its clients missing an event.

Which worker holds a connection is read from /proc: the accepted socket's inode (in
/proc/net/tcp, by the client's port) among the workers' open files. Connections are opened
until each worker holds its share, so "both workers" is never left to the kernel's luck.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from types import SimpleNamespace
from unittest import mock

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tests.sse
from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import Service, free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

STREAMS = 200          # the number, half on each worker
BURST = 10             # RATE_LIMIT_BURST_SIZE of the module's service
PER_MIN = 6            # RATE_LIMIT_REQUESTS_PER_MIN: one more request every 10 s
TYPES = ("w.a", "w.b")  # every stream follows one of the two


# -- which worker holds a connection ---------------------------------------------------------

class Workers:
    """The workers of one gunicorn master, and which of them holds a given connection."""

    def __init__(self, svc: Service):
        self.svc = svc

    def pids(self) -> set[int]:
        pid = self.svc.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return {int(p) for p in children.read().split()}

    def wait_for(self, count: int, without=(), timeout=60.0) -> set[int]:
        """The worker pids once there are `count` of them, none of `without`, all serving."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if len(pids) == count and not pids & set(without):
                return pids
            time.sleep(0.1)
        raise AssertionError(f"workers {self.pids()}, wanted {count} without {without}:\n"
                             f"{self.svc.log_tail(30)}")

    def _inodes(self, local_port: int, listening=False) -> dict[int, int]:
        """Sockets on local_port (IPv4, or IPv6 as grpc binds): the peer's port -> inode, or
        0 -> the listener's inode."""
        found = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    local, remote, state, *_, inode = line.split()[1:10]
                    if int(local.rsplit(":", 1)[1], 16) != local_port or inode == "0":
                        continue
                    if listening and state == "0A":
                        found[0] = int(inode)
                    elif not listening and state != "0A":
                        found[int(remote.rsplit(":", 1)[1], 16)] = int(inode)
        return found

    def _owners(self) -> dict[int, int]:
        """socket inode -> the worker holding it."""
        owners = {}
        for pid in self.pids():
            try:
                names = os.listdir(f"/proc/{pid}/fd")
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{name}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = pid
        return owners

    def holders(self, socks, timeout=10.0) -> dict[socket.socket, int]:
        """The worker that accepted each client socket (once it has)."""
        deadline = time.monotonic() + timeout
        while True:
            inodes, owners = self._inodes(self.svc.port), self._owners()
            held = {s: owners.get(inodes.get(s.getsockname()[1])) for s in socks}
            if all(held.values()) or time.monotonic() > deadline:
                return held
            time.sleep(0.02)

    def grpc_holder(self, timeout=20.0) -> int:
        """The worker serving the public gRPC port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inode = self._inodes(self.svc.grpc_port, listening=True).get(0)
            pid = self._owners().get(inode) if inode else None
            if pid:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"no worker listens on the gRPC port {self.svc.grpc_port}")

    def connect(self, wanted: dict[int, int], timeout=60.0) -> list[tuple[int, socket.socket]]:
        """Connections, wanted[pid] accepted by each worker (none has sent a byte yet),
        interleaved worker by worker."""
        got = {pid: [] for pid in wanted}
        deadline = time.monotonic() + timeout
        while any(len(got[pid]) < n for pid, n in wanted.items()):
            assert time.monotonic() < deadline, (
                f"workers took {({p: len(s) for p, s in got.items()})} of {wanted} "
                f"connections in {timeout} s:\n{self.svc.log_tail(20)}")
            missing = sum(n - len(got[pid]) for pid, n in wanted.items())
            batch = [socket.create_connection(("127.0.0.1", self.svc.port), timeout=10)
                     for _ in range(min(missing, 25))]
            for sock, pid in self.holders(batch).items():
                if pid in got and len(got[pid]) < wanted[pid]:
                    got[pid].append(sock)
                else:
                    sock.close()
        order = []
        for round_ in range(max(wanted.values(), default=0)):
            order += [(pid, got[pid][round_]) for pid in wanted if round_ < len(got[pid])]
        return order


def stream_over(sock, url: str, headers=None) -> SSEClient:
    """An SSE stream on a connection already accepted by a worker."""
    with mock.patch.object(tests.sse, "socket",
                           SimpleNamespace(create_connection=lambda *a, **k: sock)):
        return SSEClient(url, headers=headers, timeout=10)


def request_over(sock, path: str, headers=None) -> tuple[int, bytes]:
    """One plain request on an accepted connection: status and body (none for a stream)."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    raw = b""
    while b"\r\n\r\n" not in raw and (chunk := sock.recv(65536)):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"text/event-stream" not in head.lower():      # a stream never ends: its head is all
        while chunk := sock.recv(65536):
            body += chunk
    sock.close()
    return int(head.split()[1]), body


def forwarded(n: int) -> dict:
    """A client address of its own (the service believes 127.0.0.1's X-Forwarded-For)."""
    return {"X-Forwarded-For": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}


_addresses = iter(range(1, 1 << 20))


def fresh_address() -> dict:
    return forwarded(next(_addresses))


def client_id(stream: SSEClient) -> str:
    stream.read_until(lambda evs: stream.parser.comments, timeout=10)
    (cid,) = [c.split()[1] for c in stream.parser.comments if c.startswith("client ")]
    return cid


def ids(events) -> list[str]:
    return [json.loads(e["data"])["id"] for e in events if e["event"] not in ("gap", "error")]


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


# -- one service for the module: two workers, 200 streams ---------------------------------------

@pytest.fixture(scope="module")
def topic(kafka):
    from kafka.admin import KafkaAdminClient, NewTopic
    name = f"workers.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        admin.create_topics([NewTopic(name, 1, 1)])   # one partition: one order to check
    finally:
        admin.close()
    return name


@pytest.fixture(scope="module")
def produce(kafka):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)

    def send(topic, names, kind):
        for name in names:
            producer.send(topic, json.dumps({"id": name, "type": kind, "source": "workers",
                                             "data": {"name": name}}).encode(), partition=0)
        producer.flush(timeout=10)
        return list(names)

    yield send
    producer.close(timeout=5)


@pytest.fixture(scope="module")
def svc(kafka, topic, tmp_path_factory):
    service = Service(kafka.bootstrap, [topic], tmp_path_factory.mktemp("workers") / "gunicorn.log",
                      WORKERS=2, GRPC_PORT=free_port(), RATE_LIMIT_ENABLED="true",
                      RATE_LIMIT_BURST_SIZE=BURST, RATE_LIMIT_REQUESTS_PER_MIN=PER_MIN,
                      TRUSTED_PROXIES="127.0.0.1/32", HTTP_HEADER_TIMEOUT_SECONDS=60)
    service.start(expect_partitions=1, timeout=60)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def workers(svc):
    return Workers(svc)


@pytest.fixture(scope="module")
def api(svc):
    channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
    yield sse_pb2_grpc.SSEManagementServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def fleet(svc, workers):
    """STREAMS streams, half on each worker, alternating between the two event types."""
    pids = workers.wait_for(2)
    streams = []
    for n, (pid, sock) in enumerate(workers.connect({pid: STREAMS // 2 for pid in pids})):
        kind = TYPES[n % 2]
        stream = stream_over(sock, f"{svc.url}/events?history=false&event_types={kind}",
                             headers=fresh_address())
        assert stream.status == 200, (stream.status, stream.body)
        streams.append(SimpleNamespace(stream=stream, pid=pid, kind=kind, id=client_id(stream),
                                       expected=[]))
    yield streams
    for member in streams:
        member.stream.close()


def stats_over(workers, pid) -> dict:
    [(_pid, sock)] = workers.connect({pid: 1})
    status, body = request_over(sock, "/stats", fresh_address())
    assert status == 200, body
    return json.loads(body)


def metrics_over(workers, pid) -> dict:
    [(_pid, sock)] = workers.connect({pid: 1})
    status, body = request_over(sock, "/metrics")
    assert status == 200, body
    return samples(body.decode())


def send_both(produce, topic, fleet, label, count):
    """`count` events of each type; every stream expects those of its type."""
    sent = {kind: produce(topic, [f"{label}-{kind}-{n}" for n in range(count)], kind)
            for kind in TYPES}
    for member in fleet:
        member.expected += sent[member.kind]
    return sent


def read_all(fleet, timeout=30.0):
    """Every stream until it has its expected events, then exactly those, each once."""
    deadline = time.monotonic() + timeout
    for member in fleet:
        owed = len(member.expected)
        member.stream.read_until(lambda evs, owed=owed: len(ids(evs)) >= owed,
                                 timeout=max(0.5, deadline - time.monotonic()))
    wrong = [(m.id, m.pid, m.kind, len(ids(m.stream.events)), len(m.expected))
             for m in fleet if ids(m.stream.events) != m.expected]
    return wrong


# -- the list ---------------------------------------------------------------------------

def test_streams_over_both_workers_each_get_every_matching_event_exactly_once(
        svc, workers, fleet, produce, topic):
    by_worker = {pid: sum(1 for m in fleet if m.pid == pid) for pid in workers.pids()}
    assert sorted(by_worker.values()) == [STREAMS // 2, STREAMS // 2], by_worker
    send_both(produce, topic, fleet, "first", 20)
    wrong = read_all(fleet)
    assert not wrong, f"{len(wrong)} streams (id, worker, type, got, expected): {wrong[:5]}"
    # a late duplicate would show in the next read: each one compares everything received
    send_both(produce, topic, fleet, "second", 1)
    assert not read_all(fleet), "a duplicate or a stray event arrived"


def test_get_clients_lists_all_streams_of_both_workers_with_one_total(api, fleet):
    listed, totals, pages = [], set(), 0
    token = ""
    while True:
        page = api.GetClients(pb.GetClientsRequest(limit=37, page_token=token), timeout=10)
        totals.add(page.total)
        listed += page.clients
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert totals == {STREAMS} and pages == -(-STREAMS // 37)     # no empty last page
    assert [c.id for c in listed] == list(dict.fromkeys(c.id for c in listed)), "a duplicate"
    assert {c.id for c in listed} == {m.id for m in fleet}
    # one order over both workers, that of the connects (by the monotonic clock: each worker
    # reads it beside the Unix time shown, so two connects a microsecond apart may swap)
    shown = [c.connected_at.ToNanoseconds() for c in listed]
    assert all(b >= a - 1_000_000 for a, b in zip(shown, shown[1:])), "not in connect order"
    assert api.GetStats(pb.GetStatsRequest(), timeout=10).clients == STREAMS


def test_disconnect_client_ends_a_stream_held_by_the_other_worker(svc, workers, api):
    holder = workers.grpc_holder()
    (other,) = workers.pids() - {holder}
    victims = {}
    for pid, sock in workers.connect({other: 1, holder: 1}):
        stream = stream_over(sock, f"{svc.url}/events?history=false", headers=fresh_address())
        victims[pid] = (stream, client_id(stream))
    for pid in (other, holder):
        stream, cid = victims[pid]
        reply = api.DisconnectClient(pb.DisconnectClientRequest(client_id=cid, reason="bye"),
                                     timeout=10)
        assert reply.disconnected, f"worker {pid} (gRPC on {holder}) kept {cid}"
        stream.read_until(lambda evs: False, timeout=10)
        assert stream.closed, f"the stream {cid} on worker {pid} did not end"
        assert any("bye" in c for c in stream.parser.comments), stream.parser.comments
    with pytest.raises(grpc.RpcError) as gone:
        api.DisconnectClient(pb.DisconnectClientRequest(client_id=victims[other][1]), timeout=10)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_stats_and_metrics_sum_both_workers(svc, workers, fleet, produce, topic):
    send_both(produce, topic, fleet, "counted", 2)
    assert not read_all(fleet)
    delivered = sum(len(m.expected) for m in fleet)
    for pid in sorted(workers.pids()) * 2:          # the same answer from either worker
        figures = stats_over(workers, pid)
        assert figures["clients"] == STREAMS, (pid, figures)
        assert figures["delivered_per_topic"][topic] == delivered, (pid, figures)
        assert figures["limiter"]["streams"] == STREAMS, (pid, figures["limiter"])
        found = metrics_over(workers, pid)
        assert found[("sse_clients", ())] == STREAMS
        assert found[("sse_events_delivered_total", (("topic", topic),))] == delivered
        # each stream's first live write is timed: only the sum of both workers reaches this
        assert found[("sse_delivery_latency_seconds_count", ())] >= STREAMS, pid


def _by_pid(found: dict, name: str) -> dict[int, float]:
    return {int(dict(labels)["pid"]): value for (metric, labels), value in found.items()
            if metric == name and "pid" in dict(labels)}


def test_process_figures_are_every_workers_and_never_fall_whichever_answers(svc, workers):
    """Scraped from one worker and then the other, process_cpu_seconds_total must not fall:
    Prometheus reads a fall as a reset. Each live worker has its own series (label pid)."""
    pids = workers.wait_for(2)
    seen: dict[tuple, float] = {}
    for pid in sorted(pids) * 2:
        found = metrics_over(workers, pid)
        cpu = _by_pid(found, "process_cpu_seconds_total")
        assert set(cpu) == pids, (pid, cpu, sorted(k for k in found if k[0].startswith("process_")))
        assert set(_by_pid(found, "process_resident_memory_bytes")) == pids
        assert set(_by_pid(found, "python_gc_collections_total")) == {pid}    # its own
        for key, value in found.items():
            if key[0].startswith(("process_", "python_gc_")) and key[0].endswith("_total"):
                assert value >= seen.get(key, 0), (f"{key} fell from {seen[key]} to {value} "
                                                   f"when worker {pid} answered")
                seen[key] = value


def test_the_per_ip_rate_limit_holds_across_workers(svc, workers):
    """BURST requests at once per address, for the instance: 12 tries on each worker."""
    address = fresh_address()
    started = time.monotonic()
    answers = {pid: [] for pid in workers.pids()}
    for pid, sock in workers.connect({pid: BURST + 2 for pid in answers}):
        answers[pid].append(request_over(sock, "/stats", address)[0])
    refill = int((time.monotonic() - started) * PER_MIN / 60) + 1
    allowed = {pid: codes.count(200) for pid, codes in answers.items()}
    assert all(set(codes) <= {200, 429} for codes in answers.values()), answers
    # exact to within one request per worker (and what the bucket refilled meanwhile)
    assert BURST - len(answers) <= sum(allowed.values()) <= BURST + len(answers) + refill, answers
    assert all(answers.values()) and all(429 in codes for codes in answers.values()), answers


def test_max_clients_refuses_the_eleventh_whichever_worker_takes_it(kafka, topic, tmp_path):
    small = Service(kafka.bootstrap, [topic], tmp_path / "gunicorn.log", WORKERS=2,
                    SSE_MAX_CLIENTS=10).start(expect_partitions=1, timeout=60)
    try:
        pair = Workers(small)
        first, second = sorted(pair.wait_for(2))
        held = {first: [], second: []}
        for pid, sock in pair.connect({first: 5, second: 5}):
            stream = stream_over(sock, f"{small.url}/events?history=false")
            assert stream.status == 200, (pid, stream.status, stream.body)
            held[pid].append(stream)
        for pid in (first, second, first, second):
            [(_pid, sock)] = pair.connect({pid: 1})
            status, body = request_over(sock, "/events")
            assert status == 503, f"the 11th stream on worker {pid}: {status} {body[:200]}"
        held[first].pop().close()          # a slot freed on one worker ...
        deadline = time.monotonic() + 10
        while True:                        # ... is the other's to take (once it is released)
            [(_pid, sock)] = pair.connect({second: 1})
            stream = stream_over(sock, f"{small.url}/events?history=false")
            if stream.status == 200 or time.monotonic() > deadline:
                break
            stream.close()
            time.sleep(0.2)
        assert stream.status == 200, "a slot freed on one worker stayed taken for the other"
        held[second].append(stream)
        [(_pid, sock)] = pair.connect({first: 1})
        assert request_over(sock, "/events")[0] == 503
        # TTIN: a third worker joins the same instance, and the limit holds on it too
        small.process.send_signal(signal.SIGTTIN)
        (third,) = pair.wait_for(3) - {first, second}
        [(_pid, sock)] = pair.connect({third: 1})
        assert request_over(sock, "/events")[0] == 503, "the 11th stream on a TTIN worker"
        small.process.send_signal(signal.SIGTTOU)
        pair.wait_for(2)
        for streams in held.values():
            for stream in streams:
                stream.close()
    finally:
        small.stop()


def test_sigkill_one_worker_it_is_replaced_and_its_clients_resume_missing_nothing(
        svc, workers, api, fleet, produce, topic):
    send_both(produce, topic, fleet, "before", 5)
    assert not read_all(fleet)
    latency_before = metrics_over(workers, sorted(workers.pids())[0])[
        ("sse_delivery_latency_seconds_count", ())]
    victim = workers.grpc_holder()           # the worker with the public gRPC port, too
    survivor, = workers.pids() - {victim}
    os.kill(victim, signal.SIGKILL)
    lost = [m for m in fleet if m.pid == victim]
    for member in lost:
        member.stream.read_until(lambda evs: False, timeout=10)
        assert member.stream.closed, f"a stream of the killed worker {victim} still runs"
    send_both(produce, topic, fleet, "while-down", 5)
    (newcomer,) = workers.wait_for(2, without={victim}) - {survivor}
    # its clients come back with their Last-Event-ID, half on each worker
    half = len(lost) // 2
    spread = workers.connect({survivor: half, newcomer: len(lost) - half})
    for member, (pid, sock) in zip(lost, spread, strict=True):
        last_id, got = member.stream.parser.last_id, ids(member.stream.events)
        member.stream = stream_over(sock, f"{svc.url}/events?event_types={member.kind}",
                                    headers={**fresh_address(), "Last-Event-ID": last_id})
        assert member.stream.status == 200, (member.stream.status, member.stream.body)
        member.id, member.pid = client_id(member.stream), pid
        assert got == member.expected[:len(got)]
        member.expected = member.expected[len(got):]     # what the new stream owes it
    send_both(produce, topic, fleet, "after", 5)
    wrong = read_all(fleet)
    assert not wrong, f"{len(wrong)} streams (id, worker, type, got, expected): {wrong[:5]}"
    # the instance is whole again: the newcomer serves, counts and the API include it
    assert {m.pid for m in fleet} == {survivor, newcomer}
    deadline = time.monotonic() + 20
    while True:
        try:
            total = api.GetClients(pb.GetClientsRequest(limit=0), timeout=5).total
        except grpc.RpcError as err:          # the gRPC port moves to the survivor
            total = err
        if total == STREAMS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == STREAMS, f"GetClients after the kill: {total!r}"
    for pid in (survivor, newcomer):
        figures = stats_over(workers, pid)
        assert figures["clients"] == STREAMS and figures["limiter"]["streams"] == STREAMS, (
            pid, figures["clients"], figures["limiter"])
        found = metrics_over(workers, pid)
        assert found[("sse_delivery_latency_seconds_count", ())] >= latency_before, (
            "the killed worker's observations were lost from the histogram")
