"""The instance directory removed under a running instance (a cleaner of /tmp or /dev/shm,
systemd-logind's RemoveIPC=yes), against real gunicorn with two workers (no Kafka needed).
It used to go unnoticed until a worker ended, and then the master failed in child_exit and
ended the instance: every stream, every port."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import children, eventually, free_port, http_json, wait_livez

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _workers(master, without=frozenset()):
    """The master's two workers, none of `without`; None until then."""
    found = children(master.pid)
    return found if len(found) == 2 and not found & set(without) else None


def _until(check, timeout: float, what: str, log: Path):
    found = eventually(check, timeout, 0.2)
    if not found:
        raise AssertionError(f"{what} within {timeout:.0f} s; the log:\n"
                             f"{log.read_text(errors='replace')[-4000:]}")
    return found


def _ok(answer):
    return answer if answer[0] == 200 else None


@pytest.fixture
def instance(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BROKERS": "127.0.0.1:1",
           "KAFKA_TOPICS": "dir.t", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
           "GRPC_PORT": "0", "WORKERS": "2", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        master = subprocess.Popen([sys.executable, "-m", "web.cli"], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_livez(port, master, log_path, 30)
            yield master, port, log_path
        finally:
            if master.poll() is None:
                master.send_signal(signal.SIGTERM)
                master.wait(30)


def _sockets(path: Path) -> int:
    return len(list((path / "peers").glob("*.sock")))


def _running(master, log: Path) -> tuple[Path, set[int]]:
    """The instance directory and the two workers, once both have joined it."""
    path = Path(_until(lambda: re.search(r"workers share the instance directory (\S+)",
                                         log.read_text(errors="replace")), 10, "the directory",
                       log).group(1))
    workers = _until(lambda: _workers(master), 20, "two workers", log)
    _until(lambda: _sockets(path) == 2, 20, "both workers", log)
    time.sleep(2)       # their sockets come before their metrics' files: let those be made
    return path, workers


def test_a_removed_instance_directory_is_said_and_a_sighup_makes_it_again(instance):
    master, port, log = instance
    path, old = _running(master, log)
    shutil.rmtree(path)
    _until(lambda: f"send SIGHUP to the master (kill -HUP {master.pid})" in
           log.read_text(errors="replace"), 10, "a worker saying what to do", log)
    assert master.poll() is None
    master.send_signal(signal.SIGHUP)
    _until(lambda: _workers(master, old), 30, "two new workers", log)
    _until(lambda: _sockets(path) == 2, 20, "both new workers in the directory", log)
    assert "was removed under the running instance (by a cleaner of" in \
        log.read_text(errors="replace")
    assert _until(lambda: _ok(http_json(f"http://127.0.0.1:{port}/stats")), 10, "/stats 200",
                  log)[1]["limiter"]["streams"] == 0
    assert "Traceback" not in log.read_text(errors="replace")


def test_a_worker_that_ends_after_the_directory_went_does_not_end_the_instance(instance):
    """The master makes the directory again as it reaps the worker (it failed there, in
    child_exit, and exited: every stream, every port), and its replacement starts."""
    master, port, log = instance
    path, old = _running(master, log)
    shutil.rmtree(path)
    victim, survivor = sorted(old)
    os.kill(victim, signal.SIGKILL)
    newcomer = _until(lambda: (_workers(master, {victim}) or set()) - {survivor}, 30,
                      "a worker in the killed one's place", log)
    _until(lambda: (path / "peers" / f"{min(newcomer)}.sock").exists(), 20,
           "the new worker in the directory", log)
    assert master.poll() is None
    assert http_json(f"http://127.0.0.1:{port}/livez", timeout=5)[0] == 200
    said = log.read_text(errors="replace")
    assert "workers started from now on share it" in said and "send SIGHUP" in said
    assert "Traceback" not in said
