"""Ctrl-C in the terminal of `gunicorn -c gunicorn.conf.py` (and so of `make run`): the
SIGINT reaches the master and every worker of the process group at once, real gunicorn, no
Kafka needed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import free_port, wait_livez

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_stops_every_worker_at_once_without_a_traceback(tmp_path):
    """The master passes the SIGINT on to workers that got the terminal's already: the second
    sys.exit(0), in a greenlet during the interpreter's exit, printed a traceback and hung the
    worker until the master's SIGKILL 10 s later (2 of 4 Ctrl-Cs; a packaging audit)."""
    for run in range(4):
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BROKERS": "127.0.0.1:1",
               "KAFKA_TOPICS": "ctrl.c", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
               "GRPC_PORT": "0", "WORKERS": "2", "PYTHONUNBUFFERED": "1"}
        log = tmp_path / f"gunicorn-{run}.log"
        with open(log, "wb") as out:
            master = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_livez(port, master, log)
            started = time.monotonic()
            os.killpg(master.pid, signal.SIGINT)
            master.wait(20)
            took = time.monotonic() - started
        finally:
            if master.poll() is None:
                os.killpg(master.pid, signal.SIGKILL)
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "SIGKILL" not in text, text[-3000:]
        assert took < 8, (took, text[-3000:])

