"""Clients other than a browser, end to end (real Kafka, real gunicorn): third-party SSE
libraries (httpx-sse from PyPI, @microsoft/fetch-event-source from npm) see heartbeats and the
opening lines as nothing to dispatch, a compressing proxy (npm compression + http-proxy)
passes the stream through at once, and a client that sends more than its request is still
noticed at once when it leaves."""
import json
import re
import os
import socket
import subprocess
import time

import pytest

from tests import npm
from tests.harness import eventually

pytestmark = pytest.mark.e2e


def _event(n):
    return {"id": f"e{n}", "type": "link.clicked", "source": "clients", "data": {"n": n}}


def _httpx_sse():
    try:
        import httpx
        import httpx_sse
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("httpx-sse is not installed: pip install -e '.[test]'")
    return httpx, httpx_sse


def test_httpx_sse_hands_over_no_empty_message_for_heartbeats_or_opening_lines(
        topics, service, producer):
    httpx, httpx_sse = _httpx_sse()
    topic = topics("lib")["lib"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=1)
    messages, raw = [], []
    with httpx.Client(timeout=httpx.Timeout(10.0, read=10.0)) as http:
        with httpx_sse.connect_sse(http, "GET", f"{svc.url}/events?history=false") as source:
            stream = source.iter_sse()
            eventually(lambda: svc.stats()["clients"] == 1)
            producer(topic, _event(1), partition=0)
            producer.flush()
            deadline = time.monotonic() + 4.5          # a live event, then heartbeats after it
            sent_second = False
            for sse in stream:
                messages.append(sse)
                if sse.data and not sent_second:
                    sent_second = True
                    time.sleep(2.5)                    # at least two heartbeats go by
                    producer(topic, _event(2), partition=1)
                    producer.flush()
                if sum(1 for m in messages if m.data) == 2 or time.monotonic() > deadline:
                    break
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n\r\n")
        end = time.monotonic() + 2.5
        sock.settimeout(0.5)
        while time.monotonic() < end:
            try:
                raw.append(sock.recv(65536))
            except (socket.timeout, TimeoutError):
                pass
    wire = b"".join(raw)
    advised = re.search(rb"retry: (\d+)\n", wire)
    assert wire.count(b": heartbeat") >= 2 and advised and 3000 <= int(advised[1]) <= 3750, wire
    empty = [m for m in messages if not m.data]
    assert [json.loads(m.data)["id"] for m in messages if m.data] == ["e1", "e2"], messages
    # The one message with no data is the opening id-only block (see the README): it carries
    # the stream's starting position; heartbeats and `retry:` add none.
    assert len(empty) == 1 and messages[0] is empty[0] and empty[0].id, messages
    assert 3000 <= empty[0].retry <= 3750


FETCH_EVENT_SOURCE = "@microsoft/fetch-event-source@2.0.1"
# The library's own parser, driven exactly as its fetchEventSource() drives it (that function
# itself needs a browser's window and document).
PROBE_JS = """
const {getBytes, getLines, getMessages} = require(process.argv[3]);
const messages = [];
fetch(process.argv[2]).then(res => getBytes(res.body, getLines(getMessages(
  id => {}, retry => {},
  msg => messages.push({id: msg.id, data: msg.data, retry: msg.retry ?? null})))))
  .catch(e => { console.error(String(e)); process.exit(2); });
setTimeout(() => { console.log(JSON.stringify(messages)); process.exit(0); },
           Number(process.argv[4]));
"""


@pytest.fixture(scope="session")
def fetch_event_source(tmp_path_factory):
    """The parser module of @microsoft/fetch-event-source, installed from npm."""
    where = tmp_path_factory.mktemp("npm")
    node = npm.install(FETCH_EVENT_SOURCE, where)
    probe = where / "probe.js"
    probe.write_text(PROBE_JS)
    parse = where / "node_modules/@microsoft/fetch-event-source/lib/cjs/parse.js"
    return node, probe, parse


def test_fetch_event_source_hands_over_no_empty_message_for_heartbeats_or_opening_lines(
        topics, service, producer, fetch_event_source):
    node, probe, parse = fetch_event_source
    topic = topics("fes")["fes"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=1)
    run = subprocess.Popen([node, str(probe), f"{svc.url}/events?history=false", str(parse),
                            "6000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert eventually(lambda: svc.stats()["clients"] == 1)
    producer(topic, _event(1), partition=0)
    producer.flush()
    time.sleep(2.5)                                    # heartbeats after an id was seen
    producer(topic, _event(2), partition=1)
    producer.flush()
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    messages = json.loads(out)
    assert [json.loads(m["data"])["id"] for m in messages if m["data"]] == ["e1", "e2"], messages
    empty = [m for m in messages if not m["data"]]
    assert empty == [messages[0]] and empty[0]["id"] and 3000 <= empty[0]["retry"] <= 3750, messages


# -- a compressing proxy in front (Express's compression(), as dev servers have) ------------------
COMPRESSING_PROXY = ("compression@1.8.2", "http-proxy@1.18.1")
PROXY_JS = """
const http = require('http');
const compression = require(process.argv[2] + '/node_modules/compression');
const httpProxy = require(process.argv[2] + '/node_modules/http-proxy');
const proxy = httpProxy.createProxyServer({target: process.argv[3]});
const squeeze = compression();
const server = http.createServer((req, res) => squeeze(req, res, () => proxy.web(req, res)));
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


def test_a_compressing_proxy_passes_the_stream_through_at_once(tmp_path, topics, service,
                                                               producer):
    """Express's compression() in front (webpack-dev-server, an app's own proxy): a stream
    without Cache-Control no-transform was held in its gzip buffer, and EventSource never
    opened; now the proxy leaves it alone and each event passes at once."""
    node = None
    for spec in COMPRESSING_PROXY:
        node = npm.install(spec, tmp_path)
    (tmp_path / "proxy.js").write_text(PROXY_JS)
    topic = topics("gz")["gz"]
    svc = service([topic], expect_partitions=3)
    proxy = subprocess.Popen([node, str(tmp_path / "proxy.js"), str(tmp_path), svc.url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n"
                         b"Accept: text/event-stream\r\nAccept-Encoding: gzip, deflate\r\n\r\n")
            assert eventually(lambda: svc.stats()["clients"] == 1)
            producer(topic, _event(1), partition=0)
            producer.flush()
            wire, end = b"", time.monotonic() + 5
            sock.settimeout(0.5)
            while b'"id":"e1"' not in wire and time.monotonic() < end:
                try:
                    wire += sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    pass
    finally:
        proxy.kill()
        proxy.wait(5)
    head = wire.partition(b"\r\n\r\n")[0].lower()
    assert b"200 ok" in head and b"content-encoding" not in head, wire[:300]
    assert b'"id":"e1"' in wire, wire[:300]


# -- clients that send more than a request ------------------------------------------------------
def _open(svc) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    sock.sendall(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n\r\n")
    seen = b""
    while b"client " not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    assert eventually(lambda: svc.stats()["clients"] == 1)
    sock.settimeout(0.3)
    try:                                   # read what else is there, so that close sends a FIN
        while sock.recv(65536):
            pass
    except (socket.timeout, TimeoutError):
        pass
    return sock


AFTER = {
    "a stray byte, then close": (b"x", "close"),
    "a pipelined request, then close": (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "close"),
    "bytes, then half-close": (b"hello\r\n", "half"),
    "half-close": (b"", "half"),
}


@pytest.mark.parametrize("case", list(AFTER))
def test_a_close_is_noticed_at_once_whatever_came_after_the_request(topics, service, case):
    extra, how = AFTER[case]
    topic = topics("gone")["gone"]
    svc = service([topic], expect_partitions=3, SSE_HEARTBEAT_SECONDS=3600)
    sock = _open(svc)
    if extra:
        sock.sendall(extra)
        time.sleep(0.5)                    # the server has seen the bytes before the close
    assert svc.stats()["clients"] == 1
    started = time.monotonic()
    if how == "close":
        sock.close()
    else:
        sock.shutdown(socket.SHUT_WR)
    assert eventually(lambda: svc.stats()["clients"] == 0, 3.0), f"{case}: the slot is still held"
    took = time.monotonic() - started
    print(f"\n{case}: the slot was given back {took * 1000:.0f} ms after the close")
    assert took < 1.5, f"{case}: noticed after {took:.2f} s"
    if how == "half":
        sock.close()
