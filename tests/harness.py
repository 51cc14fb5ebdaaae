"""Real processes for end-to-end tests: a Kafka broker (scripts/kafka-local) and gunicorn."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port whose successor is free too (the broker and its controller)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


class LocalKafka:
    """One broker run by the project's own script, on its own ports."""

    def __init__(self, port: int):
        self.port = port
        # No class-data-sharing archive in tests: one less shared file between brokers.
        self.env = {**os.environ, "KAFKA_LOCAL_PORT": str(port), "KAFKA_LOCAL_CDS": "0"}
        self.bootstrap = f"127.0.0.1:{port}"

    def run(self, command: str, timeout=180) -> str:
        result = subprocess.run([str(ROOT / "scripts" / "kafka-local"), command], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-local {command} failed:\n{result.stderr[-3000:]}")
        return result.stdout.strip()

    def start(self) -> str:
        return self.run("start")

    def stop(self):
        self.run("stop")

    def kill(self):
        self.run("kill")

    def reset(self):
        self.run("reset")


def http_json(url: str, timeout=5.0, headers=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class Service:
    """The gateway under real gunicorn, configured through its environment."""

    def __init__(self, kafka_bootstrap: str, topics, log_path: Path, **env):
        self.port = free_port()
        self.grpc_port = int(env.pop("GRPC_PORT", 0) or 0)
        self.topics = list(topics)
        self.env = {**os.environ, "KAFKA_BROKERS": kafka_bootstrap,
                    "KAFKA_TOPICS": ",".join(self.topics), "HTTP_HOST": "127.0.0.1",
                    "HTTP_PORT": str(self.port), "GRPC_PORT": str(self.grpc_port),
                    "KAFKA_METADATA_REFRESH_MS": "2000", "RATE_LIMIT_ENABLED": "false",
                    "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}}
        self.log_path = log_path
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, expect_partitions: int | None = None, timeout=30.0) -> "Service":
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py"], cwd=ROOT,
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_healthy(expect_partitions, timeout)
        return self

    def wait_healthy(self, expect_partitions=None, timeout=30.0) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, last = http_json(self.url + "/health", timeout=2)
                partitions = len(last["kafka"]["partitions"])
                if status == 200 and (expect_partitions is None or partitions >= expect_partitions):
                    return last
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"service not healthy in {timeout}s (last: {last}):\n{self.log_tail()}")

    def stats(self) -> dict:
        return http_json(self.url + "/stats")[1]

    def log_tail(self, lines=40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=15.0) -> float:
        """SIGTERM and wait; returns how long the shutdown took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self.log.close()
        return time.monotonic() - started
