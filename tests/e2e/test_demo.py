"""scripts/run-demo (`make run`) against the test Kafka: what it says when the gateway fails."""
import http.server
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args):
        pass


def _demo(kafka, port: int, **more: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_", "GRPC_", "AUTH_"))}
    env.update(KAFKA_BROKERS=kafka.bootstrap, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
               GRPC_PORT=str(free_port()), WORKERS="1", DEMO_RATE="1", **more)
    return subprocess.Popen([ROOT / "scripts" / "run-demo"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _until_running(demo: subprocess.Popen) -> list[str]:
    """What the demo said until its banner (its last line: 'Ctrl-C stops everything')."""
    said = []
    for line in demo.stderr:
        said.append(line)
        if "Ctrl-C stops everything" in line:
            break
    return said


@pytest.mark.parametrize("holder", ["silent", "answering"])
def test_make_run_stops_and_says_so_when_its_port_is_held(kafka, holder):
    """With HTTP_PORT held by another process the gateway exits at once, but the demo waited
    30 s for /health, then printed 'The gateway is running. Try: ...' and went on producing,
    with no gateway, until Ctrl-C; and when the holder answered /health (another `make run`
    still up), at once, its curl lines then reaching the other gateway."""
    if holder == "silent":
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        port, close = held.getsockname()[1], held.close
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]

        def close():
            server.shutdown()
            server.server_close()
    demo = _demo(kafka, port)
    try:
        _, err = demo.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, 15)
        _, err = demo.communicate(timeout=15)
        pytest.fail(f"the demo went on without its gateway:\n{err[-2000:]}")
    finally:
        close()
    assert demo.returncode == 1, err
    assert f"HTTP_PORT={port}: something already listens on 127.0.0.1:{port}" in err, err
    assert "The gateway is running" not in err and "Kafka" not in err, err


def test_make_run_stops_and_says_so_when_the_gateway_dies_later(kafka):
    """The demo waited for its producer as for its gateway: a gateway that died left the
    producer writing, and `make run` up, until Ctrl-C."""
    demo = _demo(kafka, free_port())
    said = []
    try:
        said = _until_running(demo)
        master = subprocess.run(["pgrep", "-f", "-s", str(demo.pid), "gunicorn"],
                                capture_output=True, text=True).stdout.split()
        assert master, said
        for pid in master:
            os.kill(int(pid), signal.SIGKILL)
        started = time.monotonic()
        _, err = demo.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, 15)
        _, err = demo.communicate(timeout=15)
        pytest.fail(f"the demo went on without its gateway:\n{''.join(said)}{err[-2000:]}")
    assert demo.returncode == 1, err
    assert "the gateway was killed (signal 9)" in err and time.monotonic() - started < 10, err


def test_make_run_says_each_configuration_warning_once(kafka, tmp_path):
    """The demo's own --check-config printed the auth warnings, and the gateway then logged
    them again: 'AUTH_TICKET_SECRET is not set' twice, where the README says once (a README
    walk)."""
    demo = _demo(kafka, free_port(), AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256",
                 AUTH_JWT_SECRET="s" * 40)
    try:
        said = _until_running(demo)
    finally:
        os.killpg(demo.pid, 15)
        demo.communicate(timeout=30)
    assert sum("AUTH_TICKET_SECRET is not set" in line for line in said) == 1, "".join(said)
