"""The README's nginx snippets, taken from the README as written, in front of the real service.

nginx is Debian's (scripts/install-proxies, run by scripts/test-setup). Each test runs its own
nginx (`-p` a temporary prefix, free ports), never the system's. Clients bind their sockets to
127.0.0.2 and 127.0.0.3 (all of 127.0.0.0/8 is loopback on Linux) to be two addresses, while
nginx reaches the gateway from 127.0.0.1.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e


def _nginx_binary() -> str | None:
    for found in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if found and os.access(found, os.X_OK):
            return found
    return None


@pytest.fixture(scope="module")
def nginx_binary():
    found = _nginx_binary()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (scripts/install-proxies installs it)")
        pytest.skip("nginx is not installed (scripts/install-proxies installs it)")
    return found


def readme_nginx() -> list[str]:
    """The README's nginx snippets, in order: one gateway, then many instances."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```nginx\n(.*?)```", text, re.S)


class Nginx:
    """nginx with `http_body` (server blocks) under a temporary prefix, on its own ports."""

    def __init__(self, binary, prefix, http_body: str):
        self.prefix = prefix
        temps = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            f"worker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/error.log info;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log off;\n{temps}\n{http_body}\n}}\n")
        self.process = subprocess.Popen(
            [binary, "-p", str(prefix), "-e", str(prefix / "error.log"),
             "-c", str(prefix / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def wait_listening(self, port, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx does not listen on {port}: {self.log()}")

    def log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def nginx(nginx_binary, tmp_path):
    started = []

    def start(http_body: str, port: int) -> Nginx:
        prefix = tmp_path / f"nginx-{len(started)}"
        prefix.mkdir()
        server = Nginx(nginx_binary, prefix, http_body)
        started.append(server)
        server.wait_listening(port)
        return server

    yield start
    for server in started:
        server.stop()


def one_gateway(gateway_port: int, port: int) -> str:
    """The README's 'Behind nginx' snippet, for a gateway on `gateway_port`, in a server."""
    location = readme_nginx()[0].replace("gateway:8084", f"127.0.0.1:{gateway_port}")
    return f"server {{\n    listen 127.0.0.1:{port};\n{location}}}\n"


def open_stream(port, source, headers=()) -> tuple[int, socket.socket]:
    """GET /events through nginx from `source`; the status and the socket, left open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    head = ["GET /events?history=false HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Accept: text/event-stream", *headers]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split()[1]), sock


def test_readme_nginx_counts_each_client_and_believes_no_client_named_address(
        service, topics, nginx):
    """With the README's snippet and TRUSTED_PROXIES naming nginx (as the README says), the
    per-address cap counts the clients behind nginx, not nginx, and an X-Forwarded-For a
    client sends itself does not make it another address."""
    names = topics("blog.posts")
    svc = service(list(names.values()), expect_partitions=3, TRUSTED_PROXIES="127.0.0.1/32",
                  SSE_MAX_CLIENTS_PER_IP="1")
    port = free_port()
    nginx(one_gateway(svc.port, port), port)
    opened = []
    try:
        status, sock = open_stream(port, "127.0.0.2")
        opened.append(sock)
        assert status == 200
        status, sock = open_stream(port, "127.0.0.3")      # another client behind nginx
        opened.append(sock)
        assert status == 200, "a second client was counted as nginx's address"
        status, sock = open_stream(port, "127.0.0.2", ["X-Forwarded-For: 198.51.100.7"])
        opened.append(sock)
        assert status == 429, "a client escaped its cap with an X-Forwarded-For of its own"
    finally:
        for sock in opened:
            sock.close()


def many_instances(gateway_ports, port: int) -> str:
    """The README's 'Many instances' snippet, for gateways on `gateway_ports`."""
    snippet = readme_nginx()[1]
    for readme_address, gateway_port in zip(("10.0.0.11:8084", "10.0.0.12:8084"), gateway_ports,
                                            strict=True):
        snippet = snippet.replace(readme_address, f"127.0.0.1:{gateway_port}")
    return snippet.replace("server {", f"server {{\n    listen 127.0.0.1:{port};", 1)


EVENTS = (b"GET /events HTTP/1.1\r\nHost: gateway.example\r\n"
          b"Accept: text/event-stream\r\nConnection: close\r\n\r\n")


def read_answer(port, request: bytes = EVENTS) -> tuple[str, bytes]:
    """The answer to `request` (a GET /events) on `port`: the head and the body, read until the
    connection ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def assert_told_to_retry(port) -> None:
    """GET /events through the proxy on `port` is a 200 event stream that says `retry:` (what a
    browser's EventSource needs to come back), not the proxy's error page."""
    head, content = read_answer(port)
    status_line, *lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert status_line.split()[1] == "200", head
    assert headers["content-type"].split(";")[0] == "text/event-stream", head
    assert re.search(rb"^retry: \d+$", content, re.M), content


@pytest.mark.parametrize("snippet", ["one gateway", "many instances"])
def test_readme_nginx_has_eventsource_retry_while_the_gateway_is_down(nginx, snippet):
    """No gateway behind nginx (stopped, restarting): an EventSource must be told to retry, not
    shown nginx's 502 page, after which a browser never reconnects (WHATWG HTML: a status
    other than 200, or a type other than text/event-stream, fails the connection for good)."""
    down = [free_port(), free_port()]          # nothing listens there
    port = free_port()
    body = one_gateway(down[0], port) if snippet == "one gateway" else many_instances(down, port)
    nginx(body, port)
    assert_told_to_retry(port)
