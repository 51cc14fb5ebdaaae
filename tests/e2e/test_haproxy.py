"""The README's HAProxy snippet, taken from the README as written, in front of the real service.

HAProxy is Debian's (scripts/install-proxies, run by scripts/test-setup). Each test runs its own
HAProxy in the foreground on free ports, never the system's; the snippet's TLS `bind` line
becomes a plain one on loopback. Clients bind to 127.0.0.2 and 127.0.0.3 to be two addresses.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time

import pytest

from tests.e2e.test_nginx import assert_told_to_retry, open_stream, read_answer
from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def haproxy_binary():
    for found in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if found and os.access(found, os.X_OK):
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("HAProxy is not installed (scripts/install-proxies installs it)")
    pytest.skip("HAProxy is not installed (scripts/install-proxies installs it)")


def readme_snippets() -> tuple[str, str]:
    """The README's HAProxy configuration and its errorfile (head lines then given CRLF)."""
    text = (ROOT / "README.md").read_text()
    [config] = re.findall(r"```haproxy\n(.*?)```", text, re.S)
    [answer] = re.findall(r"```http\n(.*?)```", text, re.S)
    head, _, body = answer.partition("\n\n")
    return config, head.replace("\n", "\r\n") + "\r\n\r\n" + body


@pytest.fixture
def haproxy(haproxy_binary, tmp_path):
    started = []

    def start(gateway_port: int, port: int) -> subprocess.Popen:
        config, answer = readme_snippets()
        (tmp_path / "sse-unavailable.http").write_text(answer, newline="")
        config = re.sub(r"bind :443 ssl crt \S+ alpn \S+", f"bind 127.0.0.1:{port}", config)
        config = config.replace("10.0.0.11:8084", f"127.0.0.1:{gateway_port}")
        config = config.replace("/etc/haproxy/errors/", f"{tmp_path}/")
        (tmp_path / "haproxy.cfg").write_text(config)
        return start_proxy([haproxy_binary, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                           tmp_path / "haproxy.log", port, "HAProxy", started)

    yield start
    stop_proxies(started)


def start_proxy(command, log_path, port: int, name: str, started: list, env=None):
    """`command` (a proxy in the foreground, its output to `log_path`) once it listens on
    `port`; added to `started` for stop_proxies."""
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    started.append((process, log))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log_path.read_text(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} does not listen on {port}")


def stop_proxies(started: list) -> None:
    for process, log in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Arrivals(threading.Thread):
    """When each event id first appears on `sock` (monotonic seconds)."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.seen, self.buffer = sock, {}, b""

    def run(self):
        self.sock.settimeout(30)
        try:
            while chunk := self.sock.recv(65536):
                now = time.monotonic()
                self.buffer += chunk
                for found in re.findall(rb'"id":"(h\d+)"', self.buffer):
                    self.seen.setdefault(found.decode(), now)
        except OSError:
            pass


def counted_apart_and_on_time(port, svc, topic, producer, proxy: str, opened: list):
    """Through the proxy on `port` (before `svc`, whose TRUSTED_PROXIES name it and whose
    SSE_MAX_CLIENTS_PER_IP is 1): each client is its own address, none escapes with an
    X-Forwarded-For of its own, and events come as soon as they do directly. Every socket
    opened is put in `opened`; the second client's is returned, still open."""
    status, through = open_stream(port, "127.0.0.2")
    opened.append(through)
    assert status == 200
    status, other = open_stream(port, "127.0.0.3")
    opened.append(other)
    assert status == 200, f"a second client was counted as {proxy}'s address"
    status, sock = open_stream(port, "127.0.0.2", ["X-Forwarded-For: 198.51.100.7"])
    opened.append(sock)
    assert status == 429, "a client escaped its cap with an X-Forwarded-For of its own"
    status, direct = open_stream(svc.port, "127.0.0.1")
    opened.append(direct)
    assert status == 200
    readers = [Arrivals(through), Arrivals(direct)]
    for reader in readers:
        reader.start()
    time.sleep(0.5)
    for n in range(8):
        producer(topic, {"id": f"h{n}", "type": "proxy.checked", "source": proxy,
                         "data": {"n": n}}, partition=n % 3)
        producer.flush()
        time.sleep(0.1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and min(len(r.seen) for r in readers) < 8:
        time.sleep(0.05)
    proxied, plain = (r.seen for r in readers)
    assert sorted(proxied) == sorted(plain) == [f"h{n}" for n in range(8)]
    late = statistics.median(proxied[i] - plain[i] for i in plain)
    assert late < 0.1, f"through {proxy} events came {late * 1000:.0f} ms late (median)"
    return other


def test_readme_haproxy_counts_each_client_and_delivers_at_once(service, topics, producer,
                                                                haproxy):
    """With the snippet and TRUSTED_PROXIES naming HAProxy: each client behind it is its own
    address, none escapes with an X-Forwarded-For of its own, and events come through as
    soon as directly (without `option http-no-delay`, ~200 ms late each)."""
    topic = topics("haproxy")["haproxy"]
    svc = service([topic], expect_partitions=3, TRUSTED_PROXIES="127.0.0.1/32",
                  SSE_MAX_CLIENTS_PER_IP="1")
    port = free_port()
    haproxy(svc.port, port)
    opened = []
    try:
        counted_apart_and_on_time(port, svc, topic, producer, "HAProxy", opened)
    finally:
        for sock in opened:
            sock.close()


def test_a_proxy_protocol_header_is_refused_saying_so(service, topics):
    """HAProxy's `send-proxy` (not in the snippet): the gateway's 400 says what to change."""
    svc = service([topics("pp")["pp"]], expect_partitions=3)
    head, body = read_answer(svc.port, b"PROXY TCP4 203.0.113.9 127.0.0.1 35450 8084\r\n"
                                       b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 "), head
    assert b"PROXY protocol" in body and b"send-proxy" in body and b"203.0.113.9" not in body


def test_readme_haproxy_tells_eventsource_to_retry_while_the_gateway_is_down(haproxy):
    """No gateway behind HAProxy: a browser's EventSource must get a stream that says to
    retry, not HAProxy's 503 page, after which it never reconnects."""
    port = free_port()
    haproxy(free_port(), port)                  # nothing listens on the gateway's port
    assert_told_to_retry(port)
