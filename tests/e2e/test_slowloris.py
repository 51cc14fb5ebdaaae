"""Half-sent requests (slowloris) end to end: real gunicorn, real Kafka, real sockets.

The attackers bind their sockets to 127.0.0.2..21 (all of 127.0.0.0/8 is loopback on Linux),
so they are other addresses than the measuring client on 127.0.0.1.
"""
import json
import resource
import selectors
import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

HALF_REQUEST = b"GET /events?event_types=blog.* HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
ATTACK_SECONDS = 14.0            # longer than the default head timeout (10 s)
HEALTH_WORST_SECONDS = 3.0       # /health from another address, worst answer during the attack
EVENT_WORST_SECONDS = 3.0        # an event to an open stream, worst delivery during the attack
INF = float("inf")


def _enough_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


class Slowloris:
    """Holds up to `per_address` half-sent requests from each address; reopens the ones the
    server closes (at most `reopen_per_tick` every 0.5 s) until stopped."""

    def __init__(self, port, addresses, per_address, reopen_per_tick=200):
        self.port, self.addresses, self.per_address = port, addresses, per_address
        self.reopen_per_tick = reopen_per_tick
        self.selector = selectors.DefaultSelector()
        self.owners: dict[socket.socket, str] = {}
        self.opened = self.closed_by_server = self.refused = 0
        self.stop, self.ready = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, address) -> None:
        sock = socket.socket()
        sock.bind((address, 0))
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.send(HALF_REQUEST)
        except OSError:
            self.refused += 1
            sock.close()
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.owners[sock] = address
        self.opened += 1

    def _reap(self) -> dict:
        missing = {}
        for key, _ in self.selector.select(timeout=0):
            sock = key.fileobj
            self.selector.unregister(sock)
            address = self.owners.pop(sock)
            sock.close()
            self.closed_by_server += 1
            missing[address] = missing.get(address, 0) + 1
        return missing

    def _run(self) -> None:
        for _ in range(self.per_address):
            for address in self.addresses:
                if not self.stop.is_set():
                    self._open(address)
        self.ready.set()
        while not self.stop.wait(0.5):
            budget = self.reopen_per_tick
            for address, count in self._reap().items():
                for _ in range(min(count, budget)):
                    self._open(address)
                budget -= min(count, budget)

    def __enter__(self):
        _enough_files(len(self.addresses) * self.per_address + 1024)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        for sock in list(self.owners):
            sock.close()
        self.selector.close()

    @property
    def holding(self) -> int:
        return len(self.owners)


def _send(producer, topic, numbers):
    for n in numbers:
        producer(topic, {"id": f"e{n}", "type": "blog.post.created", "source": "slowloris",
                         "data": {"n": n}}, partition=n % 3)
    producer.flush()
    return [f"e{n}" for n in numbers]


def _ids(client):
    return [json.loads(e["data"])["id"] for e in client.events
            if e["event"] not in ("gap", "error")]


def _health_latency(svc) -> float:
    started = time.monotonic()
    try:
        status, body = http_json(svc.url + "/health", timeout=5)
    except OSError:
        return INF
    return time.monotonic() - started if status == 200 else INF


def _serves_others_during(svc, producer, topic, attack) -> None:
    """Under the attack, from 127.0.0.1: /health answers fast, an open stream gets each event
    within EVENT_WORST_SECONDS, and a stream opened mid-attack is served."""
    stream = SSEClient(f"{svc.url}/events?history=false", timeout=10)
    stream.read_until(lambda evs: stream.parser.comments, timeout=10)
    health, delivery, sent, late, late_from = [], [], [], None, 0
    with attack:
        assert attack.ready.wait(30), "the attack did not get its connections up"
        ends = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < ends and sum(x == INF for x in health + delivery) < 3:
            health.append(_health_latency(svc))
            sent += _send(producer, topic, [len(sent)])
            started = time.monotonic()
            stream.read_until(lambda evs: len(_ids(stream)) >= len(sent), EVENT_WORST_SECONDS)
            delivery.append(time.monotonic() - started if len(_ids(stream)) >= len(sent) else INF)
            if late is None and time.monotonic() > ends - ATTACK_SECONDS / 2:
                late_from = len(sent)
                try:
                    late = SSEClient(f"{svc.url}/events?history=false", timeout=5)
                except OSError as exc:
                    late = exc
            time.sleep(0.2)
        print(f"\nattack from {len(attack.addresses)} address(es): {attack.opened} connections "
              f"opened, {attack.closed_by_server} closed by the server; /health p50 "
              f"{_p50(health):.3f}s max {max(health):.3f}s, event delivery p50 "
              f"{_p50(delivery):.3f}s max {max(delivery):.3f}s ({len(health)} probes)")
        assert attack.opened >= len(attack.addresses) * attack.per_address
        assert max(health) < HEALTH_WORST_SECONDS, f"/health latencies under attack: {health}"
        assert max(delivery) < EVENT_WORST_SECONDS, f"event delivery under attack: {delivery}"
        assert isinstance(late, SSEClient) and late.status == 200, f"mid-attack stream: {late}"
        late.read_until(lambda evs: set(_ids(late)) >= set(sent[late_from:]), 10)
    assert sorted(_ids(stream)) == sorted(sent)
    assert set(_ids(late)) >= set(sent[late_from:])
    stream.close()
    late.close()


def _p50(values):
    return sorted(values)[len(values) // 2]


@pytest.mark.parametrize("addresses,per_address", [(1, 2000), (20, 100)],
                         ids=["2000-from-one-address", "2000-from-20-addresses"])
def test_half_sent_requests_do_not_block_others(topics, service, producer, addresses, per_address):
    topic = topics("loris")["loris"]
    svc = service([topic], expect_partitions=3)
    attackers = [f"127.0.0.{2 + i}" for i in range(addresses)]
    _serves_others_during(svc, producer, topic, Slowloris(svc.port, attackers, per_address))
    assert _health_latency(svc) < HEALTH_WORST_SECONDS


def test_an_unfinished_request_head_is_closed_after_the_timeout(topics, service):
    topic = topics("slowhead")["slowhead"]
    svc = service([topic], expect_partitions=3, HTTP_HEADER_TIMEOUT_SECONDS=2)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(HALF_REQUEST)
        time.sleep(1.0)
        sock.sendall(b"still-typing")             # a trickle does not extend the deadline
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (socket.timeout, TimeoutError):
            pytest.fail("the server held an unfinished request head for 10 s")
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
    assert 1.5 < waited < 5.0, f"closed after {waited:.1f} s, expected ~2 s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
    time.sleep(0.5)             # each 408 was an ERROR and a traceback in the log (soak audit)
    assert "Traceback" not in svc.log_tail(200) and "Socket error" not in svc.log_tail(200)


def test_pending_connections_per_address_are_capped(topics, service):
    topic = topics("pendcap")["pendcap"]
    svc = service([topic], expect_partitions=3, HTTP_MAX_PENDING_PER_IP=5)
    held = []
    try:
        for _ in range(5):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", svc.port))
            sock.sendall(HALF_REQUEST)
            held.append(sock)
        time.sleep(0.5)
        extra = socket.socket()
        extra.bind(("127.0.0.2", 0))
        extra.settimeout(5)
        extra.connect(("127.0.0.1", svc.port))         # refused before it sends anything
        answer = b""
        try:
            while chunk := extra.recv(65536):
                answer += chunk
        except (socket.timeout, TimeoutError):
            pytest.fail("a 6th unfinished request from one address was held, not refused")
        except ConnectionResetError:
            pass
        extra.close()
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "too_many_pending_requests"
        assert _health_latency(svc) < HEALTH_WORST_SECONDS     # other addresses still get in
    finally:
        for sock in held:
            sock.close()


def test_past_the_worker_cap_the_oldest_unfinished_request_is_closed_without_an_answer(
        topics, service):
    """An answer (408) would make a browser's EventSource give up for good; a plain close is a
    network error, which it retries after its `retry:` (a reconnect storm must not strand)."""
    topic = topics("pendtotal")["pendtotal"]
    svc = service([topic], expect_partitions=3, HTTP_MAX_PENDING=3, HTTP_MAX_PENDING_PER_IP=10)
    held = []
    try:
        for _ in range(4):                       # the 4th pushes the 1st out
            sock = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
            sock.sendall(HALF_REQUEST)
            held.append(sock)
            time.sleep(0.2)
        answer = b""
        try:
            while chunk := held[0].recv(65536):
                answer += chunk
        except (socket.timeout, TimeoutError):
            pytest.fail("the oldest unfinished request was held past the cap")
        except ConnectionResetError:
            pass
        assert answer == b"", answer
        held[3].sendall(b"x\r\n\r\n")             # the newest finishes its head: it streams
        stream = b""
        while b": client " not in stream:
            chunk = held[3].recv(65536)
            assert chunk, f"closed: {stream!r}"
            stream += chunk
        assert stream.startswith(b"HTTP/1.1 200 "), stream
    finally:
        for sock in held:
            sock.close()


def _answer(sock) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def _closed_unfinished(svc) -> dict[str, float]:
    with urllib.request.urlopen(svc.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "sse_unfinished_requests_closed_total"}


def test_metrics_count_the_unfinished_requests_closed_by_reason(topics, service):
    """The door's 408, 429 and unanswered closes are what an operator sees clients get
    during an attack or a storm: /metrics must count each, from 0."""
    topic = topics("doorcount")["doorcount"]
    svc = service([topic], expect_partitions=3, HTTP_MAX_PENDING_PER_IP=2, HTTP_MAX_PENDING=3,
                  HTTP_HEADER_TIMEOUT_SECONDS=2)
    assert _closed_unfinished(svc) == {"request_timeout": 0, "too_many_pending_requests": 0,
                                       "pending_evicted": 0}
    held = []
    for address in ("127.0.0.2",) * 4 + ("127.0.0.3",) * 2:
        sock = socket.socket()
        sock.settimeout(10)
        sock.bind((address, 0))
        sock.connect(("127.0.0.1", svc.port))
        sock.sendall(HALF_REQUEST)
        held.append(sock)
        time.sleep(0.2)
    answers = [_answer(sock) for sock in held]       # the door answers or closes every one
    for sock in held:
        sock.close()
    counted = {"request_timeout": sum(a.startswith(b"HTTP/1.1 408 ") for a in answers),
               "too_many_pending_requests": sum(a.startswith(b"HTTP/1.1 429 ") for a in answers),
               "pending_evicted": answers.count(b"")}
    assert counted == {"request_timeout": 3, "too_many_pending_requests": 2,
                       "pending_evicted": 1}, answers
    assert _closed_unfinished(svc) == counted
