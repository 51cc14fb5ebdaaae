"""The README's Caddy snippet, taken from the README as written, in front of the real service.

Caddy is built at a pinned version by scripts/install-caddy (run by scripts/test-setup) into
.cache/bin. Each test runs its own Caddy, never a system one: admin endpoint off, bound to
loopback. The snippet's site address becomes plain HTTP on a free port (for any Host), its two
upstreams the test's gateways. Clients bind to 127.0.0.2 and 127.0.0.3 to be two addresses.
"""
import os
import re
import socket
import subprocess

import pytest

from tests.e2e.test_haproxy import counted_apart_and_on_time, start_proxy, stop_proxies
from tests.e2e.test_nginx import assert_told_to_retry, open_stream
from tests.harness import ROOT, eventually, free_port

pytestmark = pytest.mark.e2e

CADDY = ROOT / ".cache" / "bin" / "caddy"
UPSTREAMS = "10.0.0.11:8084 10.0.0.12:8084"


@pytest.fixture(scope="module")
def caddy_binary():
    if not CADDY.exists():
        subprocess.run([str(ROOT / "scripts" / "install-caddy")], check=False, timeout=1200)
    if CADDY.exists():
        return CADDY
    if os.environ.get("CI") == "true":
        pytest.fail("Caddy is not built (scripts/install-caddy builds it with Go)")
    pytest.skip("Caddy is not built (scripts/install-caddy builds it with Go)")


def readme_caddyfile() -> str:
    [config] = re.findall(r"```caddy\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return config


@pytest.fixture
def caddy(caddy_binary, tmp_path):
    started = []

    def start(gateway_ports: list[int], port: int) -> subprocess.Popen:
        config = readme_caddyfile()
        assert "sse.example.com {" in config and UPSTREAMS in config
        config = config.replace("sse.example.com {", f"http://:{port} {{")  # any Host
        config = config.replace(UPSTREAMS, " ".join(f"127.0.0.1:{p}" for p in gateway_ports))
        config = "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n\n" + config
        (tmp_path / "Caddyfile").write_text(config)
        env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CONFIG_HOME": str(tmp_path / "config")}
        return start_proxy([str(caddy_binary), "run", "--config", str(tmp_path / "Caddyfile"),
                            "--adapter", "caddyfile"], tmp_path / "caddy.log", port, "Caddy",
                           started, env)

    yield start
    stop_proxies(started)


def test_readme_caddy_counts_each_client_delivers_at_once_and_passes_closes_on(
        service, topics, producer, caddy):
    """With the snippet and TRUSTED_PROXIES naming Caddy: each client behind it is its own
    address, none escapes with an X-Forwarded-For of its own, events come as soon as they
    do directly, and a client that leaves gives its place back at once (the README says
    Caddy passes a client's close on: unlike HAProxy, no heartbeat is needed to notice)."""
    topic = topics("caddy")["caddy"]
    svc = service([topic], expect_partitions=3, TRUSTED_PROXIES="127.0.0.1/32",
                  SSE_MAX_CLIENTS_PER_IP="1")
    port = free_port()
    caddy([svc.port], port)
    opened = []
    try:
        other = counted_apart_and_on_time(port, svc, topic, producer, "Caddy", opened)
        assert svc.stats()["clients"] == 3
        other.close()
        assert eventually(lambda: svc.stats()["clients"] == 2, 5), \
            "a client's close did not reach the gateway through Caddy"
        status, again = open_stream(port, "127.0.0.3")
        opened.append(again)
        assert status == 200, "the address that left still held its place"
    finally:
        for sock in opened:
            sock.close()


def test_readme_caddy_tells_eventsource_to_retry_while_the_gateway_is_down(caddy):
    """No gateway behind Caddy: a browser's EventSource must get a stream that says to retry
    (after the snippet's lb_try_duration), not Caddy's empty 502, after which it never
    reconnects."""
    port = free_port()
    caddy([free_port(), free_port()], port)         # nothing listens on either
    assert_told_to_retry(port)


def test_readme_caddy_sends_every_stream_to_the_instance_that_is_up(service, topics, caddy):
    """Two instances; one stops after Caddy's last health check: with the snippet's
    lb_try_duration every stream opens on the other one, none gets the snippet's `retry:`
    answer (without it, about half do, and wait out the retry)."""
    names = list(topics("caddy2").values())
    first = service(names, expect_partitions=3)
    second = service(names, expect_partitions=3)
    port = free_port()
    caddy([first.port, second.port], port)
    first.stop()
    answers = [_open_and_read(port) for _ in range(10)]
    assert [status for status, _ in answers] == [200] * 10
    stand_ins = sum(b"the gateway is unavailable" in seen for _, seen in answers)
    assert stand_ins == 0, f"{stand_ins} of 10 streams were sent to the stopped instance"


def _open_and_read(port: int, wait: float = 15.0) -> tuple[int, bytes]:
    """GET /events through Caddy: the status, and what came until the end of the answer's
    head and first event or comment (`wait` seconds at most: on a loaded machine, with the
    first instance stopped, one answer took more than 2 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(f"GET /events?history=false HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Accept: text/event-stream\r\n\r\n".encode())
        seen = b""
        try:
            while chunk := sock.recv(65536):
                seen += chunk
                if b"\n\n" in seen.partition(b"\r\n\r\n")[2]:
                    break
        except TimeoutError:
            pass
    assert seen, f"nothing came through Caddy within {wait} s"
    return int(seen.split()[1]), seen
