"""scripts/run-demo (`make run`) against the test Kafka: what it says when the gateway fails."""
import os
import socket
import subprocess

import pytest

from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_make_run_stops_and_says_so_when_the_gateway_cannot_start(kafka):
    """With HTTP_PORT held by another process the gateway exits at once ('HTTP_PORT=...: ...
    is in use by another process'), but the demo waited 30 s for /health, then printed 'The
    gateway is running. Try: ...' and went on producing, with no gateway, until Ctrl-C."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_", "GRPC_", "AUTH_"))}
    env.update(KAFKA_BROKERS=kafka.bootstrap, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
               GRPC_PORT=str(free_port()), WORKERS="1")
    demo = subprocess.Popen([ROOT / "scripts" / "run-demo"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = demo.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, 15)
        _, err = demo.communicate(timeout=15)
        pytest.fail(f"the demo went on without its gateway:\n{err[-2000:]}")
    finally:
        held.close()
    assert demo.returncode != 0, err
    assert f"HTTP_PORT={port}: 127.0.0.1:{port} is in use" in err, err
    assert "The gateway is running" not in err, err
    assert "the gateway stopped" in err, err
