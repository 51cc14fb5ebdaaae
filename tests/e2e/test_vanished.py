"""A client that vanishes without a FIN or an RST (its link goes down: a dead network, a
laptop closed) is noticed soon after its next heartbeat, and its stream slot freed: the
gateway sets TCP_USER_TIMEOUT (web/worker.py). Before, its heartbeats waited in the socket's
send buffer and TCP retransmitted for about 15 minutes.

The client runs in a network namespace joined to ours by a veth pair; taking the pair's link
down drops every packet silently, as a vanished client does. Needs root and iproute2."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.harness import http_json

CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET /events?history=false HTTP/1.1\\r\\nHost: g\\r\\nAccept: text/event-stream\\r\\n\\r\\n")
got = b""
while b"retry:" not in got:
    got += s.recv(4096)
print("connected", flush=True)
time.sleep(120)
"""


def _ip(*args, ns=None):
    command = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@pytest.fixture
def far_side():
    """(namespace, its link's name, our address on the link)."""
    if not shutil.which("ip"):
        if os.environ.get("CI") == "true":
            pytest.fail("iproute2 (ip) is missing: apt-get install iproute2")
        pytest.skip("needs iproute2 (ip) for a network namespace")
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace (a privilege, not a tool)")
    tag = f"{os.getpid() % 10000}"
    ns, near, far = f"sse-vanish-{tag}", f"sv{tag}a", f"sv{tag}b"
    net = f"10.231.{os.getpid() % 250}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        pytest.skip(f"this machine allows no network namespace: {made.stderr.strip()}")
    try:
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", far, "netns", ns)
        _ip("addr", "add", f"{net}.1/30", "dev", near)
        _ip("link", "set", near, "up")
        _ip("addr", "add", f"{net}.2/30", "dev", far, ns=ns)
        _ip("link", "set", far, "up", ns=ns)
        yield ns, far, f"{net}.1"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", near], capture_output=True, timeout=10)


def _clients(svc) -> int:
    return http_json(svc.url + "/stats")[1]["clients"]


def test_a_client_whose_link_dies_is_dropped_after_its_next_heartbeat(service, topics,
                                                                      far_side):
    ns, far, address = far_side
    svc = service(list(topics("vanish").values()), expect_partitions=3, HTTP_HOST="0.0.0.0",
                  SSE_HEARTBEAT_SECONDS=1)              # TCP_USER_TIMEOUT: the 10 s floor
    client = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
                               address, str(svc.port)], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "connected"
        assert _clients(svc) == 1
        time.sleep(2)
        assert _clients(svc) == 1                        # alive: heartbeats are acknowledged
        _ip("link", "set", far, "down", ns=ns)           # from now on, silence
        down = time.monotonic()
        while _clients(svc) and time.monotonic() - down < 40:
            time.sleep(0.5)
        gone_after = time.monotonic() - down
        assert _clients(svc) == 0, "the vanished client still holds its stream after 40 s"
        assert 9 <= gone_after <= 20, gone_after         # 10 s unacknowledged, plus a beat
        assert "disconnected: client not reading or unreachable" in svc.log_path.read_text()
    finally:
        client.kill()
        client.wait()
