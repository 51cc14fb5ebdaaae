"""The bytes on the wire once the broker writes to the sockets itself (Outbox.go_direct).

An HTTP/1.1 stream is a well-formed chunked body (every chunk's size is exact, the stream ends
with the last chunk); an HTTP/1.0 stream is the bare event stream, ended by the close. Both
carry every event once, in order, after history and a resume alike.
"""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.sse import SSEParser

pytestmark = pytest.mark.e2e


def _request(svc, version: str, path: str = "/events?history=false") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    version, _, proxied = version.partition(" ")
    extra = "X-Forwarded-Proto: https\r\n" if proxied else ""   # a local TLS proxy's
    sock.sendall(f"GET {path} {version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    return sock


def _read_until(sock, done, timeout=15.0) -> bytes:
    raw, deadline = b"", time.monotonic() + timeout
    while not done(raw) and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        raw += chunk
    return raw


def _dechunk(body: bytes) -> tuple[bytes, bool]:
    """Strictly: every chunk is `<hex size>\\r\\n<size bytes>\\r\\n`; True once the last chunk."""
    out, rest = b"", body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        assert sep, f"unterminated chunk size line {size_line[:40]!r}"
        size = int(size_line, 16)
        if size == 0:
            assert rest in (b"", b"\r\n"), f"bytes after the last chunk: {rest[:40]!r}"
            return out, True
        assert len(rest) >= size + 2, "a chunk shorter than its size"
        assert rest[size:size + 2] == b"\r\n", f"chunk of {size} bytes not followed by CRLF"
        out, rest = out + rest[:size], rest[size + 2:]
    return out, False


def _seqs(stream: bytes) -> list[int]:
    events = SSEParser().feed(stream)
    return [json.loads(e["data"])["data"]["seq"] for e in events if e["event"] == "wire.test"]


def _produce(producer, topic, seqs):
    for seq in seqs:
        producer(topic, {"type": "wire.test", "source": "e2e", "data": {"seq": seq}}, partition=0)
    producer.flush()


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1 behind-tls-proxy"])
def test_every_event_arrives_once_in_order_in_a_well_formed_body(topics, service, producer,
                                                                 version):
    topic = topics("wire", partitions=1)["wire"]
    svc = service([topic], expect_partitions=1, SSE_DRAIN_SECONDS=0)
    sock = _request(svc, version)
    head = _read_until(sock, lambda raw: b": client " in raw)
    head, _, body = head.partition(b"\r\n\r\n")
    chunked = b"transfer-encoding: chunked" in head.lower()
    assert chunked == version.startswith("HTTP/1.1"), head
    _produce(producer, topic, range(300))

    def stream_of(raw):
        return _dechunk(raw)[0] if chunked else raw

    body += _read_until(sock, lambda raw: len(_seqs(stream_of(body + raw))) >= 300)
    assert _seqs(stream_of(body)) == list(range(300))
    svc.stop()
    body += _read_until(sock, lambda raw: False, timeout=10)
    sock.close()
    if chunked:
        stream, ended = _dechunk(body)
        assert ended, "the stream did not end with the last chunk"
    else:
        stream = body
    assert _seqs(stream) == list(range(300))
    assert b"closing: server shutting down" in stream


def test_an_http_1_1_request_without_host_is_400_json(topics, service):
    """RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host; gunicorn
    served it, streams included (an HTTP audit). HTTP/1.0 needs none."""
    topic = topics("wire", partitions=1)["wire"]
    svc = service([topic], expect_partitions=1)
    for path in ("/health", "/events"):
        with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\n\r\n".encode())
            raw = _read_until(sock, lambda raw: b"}" in raw, timeout=5)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), raw[:300]
        assert json.loads(body)["error"] == "bad_request" and b"Host" in body
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert _read_until(sock, lambda raw: False, timeout=5).split(b" ")[1] in (b"200", b"503")
