"""Protection end to end (real gunicorn, real Kafka): rate limits, client addresses, stream
caps, CORS, hostile requests and records, clients that never read, a connect storm."""
import json
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


# -- helpers ----------------------------------------------------------------------------------
def raw(svc, request: bytes, timeout=5.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the answer until the server closes (keepalive is off)."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().title(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(svc, path, method="GET", headers=None) -> tuple[int, dict, bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return raw(svc, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def error_of(body: bytes) -> str:
    document = json.loads(body)
    assert document["message"]
    return document["error"]


def code_of(body: bytes) -> str | None:
    """The JSON error code of an answer; None when it is not our JSON shape (HTML, say)."""
    try:
        return error_of(body)
    except (ValueError, KeyError, TypeError, AssertionError):
        return None


def wait_for(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def worker_pid(svc) -> int:
    children = Path(f"/proc/{svc.process.pid}/task/{svc.process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def sockets_of(pid) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def holds_connection(pid, server_port, client_port) -> bool:
    """Does process `pid` still hold the server side of the connection from `client_port`?"""
    local, remote = f":{server_port:04X}", f":{client_port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(local) and fields[2].endswith(remote):
                inodes.add(f"socket:[{fields[9]}]")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


def rss_mb(pid) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def opened(client) -> bool:
    """Has the stream begun (its opening comment arrived)?"""
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    return bool(client.parser.comments)


def _event(n, type_="link.clicked", size=0):
    return {"id": f"e{n}", "type": type_, "source": "test", "data": {"n": n, "pad": "x" * size}}


# -- rate limiting and client addresses --------------------------------------------------------
def test_429_after_the_burst_then_recovery(topics, service):
    topic = topics("rl")["rl"]
    svc = service([topic], expect_partitions=3, RATE_LIMIT_ENABLED="true",
                  RATE_LIMIT_BURST_SIZE=5, RATE_LIMIT_REQUESTS_PER_MIN=60)
    assert [get(svc, "/stats")[0] for _ in range(5)] == [200] * 5
    status, headers, body = get(svc, "/stats")
    assert status == 429 and error_of(body) == "rate_limited"
    assert headers["Retry-After"] == "1" and headers["Content-Type"] == "application/json"
    # The same bucket guards new streams; forged forwarding headers do not escape it.
    stream = SSEClient(f"{svc.url}/events", headers={"X-Forwarded-For": "198.51.100.7"})
    assert stream.status == 429 and stream.headers["Retry-After"]
    assert stream.json()["error"] == "rate_limited"
    # /health stays unlimited for load balancers.
    assert all(get(svc, "/health")[0] == 200 for _ in range(30))
    time.sleep(int(headers["Retry-After"]))           # one token per second comes back
    assert get(svc, "/stats")[0] == 200
    assert get(svc, "/stats")[0] == 429
    time.sleep(1)
    client = SSEClient(f"{svc.url}/events")
    assert client.status == 200 and opened(client)
    client.close()


def test_trusted_and_untrusted_forwarded_for(topics, service):
    topic = topics("xff")["xff"]
    svc = service([topic], expect_partitions=3, RATE_LIMIT_ENABLED="true",
                  RATE_LIMIT_BURST_SIZE=2, TRUSTED_PROXIES="127.0.0.0/8,10.0.0.0/8")

    def stats_as(chain):
        return get(svc, "/stats", headers={"X-Forwarded-For": chain})[0]

    assert [stats_as("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert stats_as("198.51.100.2") == 200                      # its own bucket
    assert stats_as("198.51.100.1, 10.1.2.3") == 429            # trusted hops skipped
    assert stats_as("198.51.100.1, 198.51.100.3") == 200        # right-most untrusted counts
    client = SSEClient(f"{svc.url}/events", headers={"X-Forwarded-For": "203.0.113.5, 10.9.9.9"})
    assert client.status == 200 and opened(client)
    client.close()
    assert wait_for(lambda: "connected from 203.0.113.5 " in svc.log_path.read_text())


# -- stream caps --------------------------------------------------------------------------------
def test_stream_caps_per_address_and_per_instance(topics, service):
    topic = topics("caps")["caps"]
    svc = service([topic], expect_partitions=3, SSE_MAX_CLIENTS=5, SSE_MAX_CLIENTS_PER_IP=3,
                  TRUSTED_PROXIES="127.0.0.1/32")

    def stream_from(address):
        return SSEClient(f"{svc.url}/events", headers={"X-Forwarded-For": address})

    mine = [stream_from("198.51.100.1") for _ in range(3)]
    assert all(c.status == 200 and opened(c) for c in mine)
    fourth = stream_from("198.51.100.1")
    assert fourth.status == 429 and fourth.json()["error"] == "too_many_streams_per_ip"
    assert fourth.headers["Retry-After"] == "5"
    others = [stream_from("198.51.100.2"), stream_from("198.51.100.3")]
    assert all(c.status == 200 for c in others)
    full = stream_from("198.51.100.4")
    assert full.status == 503 and full.json()["error"] == "too_many_streams"
    assert full.headers["Retry-After"] == "5"
    assert svc.stats()["clients"] == 5
    mine[0].close()
    assert wait_for(lambda: svc.stats()["clients"] == 4)
    again = wait_for(lambda: (c := stream_from("198.51.100.4")).status == 200 and c)
    assert again and opened(again)
    for client in mine[1:] + others + [again]:
        client.close()


# -- CORS ----------------------------------------------------------------------------------------
PREFLIGHT = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id"}


def test_cors_for_listed_origins(topics, service):
    topic = topics("cors")["cors"]
    svc = service([topic], expect_partitions=3,
                  CORS_ALLOWED_ORIGINS="https://app.example,https://admin.example")
    status, headers, _ = get(svc, "/events", "OPTIONS", {"Origin": "https://app.example", **PREFLIGHT})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "Last-Event-ID" in headers["Access-Control-Allow-Headers"]
    assert "GET" in headers["Access-Control-Allow-Methods"] and "Origin" in headers["Vary"]
    status, headers, body = get(svc, "/events", "OPTIONS", {"Origin": "https://evil.example",
                                                             **PREFLIGHT})
    assert status == 403 and error_of(body) == "origin_not_allowed"
    assert not any(k.startswith("Access-Control-Allow") for k in headers)
    status, headers, _ = get(svc, "/stats", headers={"Origin": "https://admin.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://admin.example"
    status, headers, _ = get(svc, "/stats", headers={"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert "Origin" in headers["Vary"]
    stream = SSEClient(f"{svc.url}/events", headers={"Origin": "https://app.example"})
    assert stream.headers["Access-Control-Allow-Origin"] == "https://app.example"
    stream.close()
    assert svc.stats()["connections_total"] == 1            # preflights opened no stream


def test_cors_wildcard_by_default_never_with_credentials(topics, service):
    topic = topics("corsw")["corsw"]
    svc = service([topic], expect_partitions=3)
    status, headers, _ = get(svc, "/events", "OPTIONS", {"Origin": "https://any.example", **PREFLIGHT})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in headers
    stream = SSEClient(f"{svc.url}/events", headers={"Origin": "https://any.example"})
    assert stream.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in stream.headers
    stream.close()


# -- hostile requests and records -------------------------------------------------------------
HOSTILE_REQUESTS = {
    # name: (request bytes, expected status, expected JSON error code)
    "query over the request-line limit": (
        b"GET /events?event_types=" + b"a" * 8200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    "header over the field limit": (
        b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + b"9" * 9000 + b"\r\n\r\n", 431,
        "request_header_fields_too_large"),
    "headers over 64 KiB in all, each under the field limit": (
        b"GET /events HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 8000) for i in range(9)) + b"\r\n", 431,
        "request_header_fields_too_large"),
    "one pattern too long": (b"GET /events?event_types=" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                             400, "bad_request"),
    "thousands of patterns": (b"GET /events?event_types=" + b",".join([b"t"] * 2000)
                              + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "malformed percent escapes": (b"GET /events?event_types=%zz%&sources=%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n",
                                  400, "bad_request"),
    "invalid UTF-8, escaped": (b"GET /events?event_types=%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "invalid UTF-8, raw": (b"GET /events?event_types=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "NUL and newline in a pattern": (b"GET /events?event_types=a%00b,c%0Ad HTTP/1.1\r\nHost: x\r\n\r\n",
                                     400, "bad_request"),
    "bad flag": (b"GET /events?history=perhaps HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "bad since": (b"GET /events?since=yesterday HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "POST": (b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405, "method_not_allowed"),
    "PUT": (b"PUT /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"),
    "DELETE": (b"DELETE /events HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "PATCH": (b"PATCH /events HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "TRACE": (b"TRACE /events HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "invented method": (b"BREW /events HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "invalid method token": (b"G(E)T /events HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "not HTTP at all": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400,
                       "bad_request"),
}


def test_hostile_requests_get_clear_answers_and_cost_the_others_nothing(topics, service, producer):
    topic = topics("hostile")["hostile"]
    svc = service([topic], expect_partitions=3)
    pid = worker_pid(svc)
    bystander = SSEClient(f"{svc.url}/events?history=false")
    assert opened(bystander)
    answers, wrong = {}, []
    for name, (request, status, code) in HOSTILE_REQUESTS.items():
        got, headers, body = raw(svc, request)
        answers[name] = (got, body[:300])
        if (got != status or code_of(body) != code
                or not headers.get("Content-Type", "").startswith("application/json")
                # CORS_ALLOWED_ORIGINS=*: gunicorn's own refusals (414, 431 ...) had none, so
                # a page of another origin could not read why it was refused
                or headers.get("Access-Control-Allow-Origin") != "*"):
            wrong.append((name, got, headers, body[:300]))
        if got == 405:
            assert "GET" in headers["Allow"]
        assert "Date" in headers, (name, headers)       # RFC 9110 6.6.1, also on these
    assert not wrong, wrong
    # A HEAD refused by the worker itself (no Host) gets the head alone (RFC 9110 9.3.2).
    got, headers, body = raw(svc, b"HEAD /events HTTP/1.1\r\n\r\n")
    assert got == 400 and int(headers["Content-Length"]) > 0 and body == b"", (headers, body)
    # A garbage Last-Event-ID is ignored: the stream opens and replays the history.
    for garbage in ("garbage", "\xff\xfe", "a:b:c", "0" * 250, "x" * 2000):
        client = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": garbage})
        assert client.status == 200 and opened(client), garbage
        client.close()
    # Nothing of that touched the bystander, the worker or the counts.
    for n in range(3):
        producer(topic, _event(n), partition=n)
    producer.flush()
    # three partitions: each event once, in no order across them
    assert sorted(json.loads(e["data"])["id"] for e in bystander.read_count(3)) == [
        "e0", "e1", "e2"]
    assert worker_pid(svc) == pid
    assert wait_for(lambda: svc.stats()["clients"] == 1)
    bystander.close()
    print("hostile request answers:", answers)


def test_hostile_records_are_skipped_counted_and_logged(topics, service, producer):
    topic = topics("records")["records"]
    svc = service([topic], expect_partitions=3, SSE_MAX_EVENT_BYTES=1024)
    client = SSEClient(f"{svc.url}/events?history=false")
    assert opened(client)
    hostile = [json.dumps(_event(0, size=2000)).encode(),         # offset 0: too large
               b"{not json", b"[1,2,3]", b'"a string"', b"null", b"NaN", b"\xff\xfe\xfa",
               b'{"type": ["a"]}', b"[" * 100_000]
    for value in hostile:
        producer(topic, value, partition=0)
    crlf = {"id": "x\r\nid: forged", "type": "t\r\nevent: forged\r\n\r\ndata: forged",
            "source": "s\nretry: 1", "data": {"n": 1}}
    producer(topic, crlf, partition=0)
    producer(topic, _event(2), partition=0)
    producer.flush()
    events = client.read_count(2)
    client.read_for(0.3)
    assert len(client.events) == 2 and 3000 <= client.parser.retry <= 3750
    forged, good = events
    assert forged["event"] == "t__event: forged____data: forged"
    assert json.loads(forged["data"]) == {**crlf, "timestamp": json.loads(forged["data"])["timestamp"]}
    assert json.loads(good["data"])["id"] == "e2"
    stats = svc.stats()
    assert stats["invalid_events"] == len(hostile)
    assert stats["invalid_per_topic"] == {topic: len(hostile)}
    log = svc.log_path.read_text()
    assert f"skipped invalid record at {topic}:0:0: value of" in log
    assert "exceeds SSE_MAX_EVENT_BYTES=1024" in log
    client.close()


# -- clients that never read --------------------------------------------------------------------
def read_fast(client, count, timeout=60.0) -> None:
    """Read `count` events at socket speed (SSEClient's incremental parsing is slow for 100 KB
    events), parsing once at the end."""
    chunks, seen, tail = [], 0, b""
    deadline = time.monotonic() + timeout
    client.sock.settimeout(1.0)
    while seen < count and time.monotonic() < deadline:
        try:
            chunk = client.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            continue
        if not chunk:
            break
        chunks.append(chunk)
        seen += (tail + chunk).count(b"\ndata: ") - tail.count(b"\ndata: ")
        tail = chunk[-8:]
    # The last event's data line may have come without the rest of it: take what follows.
    client.sock.settimeout(0.5)
    try:
        while chunk := client.sock.recv(1 << 20):
            chunks.append(chunk)
    except (socket.timeout, TimeoutError):
        pass
    client._consume(b"".join(chunks))


def test_a_client_that_never_reads_is_dropped_while_others_stream_on(topics, service, producer):
    topic = topics("slow")["slow"]
    svc = service([topic], expect_partitions=3, SSE_EVENT_BUFFER_SIZE=20)
    pid = worker_pid(svc)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", svc.port))
    slow.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n\r\n")
    normal = SSEClient(f"{svc.url}/events?history=false", timeout=30)
    assert opened(normal) and wait_for(lambda: svc.stats()["clients"] == 2)
    slow_port = slow.getsockname()[1]
    assert holds_connection(pid, svc.port, slow_port)
    reader = threading.Thread(target=read_fast, args=(normal, 100))
    reader.start()
    for n in range(100):
        producer(topic, _event(n, size=100_000), partition=n % 3)
    producer.flush()
    reader.join()
    stats = svc.stats()
    assert sorted(json.loads(e["data"])["id"] for e in normal.events) == sorted(
        f"e{n}" for n in range(100)), (stats, svc.log_tail(10))
    assert stats["slow_disconnects"] == 1 and stats["clients"] == 1
    # The server cut the connection even though the client still has not read a byte.
    assert wait_for(lambda: "not reading, connection cut" in svc.log_path.read_text(), 10)
    assert wait_for(lambda: not holds_connection(pid, svc.port, slow_port), 5)
    slow.settimeout(10)
    received, ended = 0, False
    try:
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
        ended = True
    except ConnectionResetError:
        ended = True
    assert ended and received < 100 * 100_000
    slow.close()
    normal.close()


# -- a storm of connects and disconnects ------------------------------------------------------
def _storm_one(svc, n):
    kind = n % 4
    if kind == 0:                       # a full stream, closed politely
        client = SSEClient(f"{svc.url}/events?history=false")
        client.read_until(lambda evs: client.parser.comments, timeout=10)
        client.close()
    elif kind == 1:                     # reset right after asking
        sock = socket.create_connection(("127.0.0.1", svc.port))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    elif kind == 2:                     # a stream, then reset
        client = SSEClient(f"{svc.url}/events?history=false&event_types=x.*")
        client.read_until(lambda evs: client.parser.comments, timeout=10)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.sock.close()
    else:                               # half a request, then gone
        sock = socket.create_connection(("127.0.0.1", svc.port))
        sock.sendall(b"GET /events?event_ty")
        sock.close()


def test_a_storm_of_1000_connects_leaves_nothing_behind(topics, service):
    topic = topics("storm")["storm"]
    svc = service([topic], expect_partitions=3, SSE_MAX_CLIENTS_PER_IP=1000,
                  SSE_HEARTBEAT_SECONDS=1)
    pid = worker_pid(svc)
    warm = SSEClient(f"{svc.url}/events")               # let lazy parts start before measuring
    opened(warm)
    warm.close()
    assert wait_for(lambda: svc.stats()["clients"] == 0)
    base_sockets, base_rss = sockets_of(pid), rss_mb(pid)
    figures = []
    for round_ in range(2):
        with ThreadPoolExecutor(50) as pool:
            list(pool.map(lambda n: _storm_one(svc, n), range(1000)))
        assert wait_for(lambda: svc.stats()["clients"] == 0, 15), svc.stats()
        assert wait_for(lambda: sockets_of(pid) <= base_sockets, 15), (sockets_of(pid), base_sockets)
        log = svc.log_path.read_text()
        connected, disconnected = log.count(" connected from "), log.count(" disconnected: ")
        assert connected == disconnected >= 1 + 500 * (round_ + 1), (connected, disconnected)
        figures.append(rss_mb(pid))
    stats = svc.stats()
    print(f"storm: sockets {base_sockets} -> {sockets_of(pid)}, RSS {base_rss:.1f} MB -> "
          f"{figures[0]:.1f} -> {figures[1]:.1f} MB, streams {stats['connections_total']}")
    assert figures[1] - figures[0] < 8, figures           # a second storm costs nothing lasting
    assert figures[0] - base_rss < 60, (base_rss, figures)
    assert get(svc, "/health")[0] == 200
