"""The systems under test, each started fresh in its own processes and stopped by its own pids.

    gateway   this project under gunicorn, `workers` gevent workers (gunicorn.conf.py, WORKERS)
    nchan     nginx (`workers` worker processes) + libnginx-mod-nchan, fed by peers/nchan_relay.py
    python    peers/starlette_peer.py: Starlette + uvicorn + aiokafka, one process (always)

Every system serves GET <url>/events as Server-Sent Events of the same Kafka topic.
`processes()` lists what counts as the system for CPU and memory: every process of its process
groups, children included (gunicorn's master and all its workers; nginx's master and workers
and the relay for nchan). `storm_url` is what a reconnecting browser asks for (the gateway's
default history; nchan and the peer have none).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def get_json(url: str, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"null")
        except ValueError:
            return err.code, None
    except OSError:             # refused, reset or timed out (a busy worker): not ready yet
        return 0, None


class System:
    name = "?"
    label = "?"
    scales = False                      # runs more than one worker process when asked

    def __init__(self, brokers: str, topic: str, workdir: Path, *, buffer: int = 1000,
                 workers: int = 1):
        self.brokers, self.topic = brokers, topic
        self.buffer = buffer            # events a client may have queued (nchan: unbounded)
        self.workers = workers if self.scales else 1
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.port = 0
        self.logs: list = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    @property
    def storm_url(self) -> str:
        return self.url

    def spawn(self, args, log_name: str, env=None, stdout=None, cwd=ROOT) -> subprocess.Popen:
        log = open(self.workdir / log_name, "ab")
        self.logs.append(log)
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=stdout or log, stderr=log, start_new_session=True)
        self.procs.append(proc)
        return proc

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self.procs:
            try:
                parent = psutil.Process(proc.pid)
                found.append(parent)
                found.extend(parent.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return found

    def check_alive(self):
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name}: {proc.args[0]} exited with {proc.returncode}; "
                                   f"see {self.workdir}")

    def wait(self, ready, what: str, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: {what} not ready within {timeout:.0f}s; see {self.workdir}")

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs = []
        for log in self.logs:
            log.close()
        self.logs = []

    def describe(self) -> str:
        return self.label


class Gateway(System):
    name = "gateway"
    scales = True

    def __init__(self, *args, env: dict | None = None, label: str = "", log_name: str = "",
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.grpc_port = 0
        self.extra_env = env or {}       # e.g. AUTH_* for the auth runs
        w = self.workers
        self.label = label or f"gateway (gunicorn, {w} gevent worker{'s' if w > 1 else ''})"
        self.log_name = log_name or (f"gateway-w{w}.log" if w > 1 else "gateway.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events?history=false"

    @property
    def storm_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"      # default: recent history, then live

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.port, self.grpc_port = free_port(), free_port()
        env = {**os.environ, "KAFKA_BROKERS": self.brokers, "KAFKA_TOPICS": self.topic,
               "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(self.port),
               "GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(self.grpc_port),
               # room for the storm (N connected + 5,000 new, all at once); every stream
               # comes from 127.0.0.1, so the per-address caps are the instance's
               "SSE_MAX_CLIENTS": "10000", "SSE_MAX_CLIENTS_PER_IP": "10000",
               "HTTP_MAX_PENDING_PER_IP": "10000", "HTTP_MAX_PENDING": "10000",
               "RATE_LIMIT_ENABLED": "false", "SSE_EVENT_BUFFER_SIZE": str(self.buffer),
               "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
               "WORKERS": str(self.workers),    # explicit, whatever the default
               **self.extra_env}
        self.spawn([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"], self.log_name, env=env)

        def healthy():
            status, body = get_json(f"http://127.0.0.1:{self.port}/health")
            return status == 200 and bool(body and body.get("kafka", {}).get("partitions"))

        def ready():    # every worker forked, and (where /readyz exists) all warm
            if len(self.processes()) < 1 + self.workers:
                return False
            status, _ = get_json(f"http://127.0.0.1:{self.port}/readyz")
            return status in (200, 404)
        self.wait(lambda: port_open(self.port) and healthy() and ready(), "/health")


class PythonPeer(System):
    name = "python"
    label = "python peer (Starlette+uvicorn+aiokafka)"

    def start(self):
        self.port = free_port()
        env = {**os.environ, "KAFKA_BROKERS": self.brokers, "KAFKA_TOPICS": self.topic,
               "HTTP_PORT": str(self.port), "SSE_EVENT_BUFFER_SIZE": str(self.buffer),
               "PYTHONUNBUFFERED": "1"}
        self.spawn([sys.executable, str(BENCH / "peers" / "starlette_peer.py")], "python.log",
                   env=env)

        def healthy():
            status, _ = get_json(f"http://127.0.0.1:{self.port}/health")
            return status == 200
        self.wait(lambda: port_open(self.port) and healthy(), "/health")

    def describe(self) -> str:
        loop, http = os.environ.get("PEER_LOOP", "asyncio"), os.environ.get("PEER_HTTP", "h11")
        return f"{self.label}, loop={loop}, http={http}"


class Nchan(System):
    name = "nchan"
    label = "nginx+nchan + relay"
    scales = True
    MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"

    @staticmethod
    def available() -> bool:
        return shutil.which("nginx") is not None and Path(Nchan.MODULE).exists()

    def start(self):
        self.port = free_port()
        prefix = self.workdir / f"nginx-w{self.workers}"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        text = (BENCH / "peers" / "nginx-nchan.conf.in").read_text()
        for key, value in {"@PREFIX@": str(prefix), "@PORT@": str(self.port),
                           "@MODULE@": self.MODULE, "@CONNECTIONS@": "16384",
                           "@WORKERS@": str(self.workers)}.items():
            text = text.replace(key, value)
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.spawn([nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                   "nginx.log")
        self.wait(lambda: port_open(self.port), "nginx")
        relay = self.spawn([sys.executable, str(BENCH / "peers" / "nchan_relay.py"),
                            "--brokers", self.brokers, "--topics", self.topic,
                            "--nchan", f"127.0.0.1:{self.port}"],
                           "relay.log", stdout=subprocess.PIPE)
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline and b"ready" not in line:
            self.check_alive()
            if select.select([relay.stdout], [], [], 0.5)[0]:
                line = relay.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"nchan relay not ready; see {self.workdir}/relay.log")

    def describe(self) -> str:
        try:
            out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
            version = out.split("/")[-1]
        except OSError:
            version = "?"
        w = self.workers
        return f"nginx {version} + nchan ({w} worker{'s' if w > 1 else ''}) + aiokafka relay"


SYSTEMS = {"gateway": Gateway, "nchan": Nchan, "python": PythonPeer}
