"""SIGHUPs that used to end the master and every worker, against real gunicorn (no Kafka
needed): each keeps the instance running, as the README says of a bad reload."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import free_port, http_json, wait_livez

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_a_sighup_with_a_latin1_env_file_keeps_the_instance_running(tmp_path):
    port = free_port()
    master, log = _start(tmp_path, port)
    try:
        # an editor saved the .env in Latin-1
        (tmp_path / ".env").write_bytes("KAFKA_CLIENT_ID=caf\xe9\n".encode("latin-1"))
        master.send_signal(signal.SIGHUP)
        time.sleep(5)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        assert master.poll() is None, f"the master exited {master.returncode}:\n{text[-3000:]}"
        assert http_json(f"http://127.0.0.1:{port}/livez", timeout=2)[0] == 200
    finally:
        _stop(master, log)


def _start(tmp_path, port, **extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BROKERS": "127.0.0.1:1",
           "KAFKA_TOPICS": "reload.t", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
           "GRPC_PORT": "0", "WORKERS": "1", "PYTHONUNBUFFERED": "1", **extra}
    log = open(tmp_path / "gateway.log", "wb")
    master = subprocess.Popen([sys.executable, "-m", "web.cli"], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    _wait_livez(tmp_path, port, master)
    return master, log


def _wait_livez(tmp_path, port, master, timeout=30):
    wait_livez(port, master, tmp_path / "gateway.log", timeout)


def _stop(master, log):
    if master.poll() is None:
        master.send_signal(signal.SIGTERM)
        master.wait(30)
    log.close()


def test_a_sighup_that_turns_the_admin_listener_on_is_refused_and_the_instance_runs(tmp_path):
    """README: 'The HTTP and admin ports are held by the master and never close during a
    reload', and a new ADMIN_PORT it cannot listen on keeps the running settings. Turning
    ADMIN_PORT on with a SIGHUP changes gunicorn's address list, so its Arbiter.reload closes
    every listener and binds them all again, the unchanged HTTP one included, while the old
    worker still holds that listening socket: 'Connection in use' five times, then
    "Can't connect to ...", and the master exits with the whole instance."""
    port, admin = free_port(), free_port()
    master, log = _start(tmp_path, port)
    try:
        (tmp_path / ".env").write_text(f"ADMIN_PORT={admin}\n")
        master.send_signal(signal.SIGHUP)
        time.sleep(8)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        assert master.poll() is None, f"the master exited {master.returncode}:\n{text[-3000:]}"
        assert "restart the gateway to change HTTP_PORT, ADMIN_PORT" in text
        _wait_livez(tmp_path, port, master)           # still serving, on its running port
    finally:
        _stop(master, log)


@pytest.mark.skipif(subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode,
                    reason="needs a private mount namespace (root) for a small /dev/shm")
def test_a_sighup_raising_sse_max_clients_past_dev_shm_keeps_the_instance_running(tmp_path):
    """Real gunicorn, /dev/shm of 8 MB (docker's default is 64 MB): started with
    SSE_MAX_CLIENTS=1000 the instance directory fits there; a SIGHUP to
    SSE_MAX_CLIENTS=200000 makes on_reload write a ~25 MB limits file, posix_fallocate fails
    with ENOSPC, and the master dies ('Unhandled exception in main loop')."""
    port = free_port()
    (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=1000\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BROKERS": "127.0.0.1:1",
           "KAFKA_TOPICS": "reload.t", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
           "GRPC_PORT": "0", "WORKERS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "gateway.log", "wb")
    master = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=8m tmpfs /dev/shm && exec "
         f"{sys.executable} -m web.cli"], cwd=tmp_path, env=env, stdout=log,
        stderr=subprocess.STDOUT)
    try:
        _wait_livez(tmp_path, port, master)
        (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=200000\n")
        master.send_signal(signal.SIGHUP)
        time.sleep(5)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        assert master.poll() is None, f"the master exited {master.returncode}:\n{text[-3000:]}"
    finally:
        _stop(master, log)


def test_a_sighup_from_json_to_text_logs_each_gunicorn_line_once(tmp_path):
    """After a SIGHUP that sets LOG_FORMAT=text (it was json), gunicorn's lines are written
    twice, as text and again as JSON (the master's `Booting worker` of the new worker)."""
    port = free_port()
    (tmp_path / ".env").write_text("LOG_FORMAT=json\n")
    master, log = _start(tmp_path, port)
    try:
        (tmp_path / ".env").write_text("LOG_FORMAT=text\n")
        master.send_signal(signal.SIGHUP)
        time.sleep(4)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        after = text[text.index("Hang up"):]
        booting = [line for line in after.splitlines() if "Booting worker" in line]
        assert len(booting) == 1, booting
    finally:
        _stop(master, log)


def test_a_refused_sighup_leaves_the_workers_running(tmp_path):
    """A SIGHUP whose settings are refused kept them, and gunicorn's reload then replaced
    every worker anyway, with the same settings: each stream ended and every client
    reconnected at once, for a typo in .env."""
    port = free_port()
    master, log = _start(tmp_path, port, WORKERS="2")
    try:
        before = _workers(master)
        assert len(before) == 2, before
        (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=lots\n")
        master.send_signal(signal.SIGHUP)
        time.sleep(5)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        assert _workers(master) == before, text[-3000:]
        assert "kept the running settings and the workers" in text, text[-3000:]
        (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=500\n")     # fixed: reloaded as before
        master.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while _workers(master) & before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _workers(master) & before
        _wait_livez(tmp_path, port, master)
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        assert "SIGHUP: taking the new settings of SSE_MAX_CLIENTS\n" in text, text[-3000:]
    finally:
        _stop(master, log)


def _workers(master) -> set[int]:
    """The process ids of the master's workers (its children)."""
    found = subprocess.run(["ps", "--ppid", str(master.pid), "-o", "pid="],
                           capture_output=True, text=True, check=False).stdout.split()
    return {int(pid) for pid in found}


def test_under_a_low_open_files_limit_the_probes_still_answer(tmp_path):
    """ulimit -n 300 and 400 streams: every accept failed once the files ran out, the admin
    port's /livez included, so a liveness probe would restart a worker that only lacked room
    (an operations audit). The pool now stops short of the limit; the probes keep answering."""
    import socket
    port, admin = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BROKERS": "127.0.0.1:1",
           "KAFKA_TOPICS": "files.t", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
           "ADMIN_PORT": str(admin), "GRPC_PORT": "0", "WORKERS": "1",
           "RATE_LIMIT_ENABLED": "false", "SSE_MAX_CLIENTS_PER_IP": "1000",
           "HTTP_MAX_PENDING_PER_IP": "1000", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "gateway.log", "wb")
    # The shell sets the limit (soft and hard), not a preexec_fn: that runs in the forked
    # child of this threaded process (gRPC's pollers among its threads), where it hung once
    # before the exec with gRPC's "epoll_wait error: Bad file descriptor" as its only line.
    master = subprocess.Popen(
        ["/bin/sh", "-c", 'ulimit -n 300 && exec "$0" -m web.cli', sys.executable],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    streams = []
    try:
        wait_livez(admin, master, tmp_path / "gateway.log")
        for _ in range(400):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            streams.append(sock)
        time.sleep(1)
        for sock in streams:
            try:
                sock.send(b"GET /events?history=false HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
        time.sleep(3)
        started = time.monotonic()
        status, body = http_json(f"http://127.0.0.1:{admin}/livez", timeout=5)
        assert status == 200 and time.monotonic() - started < 2, body
        text = (tmp_path / "gateway.log").read_text(errors="replace")
        # the two listeners share the 236 (an admin port flooded beside 200 streams ran the
        # worker out of files when each could take 236: the resource-exhaustion audit)
        assert "holds at most 118 connections on each listener" in text, text[-3000:]
    finally:
        for sock in streams:
            sock.close()
        _stop(master, log)
