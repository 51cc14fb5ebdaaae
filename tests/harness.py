"""Real processes for end-to-end tests: a Kafka broker (scripts/kafka-local) and gunicorn."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


_RANDOM = random.SystemRandom()   # not reseeded by test plugins


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _candidates(count: int) -> range:
    """First ports for a run of `count` that lies outside the ephemeral range: an outgoing
    connection can take an ephemeral port between our pick and the server's bind."""
    ephemeral = _ephemeral_ports()
    if ephemeral.start - count >= 11000:
        return range(10000, ephemeral.start - count + 1)
    return range(ephemeral.stop, 65536 - count + 1)


def _bindable(first: int, count: int) -> bool:
    held = []
    try:
        for port in range(first, first + count):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in held:
            s.close()


def free_port_run(count: int) -> int:
    """A free port followed by count-1 more free ports (a broker's listeners and controllers),
    chosen at random outside the kernel's ephemeral range."""
    candidates = _candidates(count)
    for _ in range(200):
        first = _RANDOM.choice(candidates)
        if _bindable(first, count):
            return first
    raise RuntimeError(f"no run of {count} free ports in {candidates}")


def eventually(predicate, timeout: float = 10.0, interval: float = 0.05):
    """`predicate()` once it is true, or its last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(interval)
    return predicate()


def children(pid: int) -> set[int]:
    """The process ids of `pid`'s children (a master's workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as found:
        return {int(child) for child in found.read().split()}


def listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on `port` (IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":   # LISTEN
                inodes.add(fields[9])
    return inodes


def holder_of(port: int, pids) -> int:
    """The worker whose file descriptors include the port's listening socket."""
    inodes = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue                                   # gone already
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker of {sorted(pids)} listens on {port}")


def free_port() -> int:
    return free_port_run(1)


def free_port_pair() -> int:
    """A port whose successor is free too (the broker and its controller)."""
    return free_port_run(2)


class LocalKafka:
    """One broker run by the project's own script, on its own ports."""

    mode = "single"   # KAFKA_LOCAL_MODE of scripts/kafka-local
    port_count = 2    # consecutive ports used from `port` on (listeners, then controllers)

    def __init__(self, port: int):
        self.port = port
        # No class-data-sharing archive in tests: one less shared file between brokers.
        self.env = {**os.environ, "KAFKA_LOCAL_PORT": str(port), "KAFKA_LOCAL_CDS": "0",
                    "KAFKA_LOCAL_MODE": self.mode}
        self.bootstrap = f"127.0.0.1:{port}"
        self._info = None

    @classmethod
    def on_free_ports(cls):
        return cls(free_port_run(cls.port_count))

    @property
    def info(self) -> dict:
        """`scripts/kafka-local env`: the mode's addresses and files (NAME -> value)."""
        if self._info is None:
            lines = self.run("env", timeout=30).splitlines()
            self._info = dict(line.split("=", 1) for line in lines if "=" in line)
        return self._info

    @property
    def log_dir(self) -> Path:
        """The broker's log.dirs (topic-partition folders with the segment files)."""
        return Path(self.info["LOG_DIR"])

    @property
    def log_file(self) -> Path:
        """The broker's own log (stdout and stderr of its JVM)."""
        return Path(self.info["DATA_DIR"]) / "kafka.log"

    def log_mark(self) -> int:
        """The broker log's current size: give it to log_text to read only what comes next."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """The broker's log from byte `since` (a log_mark()) on."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

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


def _describe_partition(bootstrap, topic: str, partition: int, wait_s: float = 10.0) -> dict:
    """A topic created a moment ago reaches each broker's metadata a little later (a CI run
    asked a cluster's broker that did not list it yet): looked for again until `wait_s`."""
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            for described in admin.describe_topics([topic]):
                for p in described.get("partitions", []):
                    if p["partition_index"] == partition:
                        return p
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        admin.close()
    raise LookupError(f"{topic}-{partition} is not in the cluster's metadata")


class SecureKafka(LocalKafka):
    """One broker with PLAINTEXT, SASL_SSL, SSL (client certificate required) and SASL_PLAINTEXT
    listeners, ACLs and users (scripts/kafka-local, KAFKA_LOCAL_MODE=secure)."""

    mode = "secure"
    port_count = 5
    MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

    def __init__(self, port: int):
        super().__init__(port)
        info = self.info
        self.plaintext_bootstrap = info["PLAINTEXT_BOOTSTRAP"]   # ANONYMOUS: a super user
        self.sasl_ssl_bootstrap = info["SASL_SSL_BOOTSTRAP"]
        self.ssl_bootstrap = info["SSL_BOOTSTRAP"]               # mutual TLS
        self.sasl_plaintext_bootstrap = info["SASL_PLAINTEXT_BOOTSTRAP"]
        self.ca_file = info["CA_FILE"]
        self.client_cert_file = info["CLIENT_CERT_FILE"]         # principal User:client
        self.client_key_file = info["CLIENT_KEY_FILE"]
        self.client_key_encrypted_file = info["CLIENT_KEY_ENCRYPTED_FILE"]
        self.client_key_password = info["CLIENT_KEY_PASSWORD"]
        self.client_principal = info["CLIENT_PRINCIPAL"]
        self.other_ca_file = info["OTHER_CA_FILE"]               # unrelated CA ("wrong CA")
        self.other_client_cert_file = info["OTHER_CLIENT_CERT_FILE"]
        self.other_client_key_file = info["OTHER_CLIENT_KEY_FILE"]
        self.users = {name: info[f"SASL_PASSWORD_{name.upper()}"]
                      for name in info["SASL_USERS"].split(",")}   # admin, alice, bob
        self.admin_user = info["SUPER_USER"]

    def bootstrap_for(self, protocol: str) -> str:
        return {"PLAINTEXT": self.plaintext_bootstrap, "SASL_SSL": self.sasl_ssl_bootstrap,
                "SSL": self.ssl_bootstrap, "SASL_PLAINTEXT": self.sasl_plaintext_bootstrap}[protocol]

    def client_config(self, protocol="SASL_SSL", mechanism="SCRAM-SHA-512", user="alice",
                      password=None, **overrides) -> dict:
        """kafka-python keyword arguments for one listener (bootstrap_servers included).
        SSL: the client certificate and key; SASL_*: `user` with its password (or `password`)."""
        config = {"bootstrap_servers": [self.bootstrap_for(protocol)], "security_protocol": protocol}
        if protocol in ("SSL", "SASL_SSL"):
            config["ssl_cafile"] = self.ca_file
        if protocol == "SSL":
            config.update(ssl_certfile=self.client_cert_file, ssl_keyfile=self.client_key_file)
        if protocol.startswith("SASL_"):
            config.update(sasl_mechanism=mechanism, sasl_plain_username=user,
                          sasl_plain_password=self.users.get(user) if password is None else password)
        config.update(overrides)
        return config

    def gateway_env(self, protocol="SASL_SSL", mechanism="SCRAM-SHA-512", user="alice",
                    password=None) -> dict:
        """The gateway's KAFKA_* settings (issue #10 names) for one listener; pass to Service
        with the bootstrap as its first argument: Service(env.pop("KAFKA_BROKERS"), ...)."""
        env = {"KAFKA_BROKERS": self.bootstrap_for(protocol), "KAFKA_SECURITY_PROTOCOL": protocol}
        if protocol in ("SSL", "SASL_SSL"):
            env["KAFKA_SSL_CA_FILE"] = self.ca_file
        if protocol == "SSL":
            env.update(KAFKA_SSL_CERT_FILE=self.client_cert_file, KAFKA_SSL_KEY_FILE=self.client_key_file)
        if protocol.startswith("SASL_"):
            env.update(KAFKA_SASL_MECHANISM=mechanism, KAFKA_SASL_USERNAME=user,
                       KAFKA_SASL_PASSWORD=self.users.get(user) if password is None else password)
        return env

    def admin(self):
        """A kafka-python admin client on the PLAINTEXT listener (super user): topics, ACLs, users."""
        from kafka import KafkaAdminClient
        return KafkaAdminClient(bootstrap_servers=[self.plaintext_bootstrap])


class KafkaCluster(LocalKafka):
    """A 3-node KRaft cluster (scripts/kafka-local, KAFKA_LOCAL_MODE=cluster): node n (1-3) has
    broker id n and listens on port+n-1; replication factor 3 and min.insync.replicas 2."""

    mode = "cluster"
    nodes = 3
    port_count = 6

    def __init__(self, port: int):
        super().__init__(port)
        self.bootstrap_servers = [f"127.0.0.1:{port + n}" for n in range(self.nodes)]
        self.bootstrap = ",".join(self.bootstrap_servers)

    def node_bootstrap(self, node: int) -> str:
        return self.bootstrap_servers[node - 1]

    def node_log_dir(self, node: int) -> Path:
        return Path(self.info[f"NODE_{node}_LOG_DIR"])

    @property
    def log_dir(self) -> Path:
        raise AttributeError("a cluster has one log dir per node: use node_log_dir(n)")

    def _node(self, command: str, node: int, timeout=180, overrides: str = ""):
        if not 1 <= node <= self.nodes:
            raise ValueError(f"node must be 1..{self.nodes}, got {node}")
        result = subprocess.run([str(ROOT / "scripts" / "kafka-local"), command, str(node)],
                                env={**self.env, "KAFKA_LOCAL_OVERRIDES": overrides},
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-local {command} {node} failed:\n{result.stderr[-3000:]}")

    def kill_node(self, node: int):
        """SIGKILL one node (a crash); its data is kept."""
        self._node("kill-node", node)

    def stop_node(self, node: int):
        self._node("stop-node", node)

    def start_node(self, node: int, overrides: str = ""):
        """Start one node (again); returns when it has registered with the controller.
        `overrides`: broker properties (key=value lines) that replace its own."""
        self._node("start-node", node, overrides=overrides)

    def node_running(self, node: int) -> bool:
        pid_file = Path(self.info["DATA_DIR"]) / f"node-{node}" / "kafka.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
            return True
        except (OSError, ValueError, IndexError):
            return False

    def partition_state(self, topic: str, partition: int) -> dict:
        """kafka-python's description: leader_id, replica_nodes, isr_nodes, offline_replicas."""
        running = [b for n, b in enumerate(self.bootstrap_servers, 1) if self.node_running(n)]
        return _describe_partition(",".join(running or self.bootstrap_servers), topic, partition)

    def leader_of(self, topic: str, partition: int) -> int:
        """The node (= broker id) leading the partition; -1 while it has none."""
        return self.partition_state(topic, partition)["leader_id"]

    def isr_of(self, topic: str, partition: int) -> list[int]:
        return sorted(self.partition_state(topic, partition)["isr_nodes"])

    def wait_until(self, check, timeout=60.0, interval=0.5, what="the cluster state"):
        """Poll check() (exceptions count as False) until it returns something true."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except Exception as err:  # noqa: BLE001 - metadata is briefly unavailable in elections
                last = err
            time.sleep(interval)
        raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")

    def wait_for_isr(self, topic: str, partition: int, size=3, timeout=60.0) -> list[int]:
        def isr():
            nodes = self.isr_of(topic, partition)
            return nodes if len(nodes) >= size else None
        return self.wait_until(isr, timeout, what=f"{topic}-{partition} ISR of {size}")

    def wait_for_leader(self, topic: str, partition: int, not_node: int | None = None,
                        timeout=60.0) -> int:
        def leader():
            node = self.leader_of(topic, partition)
            return node if node > 0 and node != not_node else None
        return self.wait_until(leader, timeout, what=f"a leader of {topic}-{partition} other than {not_node}")


def http_json(url: str, timeout=5.0, headers=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_livez(port: int, process, log_path: Path, timeout: float = 30.0) -> None:
    """Until the gateway on `port` answers /livez 200: an AssertionError with the tail of its
    log when `process` ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if http_json(f"http://127.0.0.1:{port}/livez", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(log_path.read_text(errors="replace")[-4000:])


class Relay:
    """A TCP relay to Kafka on a port of its own that refuses connections until `open()`."""

    def __init__(self, upstream: str):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.port = free_port()
        self.server: socket.socket | None = None
        self.links: list[socket.socket] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def open(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for sock in [self.server, *self.links]:
            if sock is not None:
                sock.close()


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
                    # One worker unless a test asks for more (test_workers, test_auth_workers,
                    # test_instance_rpc): most tests watch one worker's pid, memory or log.
                    "WORKERS": "1",
                    "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in env.items()}}
        self.log_path = log_path
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, expect_partitions: int | None = None, timeout=30.0, *,
              healthy: bool = True) -> "Service":
        """Started, and healthy with every worker joined (`healthy=False`: only alive)."""
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py"], cwd=ROOT,
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        if not healthy:
            wait_livez(self.port, self.process, self.log_path, timeout)
            return self
        self.wait_healthy(expect_partitions, timeout)
        workers = int(self.env.get("WORKERS", "1"))
        if workers > 1:     # /health spoke for the workers that had joined: now for them all
            if not eventually(lambda: len(self.peer_sockets()) >= workers, timeout, 0.1):
                raise RuntimeError(f"{workers} workers did not all join in {timeout} s:\n"
                                   f"{self.log_tail()}")
            self.wait_healthy(expect_partitions, timeout)
        return self

    def peer_sockets(self) -> list[Path]:
        """The private sockets of the workers that have joined the instance."""
        parents = {Path("/dev/shm"), Path(tempfile.gettempdir())}
        return [found for parent in parents if parent.is_dir()
                for found in parent.glob(f"kafka-sse-{self.process.pid}-*/peers/*.sock")]

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
                    # ready too (warm start done; gRPC health follows it), when there is Kafka data
                    if not partitions or http_json(self.url + "/readyz", timeout=2)[0] == 200:
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
