"""Orchestrator of `make bench` (run through bench/run, which installs what is needed).

Starts a real Kafka broker (scripts/kafka-local on its own port), a producer process and the
load-generator processes, then for each system (gateway, nchan, python), each worker count
(gateway and nchan; the python peer is one process) and each number of clients N: starts the
system fresh, and for each rate R opens N streams, produces R events/s for warm-up + steady
seconds, drains, and reads the clients' books. Then, per worker count, the reconnect storm
(gateway and nchan): N streams receive R events/s while thousands more connect at once.
Results go to stdout, bench/results/latest.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import wait as wait_any
from pathlib import Path

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import auth_runs  # noqa: E402
import loadgen  # noqa: E402
import loadgen_go  # noqa: E402
import floor  # noqa: E402
import producer  # noqa: E402
from pipes import PipeReplies  # noqa: E402
import report  # noqa: E402
from grpc_probe import window_stats  # noqa: E402
from systems import SYSTEMS, Nchan  # noqa: E402

SUBJECT_PREFIX = "user-"    # private events: subject i is user-0000 + i, also the record key

TOPIC = "bench.events"
SAMPLE_BUDGET = 40_000      # events/s whose latency is taken (sampled clients x R)
ABORT_LAG_S = 5.0           # a client this far behind: the scenario is saturated, stop it
SATURATED_SHARE = 0.9       # delivered below this share of N x R: saturated
STORM_SYSTEMS = ("gateway", "nchan")
RISING_SHARE = 0.8           # a saturated probe delivering this share of its rate: probe on
STORM_STEP_S = 0.25          # the connected clients' p99 during the storm, per this much send time
STORM_AFTER_S = 1.0         # the storm window ends this long after the last stream's headers
PROFILE_AT = (1000, 100)    # --profile: the matrix scenario py-spied (and every storm)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: N=50, R=10, ~5 s per system")
    p.add_argument("--systems", default="gateway,nchan,python",
                   help="comma list of gateway, nchan, python (default: all)")
    p.add_argument("--workers", default="1,2",
                   help="worker counts of the gateway (WORKERS) and of nginx+nchan "
                        "(worker_processes), each run in turn; the python peer is one process")
    p.add_argument("--clients", default="100,1000,2000", help="values of N")
    p.add_argument("--rates", default="10,100,500", help="values of R (events/s)")
    p.add_argument("--probe-rates", default="1000,2000,4000,8000",
                   help="rates tried at N=--probe-clients after the matrix, until one saturates "
                        "delivering under 80%% of its rate ('' to skip)")
    p.add_argument("--probe-clients", type=int, default=1000)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per scenario")
    p.add_argument("--steady", type=float, default=5.0, help="seconds measured per scenario")
    p.add_argument("--drain", type=float, default=3.0, help="most seconds to wait for stragglers")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between connect and produce")
    p.add_argument("--lg-procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--lg", choices=("go", "python"), default="go",
                   help="load generator: go (bench/lg_go, built into .cache/bench/lg-go; the "
                        "Python one when no Go toolchain is found) or python (bench/loadgen.py); "
                        "same protocol and books")
    p.add_argument("--inflight", type=int, default=64, help="connects in flight per process")
    p.add_argument("--buffer", type=int, default=1000, help="SSE_EVENT_BUFFER_SIZE of the servers")
    p.add_argument("--kafka-port", type=int, default=39092)
    p.add_argument("--keep-kafka", action="store_true", help="do not reset the broker at the end")
    p.add_argument("--out", default=str(BENCH / "results"), help="folder for latest.{md,json,png}")
    p.add_argument("--max-minutes", type=float, default=15.0,
                   help="time budget: no probe starts after 60%% of it, no scenario after it")
    p.add_argument("--rebuild", action="store_true",
                   help="only rewrite latest.md and latest.png from --out's latest.json")
    p.add_argument("--profile", metavar="SECONDS", type=float, default=0,
                   help="py-spy every gateway worker during N=1000 R=100, during the storm and "
                        "during the private run: flame-*.svg (and the first worker's raw "
                        "stacks, *-profile*.txt) in --out")
    storm = p.add_argument_group("reconnect storm (issue 15)")
    storm.add_argument("--storm", type=int, default=5000,
                       help="streams that connect at once during the storm (0: no storm)")
    storm.add_argument("--storm-clients", type=int, default=1000,
                       help="streams connected before the storm, receiving --storm-rate")
    storm.add_argument("--storm-rate", type=int, default=100, help="events/s during the storm")
    storm.add_argument("--storm-inflight", type=int, default=0,
                       help="storm connects in flight per load-generator process (0: all at "
                            "once)")
    storm.add_argument("--storm-pre", type=float, default=2.0,
                       help="seconds measured before the storm (the connected clients' p99 "
                            "without it)")
    storm.add_argument("--storm-tail", type=float, default=3.0,
                       help="seconds produced after the last storm stream was admitted")
    storm.add_argument("--storm-max", type=float, default=20.0,
                       help="most seconds the storm may take to be admitted")
    auth = p.add_argument_group("subscriber auth runs (issue 14; bench/auth_runs.py)")
    auth.add_argument("--auth", default="connect,private",
                      help="auth runs after the matrix: connect, private ('' for none)")
    auth.add_argument("--auth-only", action="store_true",
                      help="only the auth runs: latest.md keeps its tables, its auth section "
                           "and auth.md/json are rewritten")
    auth.add_argument("--auth-streams", type=int, default=2000,
                      help="streams opened per connect round and mode")
    auth.add_argument("--auth-rounds", type=int, default=12,
                      help="connect rounds (each: no auth, ticket, bearer, anonymous)")
    auth.add_argument("--private-subjects", type=int, default=1000,
                      help="subjects of the private run, one stream each")
    auth.add_argument("--private-rate", type=int, default=20_000,
                      help="events/s produced in all in the private run")
    auth.add_argument("--private-fallback", default="10000,7500,5000,2500",
                      help="when the private run does not keep up: lower rates tried, each on a "
                           "fresh gateway, until one holds ('' for none)")
    auth.add_argument("--private-floor", action="store_true",
                      help="run the Kafka floor consumer during the private run too (it costs "
                           "a share of a core at 20,000 events/s)")
    auth.add_argument("--profile-opens", action="store_true",
                      help="py-spy each auth mode's gateway through all its connect rounds: "
                           "flame-open-{off,ticket,bearer,anonymous}.svg and "
                           "open-*-profile.txt in --out (off by default: eight samplers cost "
                           "the rounds some CPU)")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.rates, args.probe_rates = "50", "10", ""
        args.warmup, args.steady, args.drain, args.settle = 1.0, 3.0, 2.0, 0.5
        args.storm, args.storm_clients, args.storm_pre, args.storm_tail = 200, 50, 1.0, 1.0
        args.auth_streams, args.auth_rounds = 100, 1
        args.private_subjects, args.private_rate, args.private_fallback = 50, 1000, ""
    args.private_fallback = [int(x) for x in args.private_fallback.split(",") if x]
    args.auth = [x.strip() for x in args.auth.split(",") if x.strip()]
    for x in args.auth:
        if x not in ("connect", "private"):
            p.error(f"unknown auth run {x!r} (choose from connect, private)")
    if args.auth_only and not args.auth:
        p.error("--auth-only needs at least one --auth run")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r} (choose from {', '.join(SYSTEMS)})")
    args.workers = [int(x) for x in args.workers.split(",") if x]
    if not args.workers or min(args.workers) < 1:
        p.error("--workers needs worker counts of at least 1, e.g. 1,2")
    args.clients = [int(x) for x in args.clients.split(",") if x]
    args.rates = [int(x) for x in args.rates.split(",") if x]
    args.probe_rates = [int(x) for x in args.probe_rates.split(",") if x]
    return args


# -- infrastructure ------------------------------------------------------------------------------
class Kafka:
    def __init__(self, port: int):
        self.env = {**os.environ, "KAFKA_LOCAL_PORT": str(port)}
        self.port = port
        self.bootstrap = ""

    def run(self, command: str) -> str:
        result = subprocess.run([str(ROOT / "scripts" / "kafka-local"), command], env=self.env,
                                capture_output=True, text=True, timeout=240)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-local {command} failed:\n{result.stderr[-2000:]}")
        return result.stdout.strip()

    def start(self) -> str:
        self.run("reset")           # a clean broker: no topics or offsets from an earlier run
        self.bootstrap = self.run("start")
        return self.bootstrap

    def pid(self):
        path = ROOT / ".cache" / "kafka" / f"data-{self.port}" / "kafka.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def create_topic(self, topic: str, partitions: int = 1):
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], client_id="sse-bench-admin")
        try:
            if topic not in admin.list_topics():
                admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            admin.close()


class Child(PipeReplies):
    """A helper process (producer or load generator) on a pipe."""

    def __init__(self, ctx, target, *args, name=""):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
        self.proc.start()
        self.ps = psutil.Process(self.proc.pid)

    def send(self, message):
        self.conn.send(message)


def cpu_seconds(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def runqueue_wait_seconds(procs) -> float:
    """Time the processes' threads spent ready to run but waiting for a CPU (/proc schedstat):
    high when something else on the machine takes the cores."""
    total = 0
    for p in procs:
        try:
            for task in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def rss_bytes(procs) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def listen_counters() -> dict:
    """The kernel's TcpExt ListenOverflows/ListenDrops/SyncookiesSent (machine-wide): a full
    accept queue drops SYNs, and the client retries them 1 s, 3 s, 7 s later."""
    try:
        lines = [x.split() for x in Path("/proc/net/netstat").read_text().splitlines()
                 if x.startswith("TcpExt:")]
        values = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    except (OSError, IndexError, ValueError):
        return {}
    return {k: values.get(k, 0) for k in ("ListenOverflows", "ListenDrops", "SyncookiesSent")}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


SPEED_PROBE = "import time\nt = time.process_time()\nfor _ in range(10_000_000): pass\n" \
              "print(time.process_time() - t)"


def speed_probe(runs: int = 3) -> float | None:
    """CPU seconds of a 10M-step Python loop in a fresh interpreter, the median of `runs`: how
    fast this machine runs Python today (this VM's has ranged from 0.27 to 0.58 s between
    days, and every figure in microseconds scales with it)."""
    found = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", SPEED_PROBE], capture_output=True,
                              text=True, check=False)
        try:
            found.append(float(done.stdout))
        except ValueError:
            return None
    return round(statistics.median(found), 3)


SYSTEM_PROBE = """import os, socket, time
t = time.process_time()
for _ in range(200_000): os.getppid()
call_ns = (time.process_time() - t) / 200_000 * 1e9
server = socket.create_server(("127.0.0.1", 0), backlog=128)
t = time.process_time()
for _ in range(2_000):
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    client.sendall(b"x"); accepted.recv(1)
    accepted.close(); client.close()
print(round(call_ns), round((time.process_time() - t) / 2_000 * 1e6, 1))"""


def system_probe(runs: int = 3) -> dict | None:
    """What this machine's kernel charges, in a fresh interpreter, the median of `runs`: one
    system call (getppid, ns) and one loopback TCP connection (connect, accept, a byte each
    way, both closes; us of CPU). The speed probe misses it: on two days of the same speed
    probe, a stream's open cost 290 and 465 us of gateway CPU, the code the same
    (bench/README.md, "Where the committed results come from")."""
    calls, connections = [], []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", SYSTEM_PROBE], capture_output=True,
                              text=True, check=False)
        try:
            call_ns, connection_us = map(float, done.stdout.split())
        except ValueError:
            return None
        calls.append(call_ns)
        connections.append(connection_us)
    return {"syscall_ns": statistics.median(calls),
            "tcp_connection_us": statistics.median(connections)}


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("gunicorn", "gevent", "kafka-python", "pykka", "flask", "starlette", "uvicorn",
                 "aiokafka"):
        try:
            from importlib.metadata import version
            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001
            versions[dist] = "?"
    load = os.getloadavg()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "actors", "web", "rpc", "service",
                                "gunicorn.conf.py"], cwd=ROOT, text=True,
                               capture_output=True).stdout.strip()
        code = head + (" + uncommitted changes in actors/web/rpc" if dirty else "")
        code = os.environ.get("BENCH_GATEWAY_CODE", "") or code     # a tree exported elsewhere
    except OSError:
        code = "?"
    return {"code": code, "cpu": model, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "os": _os_name(), "python": platform.python_version(),
            "versions": versions,
            "loadavg_at_start": [round(x, 2) for x in load], "python_loop_s": speed_probe(),
            "system_probe": system_probe(),
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


def kafka_version(root: Path = ROOT) -> str:
    """The version of the Kafka that scripts/kafka-local installed under `root`, or "?" (a
    fresh checkout's first run installs it in Bench.setup: ask after that)."""
    try:
        return next((root / ".cache" / "kafka").glob("lib-*")).name[4:]
    except StopIteration:
        return "?"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


# -- one scenario --------------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.run_id = 0
        self.started = time.monotonic()
        self.results: list[dict] = []
        self.grpc = None

    def setup(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.workdir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
        log(f"logs in {self.workdir}")
        lg_binary = self._build_lg()
        self.kafka = Kafka(self.args.kafka_port)
        t0 = time.monotonic()
        self.brokers = self.kafka.start()
        self.kafka.create_topic(TOPIC)
        log(f"kafka {self.brokers} ready in {time.monotonic() - t0:.1f}s, topic {TOPIC}")
        self.kafka_ps = [psutil.Process(self.kafka.pid())] if self.kafka.pid() else []
        ctx = multiprocessing.get_context("spawn")
        self.producer = Child(ctx, producer.main, self.brokers, TOPIC, name="producer")
        if lg_binary is not None:
            self.workers = [loadgen_go.GoChild(lg_binary, name=f"loadgen-{i}")
                            for i in range(self.args.lg_procs)]
        else:
            self.workers = [Child(ctx, loadgen.main, name=f"loadgen-{i}")
                            for i in range(self.args.lg_procs)]
        self.floor = Child(ctx, floor.main, self.brokers, TOPIC, name="floor")
        self.producer.recv_kind("ready", 60)
        self.floor.recv_kind("ready", 60)

    def _build_lg(self):
        """--lg go: the Go load generator's binary, built when its sources changed (None:
        the Python one, also when there is no Go toolchain; args.lg then says python)."""
        if self.args.lg != "go":
            return None
        t0 = time.monotonic()
        try:
            binary = loadgen_go.build()
        except loadgen_go.BuildError as exc:
            if loadgen_go.go_tool() is not None:
                raise
            log(f"{exc}: using the Python load generator")
            self.args.lg = "python"
            return None
        log(f"load generator: {binary} (Go, ready in {time.monotonic() - t0:.1f}s)")
        return binary

    def teardown(self):
        helpers = [getattr(self, "producer", None), getattr(self, "floor", None),
                   *getattr(self, "workers", [])]
        for child in helpers:
            if child is None:
                continue
            try:
                child.send(("quit",))
            except (OSError, BrokenPipeError):
                pass
        for child in helpers:
            if child is not None:
                child.proc.join(5)
                if child.proc.is_alive():
                    child.proc.kill()
        if getattr(self, "kafka", None) is not None:
            try:
                self.kafka.run("stop" if self.args.keep_kafka else "reset")
            except Exception as exc:  # noqa: BLE001
                log(f"stopping kafka: {exc}")

    def run(self):
        grpc_ok = subprocess.run([sys.executable, str(BENCH / "grpc_probe.py"), "--check"],
                                 capture_output=True, text=True, cwd=ROOT)
        self.grpc_available = grpc_ok.returncode == 0
        if not self.grpc_available:
            self.grpc = {"error": "rpc.sse_pb2_grpc not importable (" +
                         (grpc_ok.stdout.strip() or grpc_ok.stderr.strip())[:120] + ")"}
        described = {}
        print(report.header_text(), flush=True)
        for name in self.args.systems:
            if name == "nchan" and not Nchan.available():
                log("nginx or the nchan module is missing: skipping nchan")
                continue
            counts = self.args.workers if SYSTEMS[name].scales else [1]
            for w in dict.fromkeys(counts):
                key = report.system_key(name, w)
                try:
                    described[key] = self.run_system(name, w)
                except Exception as exc:  # noqa: BLE001 - one broken system must not cost others
                    self._failed(name, w, exc)
                if name in STORM_SYSTEMS and self.args.storm > 0:
                    try:
                        self.run_storm(name, w)
                    except Exception as exc:  # noqa: BLE001
                        self._failed(name, w, exc, scenario="storm")
        return described

    def _failed(self, name, w, exc, scenario="matrix"):
        log(f"{name} w={w} {scenario} failed: {exc.__class__.__name__}: {exc}")
        self.results.append({"system": name, "workers": w, "scenario": scenario, "n": 0, "r": 0,
                             "status": "error",
                             "note": f"{exc.__class__.__name__}: {exc}"[:300]})
        self.reset_workers()

    def _make(self, name: str, w: int):
        return SYSTEMS[name](self.brokers, TOPIC, self.workdir, buffer=self.args.buffer,
                             workers=w)

    def run_system(self, name: str, w: int = 1) -> str:
        described = name
        saturated: list[tuple[int, int]] = []
        for n in self.args.clients:
            plan = list(self.args.rates)
            if n == self.args.probe_clients:
                plan += [r for r in self.args.probe_rates if r > max(self.args.rates)]
            if all(self._skip(saturated, n, r) for r in plan):
                self.results += [self._skipped(name, n, r, saturated, w) for r in self.args.rates]
                continue
            system = self._make(name, w)
            t0 = time.monotonic()
            try:
                system.start()
                described = system.describe()
                time.sleep(1.0)
                baseline = rss_bytes(system.processes())
                log(f"{name} w={w}: started in {time.monotonic() - t0:.1f}s, "
                    f"RSS {baseline / 2**20:.1f} MB ({len(system.processes())} processes); N={n}")
                for r in plan:
                    probe = r not in self.args.rates
                    if self._skip(saturated, n, r):
                        if not probe:
                            self.results.append(self._skipped(name, n, r, saturated, w))
                        continue
                    used = (time.monotonic() - self.started) / 60
                    if used > self.args.max_minutes * (0.6 if probe else 1.0):
                        log(f"time budget ({self.args.max_minutes:g} min) used: skipping N={n} R={r}")
                        if not probe:
                            self.results.append({"system": name, "workers": w, "n": n, "r": r,
                                                 "status": "skipped", "note": "time budget"})
                        continue
                    result = self.scenario(system, n, r, baseline, probe)
                    self.results.append(result)
                    report.print_row(result)
                    if result["status"] == "saturated" and not (probe and still_rising(result)):
                        saturated.append((n, r))
            finally:
                system.stop()
        return described

    def run_storm(self, name: str, w: int):
        a = self.args
        used = (time.monotonic() - self.started) / 60
        base = {"system": name, "workers": w, "scenario": "storm", "n": a.storm_clients,
                "r": a.storm_rate, "storm": a.storm}
        if used > a.max_minutes:
            log(f"time budget ({a.max_minutes:g} min) used: skipping the storm of {name} w={w}")
            self.results.append({**base, "status": "skipped", "note": "time budget"})
            return
        system = self._make(name, w)
        try:
            system.start()
            time.sleep(1.0)
            result = self.storm(system, a.storm_clients, a.storm_rate, a.storm)
        finally:
            system.stop()
        self.results.append(result)
        print(report.storm_header(), flush=True)
        print(report.storm_text(result), flush=True)

    def storm(self, system, n: int, r: int, count: int) -> dict:
        """N streams receive R events/s; after --storm-pre seconds, `count` more streams connect
        at once (the gateway's with its default history, as reconnecting browsers ask). The
        producer stops --storm-tail seconds after the last of them was admitted."""
        a = self.args
        self.run_id += 1
        run = self.run_id
        result = {"system": system.name, "workers": system.workers, "scenario": "storm",
                  "n": n, "r": r, "storm": count}
        workers = self.workers
        ticks: dict = {}
        on_tick = self._handle_tick(ticks)
        sampled = min(n, max(10, int(SAMPLE_BUDGET // r)))
        opened = self._connect(system.url, n, sampled, result, on_tick)
        time.sleep(a.settle)
        procs = system.processes()
        result["rss_idle_mb"] = rss_bytes(procs) / 2**20

        start_at = time.time() + 0.3
        ws = start_at + a.warmup                    # the connected clients' pre-storm window
        storm_at = ws + a.storm_pre
        cap = a.warmup + a.storm_pre + a.storm_max
        end = start_at + cap + 5
        grpc_proc = None
        if system.name == "gateway":
            grpc_proc = self._start_grpc_probe(system, cap, ws)
        for w in workers:
            w.send(("go", run, ws, end))
        self.floor.send(("go", run, storm_at, end))
        self.producer.send(("produce", run, r, cap, start_at))
        groups = {"server": procs, "lg": [w.ps for w in workers], "producer": [self.producer.ps],
                  "kafka": self.kafka_ps, "floor": [self.floor.ps], "self": [psutil.Process()]}
        lg_each = {w.proc.name: [w.ps] for w in workers}
        by_conn = {w.conn: w for w in workers}
        conns = [self.producer.conn] + list(by_conn)
        inflight = a.storm_inflight or -(-count // len(workers))
        replies: list = []
        fired = stopping = False
        snap0 = snap1 = None
        storm_end = stop_at = None
        rss_max = 0
        next_rss = 0.0
        aborted = ""
        produced = None
        profile_proc = None
        while produced is None:
            for conn in wait_any(conns, timeout=0.05):
                message = conn.recv()
                if conn is self.producer.conn:
                    if message[0] == "produced":
                        produced = message[1]
                elif message[0] == "connected":
                    replies.append(message[1])
                else:
                    on_tick(by_conn[conn], message)
            now = time.time()
            if not fired and now >= storm_at:
                snap0 = self._snap(groups, lg_each)
                listen0 = listen_counters()
                for w, share in zip(workers, split(count, len(workers)), strict=True):
                    w.send(("connect", system.storm_url, share, 0, inflight, 1))
                fired = True
                if system.name == "gateway":
                    profile_proc = self._start_profile(system, procs, f"w{system.workers}-storm")
            if fired and storm_end is None and len(replies) == len(workers):
                last = max(x["last_ready"] for x in replies) or now
                storm_end, stop_at = last + STORM_AFTER_S, last + a.storm_tail
            if storm_end is not None and snap1 is None and now >= storm_end:
                snap1 = self._snap(groups, lg_each)
            if fired and snap1 is None and now >= next_rss:
                rss_max = max(rss_max, rss_bytes(system.processes()))
                next_rss = now + 0.5
            if not stopping and stop_at is not None and now >= stop_at:
                self.producer.send(("stop",))
                stopping = True
            if not aborted and ticks and now > start_at + 1.5:
                worst = max(t["worst_lag_us"] for t in ticks.values()) / 1e6
                if worst > ABORT_LAG_S:
                    aborted = f"a client fell {worst:.1f}s behind"
                    if not stopping:
                        self.producer.send(("stop",))
                        stopping = True
        if not fired:           # the producer ended (or was stopped) before the storm began
            raise RuntimeError("the storm never started: the producer ended first")
        listen1 = listen_counters()
        result["listen"] = {k: listen1[k] - listen0.get(k, 0) for k in listen1}
        cut_short = len(replies) < len(workers)
        if cut_short:
            aborted = aborted or f"storm not admitted within {a.storm_max:g} s"
            storm_end = storm_end or time.time()
        if snap1 is None:
            snap1 = self._snap(groups, lg_each)

        total = produced["sent"]
        _drain(workers, by_conn, ("expect", total), a.drain if not aborted else 0.5)
        for w in workers:
            w.send(("finish",))
        books = [w.recv_kind("result", 60, on_tick) for w in workers]
        self.floor.send(("finish",))
        floor_lat = np.frombuffer(self.floor.recv_kind("floor", 30), dtype=np.int64) / 1000.0
        if grpc_proc is not None:
            result["grpc"] = self._finish_grpc(grpc_proc, storm_at, storm_end, stop=True)
        if profile_proc is not None:
            self._finish_profile(profile_proc)
        elapsed = max(1e-3, snap1["t"] - snap0["t"])
        result.update(storm_books(books, storm_at, storm_end, ws))
        parts = [b["unsettled"] for b in books]       # the storm was the last connect
        if cut_short:
            result["not_admitted"] = _merge(
                {k: v for k, v in x.items() if k not in ("reasons", "failed")} for x in parts)
        result.update({
            "opened": opened, "produced": total,
            "rate_actual": total / max(1e-3, produced["seconds"]),
            "storm_window_s": storm_end - storm_at,
            "refused": sum(x["failed"] for x in parts),
            "refused_reasons": _merge(x["reasons"] for x in parts),
            "floor_p99_ms": float(np.percentile(floor_lat, 99)) if floor_lat.size else None,
            "cpu_pct": self._pct(snap0, snap1, "server", elapsed),
            "server_wait_pct": self._pct(snap0, snap1, "server_wait", elapsed),
            "lg_cpu_pct": self._pct(snap0, snap1, "lg", elapsed),
            "lg_cpu_max_pct": max(self._pct(snap0, snap1, k, elapsed) for k in lg_each),
            "machine_busy_pct": self._pct(snap0, snap1, "machine", elapsed),
            "rss_mb": rss_max / 2**20, "aborted": aborted,
            "close_reasons": _merge(b["close_reasons"] for b in books),
        })
        ours = sum(self._pct(snap0, snap1, k, elapsed)
                   for k in ("server", "lg", "producer", "kafka", "floor", "self"))
        result["others_cpu_pct"] = max(0.0, result["machine_busy_pct"] - ours)
        if result["p99_ms"] is None and aborted:    # nothing sent in the window arrived
            result["latency_note"] = f"> {ABORT_LAG_S:g} s" if "behind" in aborted else "none"
        result["status"], result["note"] = storm_status(result)
        return result

    def reset_workers(self):
        """After a failure: every load-generator process drops its clients and books."""
        for w in self.workers:
            try:
                w.send(("finish",))
                w.recv_kind("result", 30)
            except Exception as exc:  # noqa: BLE001
                log(f"{w.proc.name}: {exc}")

    @staticmethod
    def _skip(saturated, n, r) -> bool:
        return any(n0 <= n and r0 <= r for n0, r0 in saturated)

    def _skipped(self, name, n, r, saturated, w=1):
        n0, r0 = min((x for x in saturated if x[0] <= n and x[1] <= r), default=min(saturated))
        return {"system": name, "workers": w, "n": n, "r": r, "status": "skipped",
                "note": f"saturated at N={n0} R={r0}"}

    def _handle_tick(self, ticks: dict):
        def handle(child, message):
            if message[0] == "tick":
                ticks[child.proc.name] = message[1]
        return handle

    def scenario(self, system, n: int, r: int, baseline: int, probe: bool, *,
                 targets=None, private: int = 0, floor: bool = True) -> dict:
        """N streams, R events/s. `targets`: one (path?query, headers, tag) per stream instead
        of system.url; `private`: R is the total rate, each event owned by one of `private`
        subjects (tag i reads subject i's events only, see loadgen.TAG_SCALE)."""
        a = self.args
        self.run_id += 1
        run = self.run_id
        result = {"system": system.name, "workers": system.workers, "n": n, "r": r,
                  "probe": probe}
        procs = system.processes()
        workers = self.workers
        ticks: dict = {}
        on_tick = self._handle_tick(ticks)

        # 1. connect N streams, as fast as the server takes them
        per_client = r / private if private else r
        sampled = min(n, max(10, int(SAMPLE_BUDGET // per_client)))
        opened = self._connect(system.url, n, sampled, result, on_tick, targets)
        time.sleep(a.settle)
        procs = system.processes()
        idle_rss = rss_bytes(procs)
        result["rss_idle_mb"] = idle_rss / 2**20
        result["rss_base_mb"] = baseline / 2**20
        result["kb_per_conn"] = (idle_rss - baseline) / max(1, opened) / 1024

        # 2. produce for warm-up + steady seconds, watching the clients; the gRPC probe (every
        # gateway scenario but the private run) starts now and calls from the window's start
        start_at = time.time() + 0.3
        ws, we = start_at + a.warmup, start_at + a.warmup + a.steady
        grpc_proc = None
        if system.name == "gateway" and not private:
            grpc_proc = self._start_grpc_probe(system, a.steady, ws)
        for w in workers:
            w.send(("go", run, ws, we))
        if floor:
            self.floor.send(("go", run, ws, we))
        if private:
            self.producer.send(("produce", run, r, a.warmup + a.steady, start_at, private,
                                SUBJECT_PREFIX))
        else:
            self.producer.send(("produce", run, r, a.warmup + a.steady, start_at))
        groups = {"server": procs, "lg": [w.ps for w in workers], "producer": [self.producer.ps],
                  "kafka": self.kafka_ps, "floor": [self.floor.ps],
                  "self": [psutil.Process()]}
        lg_each = {w.proc.name: [w.ps] for w in workers}
        snap0 = snap1 = None
        rss_max = idle_rss
        aborted = ""
        produced = None
        profile_proc = None
        next_rss = 0.0
        conns = [self.producer.conn] + [w.conn for w in workers]
        by_conn = {w.conn: w for w in workers}
        while produced is None:
            for conn in wait_any(conns, timeout=0.1):
                message = conn.recv()
                if conn is self.producer.conn:
                    if message[0] == "produced":
                        produced = message[1]
                else:
                    on_tick(by_conn[conn], message)
            now = time.time()
            if snap0 is None and now >= ws:
                snap0 = self._snap(groups, lg_each)
                if system.name == "gateway" and (n, r) == PROFILE_AT and not probe and not private:
                    profile_proc = self._start_profile(system, procs,
                                                       f"w{system.workers}-n{n}-r{r}")
                elif private:
                    profile_proc = self._start_profile(system, procs, "private",
                                                       "private-profile.txt")
            if snap0 is not None and snap1 is None and now >= we:
                snap1 = self._snap(groups, lg_each)
            if snap0 is not None and snap1 is None and now >= next_rss:
                rss_max = max(rss_max, rss_bytes(procs))
                next_rss = now + 0.5
            if not aborted and ticks and now > start_at + 1.5:
                worst = max(t["worst_lag_us"] for t in ticks.values()) / 1e6
                open_now = sum(t["open"] for t in ticks.values())
                if worst > ABORT_LAG_S:
                    aborted = f"a client fell {worst:.1f}s behind"
                elif open_now == 0 and opened:
                    aborted = "every stream was closed"
                if aborted:
                    self.producer.send(("stop",))
        if snap1 is None:
            snap1 = self._snap(groups, lg_each)
            if snap0 is None:
                snap0 = snap1

        # 3. drain: wait until every open client holds every event (or time is up)
        total = produced["sent"]
        _drain(workers, by_conn, ("expect", total, private) if private else ("expect", total),
               a.drain if not aborted else 0.5)
        # 4. the books
        for w in workers:
            w.send(("finish",))
        finished_at = time.time()
        books = [w.recv_kind("result", 60, on_tick) for w in workers]
        floor_lat = np.zeros(0)
        if floor:
            self.floor.send(("finish",))
            floor_lat = np.frombuffer(self.floor.recv_kind("floor", 30), dtype=np.int64) / 1000.0
        if grpc_proc is not None:
            result["grpc"] = self._finish_grpc(grpc_proc, ws, we)
        if profile_proc is not None:
            self._finish_profile(profile_proc)
        window = max(1e-3, min(we, finished_at) - ws)
        lat = np.concatenate([np.frombuffer(b["lat"], dtype=np.int64) for b in books]) / 1000.0
        sent = np.concatenate([np.frombuffer(b["lat_sent"], dtype=np.int64) for b in books]) / 1e6
        result["p99_by_second"] = by_second(lat, sent, ws, we)
        elapsed = max(1e-3, snap1["t"] - snap0["t"])
        result.update({
            "held": sum(b["held"] for b in books),
            "closed_mid": sum(b["closed_mid"] for b in books),
            "missing": sum(b["missing"] for b in books),
            "clients_missing": sum(b["clients_missing"] for b in books),
            "dups": sum(b["dups"] for b in books),
            "stale": sum(b["stale"] for b in books),
            "produced": total, "rate_actual": total / max(1e-3, produced["seconds"]),
            "producer_late_ms": produced["worst_late_ms"],
            "delivered_per_s": sum(b["window_events"] for b in books) / window,
            "sampled_clients": sum(b["sampled_clients"] for b in books),
            "latency_samples": int(lat.size),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "max_ms": float(lat.max()) if lat.size else None,
            "latency_note": f"> {ABORT_LAG_S:g} s" if aborted and not lat.size else "",
            "cpu_pct": self._pct(snap0, snap1, "server", elapsed),
            "rss_mb": rss_max / 2**20,
            "lg_cpu_pct": self._pct(snap0, snap1, "lg", elapsed),
            "lg_cpu_max_pct": max(self._pct(snap0, snap1, k, elapsed) for k in lg_each),
            "producer_cpu_pct": self._pct(snap0, snap1, "producer", elapsed),
            "kafka_cpu_pct": self._pct(snap0, snap1, "kafka", elapsed),
            "machine_busy_pct": self._pct(snap0, snap1, "machine", elapsed),
            "server_wait_pct": self._pct(snap0, snap1, "server_wait", elapsed),
            "lg_wait_pct": self._pct(snap0, snap1, "lg_wait", elapsed),
            "floor_p50_ms": float(np.percentile(floor_lat, 50)) if floor_lat.size else None,
            "floor_p99_ms": float(np.percentile(floor_lat, 99)) if floor_lat.size else None,
            "aborted": aborted,
            "close_reasons": _merge(b["close_reasons"] for b in books),
        })
        ours = sum(result[k] for k in ("cpu_pct", "lg_cpu_pct", "producer_cpu_pct",
                                        "kafka_cpu_pct"))
        ours += self._pct(snap0, snap1, "floor", elapsed) + self._pct(snap0, snap1, "self", elapsed)
        result["others_cpu_pct"] = max(0.0, result["machine_busy_pct"] - ours)
        result["offered_per_s"] = opened * (result["rate_actual"] if not aborted else r)
        if private:     # each event goes to the one stream of its subject
            result["offered_per_s"] /= private
            result["subjects"] = private
        result["status"], result["note"] = self._status(result, opened, n)
        if private and result["stale"] and result["status"] != "saturated":
            result["status"] = "LOSS"
            result["note"] = "; ".join(x for x in (
                result["note"], f"{result['stale']} events reached another subject's stream") if x)
        return result

    def _connect(self, url, n, sampled, result, on_tick, targets=None) -> int:
        """Open n streams over the load-generator processes (at most --inflight connects in
        flight each); conn/s, failures and their reasons go to `result`. Returns how many
        streams are open."""
        workers, inflight = self.workers, self.args.inflight
        at = 0
        for w, share, s in zip(workers, split(n, len(workers)), split(sampled, len(workers))):
            if targets is None:
                w.send(("connect", url, share, s, inflight))
            else:
                w.send(("connect_each", url, targets[at:at + share], s, inflight))
                at += share
        replies = [w.recv_kind("connected", 120, on_tick) for w in workers]
        summary = connect_summary(replies)
        result["connect_failed"] = summary["failed"]
        result["connect_errors"] = summary["reasons"]
        result["conn_per_s"] = summary["per_s"]
        return summary["ok"]

    @staticmethod
    def _snap(groups, lg_each) -> dict:
        t = psutil.cpu_times()
        snap = {"t": time.time(), "machine": t.user + t.nice + t.system + t.irq + t.softirq + t.steal}
        for key, procs in {**groups, **lg_each}.items():
            snap[key] = cpu_seconds(procs)
        snap["server_wait"] = runqueue_wait_seconds(groups["server"])
        snap["lg_wait"] = runqueue_wait_seconds(groups["lg"])
        return snap

    @staticmethod
    def _pct(s0, s1, key, elapsed) -> float:
        return 100.0 * (s1[key] - s0[key]) / elapsed if elapsed > 0.01 else 0.0

    @staticmethod
    def _status(res, opened, n) -> tuple[str, str]:
        notes = []
        if res["aborted"]:
            notes.append(res["aborted"])
        if res["closed_mid"]:
            notes.append(f"{res['closed_mid']} streams closed by the server")
        if opened < n:
            notes.append(f"{n - opened} of {n} streams refused")
        share = res["delivered_per_s"] / res["offered_per_s"] if res["offered_per_s"] else 0
        if share < SATURATED_SHARE:
            notes.append(f"delivered {share:.0%} of offered")
        if notes:
            return "saturated", "; ".join(notes)
        if res["missing"] or res["dups"]:
            return "LOSS", f"{res['missing']} missing, {res['dups']} duplicate"
        return "ok", ""

    # -- optional measurements -----------------------------------------------------------------
    def _start_grpc_probe(self, system, seconds, start_at):
        """The GetStats probe, connected now, calling every 20 ms from `start_at` on for
        `seconds` (or until SIGTERM)."""
        if not getattr(self, "grpc_available", False):
            return None
        import socket
        try:
            socket.create_connection(("127.0.0.1", system.grpc_port), timeout=0.5).close()
        except OSError:
            self.grpc = {"error": f"nothing answers on GRPC_PORT {system.grpc_port}"}
            return None
        return subprocess.Popen([sys.executable, str(BENCH / "grpc_probe.py"), "--port",
                                 str(system.grpc_port), "--seconds", str(seconds),
                                 "--start-at", str(start_at)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=ROOT)

    def _finish_grpc(self, proc, t0, t1, stop=False) -> dict:
        """The probe's figures for calls started in [t0, t1] (`stop`: end it first)."""
        try:
            if stop and proc.poll() is None:
                proc.terminate()
            out, _ = proc.communicate(timeout=30)
            raw = json.loads(out.strip().splitlines()[-1])
            if "error" in raw:
                return {"error": raw["error"]}
            return window_stats(raw["calls"], raw["error_times"], t0, t1)
        except Exception as exc:  # noqa: BLE001
            proc.kill()
            return {"error": f"probe failed: {exc}"}

    def _start_profile(self, system, procs, tag: str, raw_name: str = "", until_stopped=False):
        """py-spy every worker of the gateway for --profile seconds (`until_stopped`: until
        _stop_profile): flame-<tag>[-<i>].svg, and the first worker's raw stacks (`raw_name`,
        default profile-<tag>.txt) for grep."""
        if not (self.args.profile or until_stopped):
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            log("--profile: py-spy not found (pip install py-spy)")
            return None
        master = system.procs[0].pid
        pids = [p.pid for p in procs if p.pid != master]
        if not pids:
            return None
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        duration = [] if until_stopped else ["-d", str(int(self.args.profile))]
        runs = []
        for i, pid in enumerate(pids):
            svg = out / (f"flame-{tag}.svg" if len(pids) == 1 else f"flame-{tag}-{i + 1}.svg")
            runs.append((svg, ["record", "-p", str(pid), *duration, "-f", "flamegraph",
                               "-o", str(svg), "-r", "100", "--nonblocking"]))
        raw = out / (raw_name or f"profile-{tag}.txt")
        runs.append((raw, ["record", "-p", str(pids[0]), *duration, "-f", "raw", "-o",
                           str(raw), "-r", "100", "--nonblocking"]))
        return [(path, subprocess.Popen([spy, *cmd], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True))
                for path, cmd in runs]

    def _stop_profile(self, runs):
        """End profiles started `until_stopped` (py-spy writes its output on SIGINT)."""
        for _path, proc in runs or ():
            proc.send_signal(signal.SIGINT)
        self._finish_profile(runs)

    def _finish_profile(self, runs):
        for path, proc in runs or ():
            try:
                _out, err = proc.communicate(timeout=self.args.profile + 30)
                if proc.returncode == 0 and path.exists():
                    log(f"py-spy: {path}")
                else:
                    log(f"py-spy failed for {path.name}: {(err or '').strip()[-300:]}")
            except subprocess.TimeoutExpired:
                proc.kill()


def still_rising(result) -> bool:
    """A probe that fell behind yet delivered most of its rate: a higher rate brings more
    events per batch, and so more deliveries per second, so the probes go on (the saturation
    figure is the most delivered; issue 15's scaling compares it between worker counts)."""
    offered = result.get("offered_per_s") or 0
    return bool(offered) and (result.get("delivered_per_s") or 0) >= RISING_SHARE * offered


def by_second(lat, sent, ws: float, we: float, step: float = 1.0) -> list:
    """The p99 (ms) of the events sent in each second (`step`) of the window: a backlog that
    drains falls from step to step, a steady delay stays, and a stall falls by the step."""
    out = []
    for start in np.arange(ws, we - step / 2, step):
        values = lat[(sent >= start) & (sent < start + step)]
        out.append(round(float(np.percentile(values, 99)), 1) if values.size else None)
    return out


def storm_books(books, storm_at: float, storm_end: float, ws: float) -> dict:
    """The storm's figures from the load-generator processes' books: the connected clients'
    (group 0) loss and their p99 before the storm ([ws, storm_at)) and during it ([storm_at,
    storm_end], by send time); the storm clients' (group 1) loss counted from the first event
    of the run each received."""
    lat = np.concatenate([np.frombuffer(b["lat"], dtype=np.int64) for b in books]) / 1000.0
    sent = np.concatenate([np.frombuffer(b["lat_sent"], dtype=np.int64) for b in books]) / 1e6
    during = lat[(sent >= storm_at) & (sent <= storm_end)]
    before = lat[(sent >= ws) & (sent < storm_at)]
    storm = [b["groups"].get(1) for b in books if b["groups"].get(1)]

    def p(values, q):
        return float(np.percentile(values, q)) if values.size else None
    firsts = [x for g in storm for x in (g["first_seq_min"], g["first_seq_max"]) if x is not None]
    admit = np.concatenate([np.frombuffer(g["admit_ms"], dtype=np.float64) for g in storm]) \
        if storm else np.zeros(0)
    admitted = sum(g["held"] + g["closed_mid"] for g in storm)
    span = (max(g["ready_max"] for g in storm) - min(g["started_min"] for g in storm)) \
        if admitted else None
    return {
        "admitted": admitted, "admit_s": span,
        "streams_per_s": admitted / max(1e-3, span) if span is not None else None,
        "admit_p50_ms": p(admit, 50), "admit_p99_ms": p(admit, 99),
        "held": sum(b["held"] for b in books),
        "closed_mid": sum(b["closed_mid"] for b in books),
        "missing": sum(b["missing"] for b in books),
        "clients_missing": sum(b["clients_missing"] for b in books),
        "dups": sum(b["dups"] for b in books),
        "sampled_clients": sum(b["sampled_clients"] for b in books),
        "latency_samples": int(during.size),
        "p50_ms": p(during, 50), "p99_ms": p(during, 99), "max_ms": p(during, 100),
        "pre_p99_ms": p(before, 99),
        "p99_by_step": by_second(lat, sent, storm_at, storm_end, STORM_STEP_S),
        "storm_held": sum(g["held"] for g in storm),
        "storm_closed_mid": sum(g["closed_mid"] for g in storm),
        "storm_missing": sum(g["missing"] for g in storm),
        "behind": sum(b.get("behind", 0) for b in [*books, *storm]),
        "storm_clients_missing": sum(g["clients_missing"] for g in storm),
        "storm_dups": sum(g["dups"] for g in storm),
        "storm_other_runs": sum(g["stale"] for g in storm),
        "storm_received": sum(g["received"] for g in storm),
        "storm_first_seq": [min(firsts), max(firsts)] if firsts else None,
    }


def storm_status(res) -> tuple[str, str]:
    """saturated (fell behind, streams refused or closed, storm not admitted), LOSS (an event
    missing or twice in either group), else ok."""
    notes = []
    if res.get("aborted"):
        stuck = res.get("not_admitted")
        notes.append(res["aborted"] + (
            f" ({res.get('admitted')} admitted; {stuck['tcp_connecting']} still in TCP "
            f"connect, {stuck['awaiting_headers']} awaiting headers, {stuck['not_started']} "
            f"not started)" if stuck else ""))
    if res.get("opened", res["n"]) < res["n"]:
        notes.append(f"{res['n'] - res['opened']} of {res['n']} connected streams refused")
    if res.get("refused"):
        why = ", ".join(f"{k}: {v}" for k, v in res.get("refused_reasons", {}).items())
        notes.append(f"{res['refused']} of {res['storm']} storm streams refused ({why})")
    closed = (res.get("closed_mid") or 0) + (res.get("storm_closed_mid") or 0)
    if closed:
        notes.append(f"{closed} streams closed by the server")
    lost = {k: res.get(k) or 0 for k in ("missing", "dups", "storm_missing", "storm_dups")}
    behind = res.get("behind") or 0
    if behind and behind == lost["missing"] + lost["storm_missing"] and not (
            lost["dups"] or lost["storm_dups"]):
        notes.append(f"{behind} events not delivered by the end of the drain (behind: no gap)")
    if notes:
        return "saturated", "; ".join(notes)
    if any(lost.values()):
        return "LOSS", (f"connected: {lost['missing']} missing, {lost['dups']} duplicate; storm: "
                        f"{lost['storm_missing']} missing, {lost['storm_dups']} duplicate")
    return "ok", ""


def connect_summary(replies) -> dict:
    """The load-generator processes' "connected" replies as one: streams open, failures by
    reason, streams/s = open / (last stream's headers - first connect), admission times."""
    ok = sum(x["ok"] for x in replies)
    started = min(x["started"] for x in replies)
    last = max(x["last_ready"] for x in replies) or time.time()
    admit = np.concatenate([np.frombuffer(x.get("admit_ms", b""), dtype=np.float64)
                            for x in replies]) if replies else np.zeros(0)
    return {"ok": ok, "failed": sum(x["failed"] for x in replies),
            "reasons": _merge(x["reasons"] for x in replies),
            "started": started, "last_ready": last, "seconds": max(1e-3, last - started),
            "per_s": ok / max(1e-3, last - started),
            "admit_p50_ms": float(np.percentile(admit, 50)) if admit.size else None,
            "admit_p99_ms": float(np.percentile(admit, 99)) if admit.size else None}



def _drain(workers, by_conn, expect: tuple, seconds: float) -> None:
    """Tell the load generators what was sent, then wait (up to `seconds`) until every open
    client holds all of it."""
    for w in workers:
        w.send(expect)
    deadline = time.time() + seconds
    seen: dict = {}
    while time.time() < deadline:
        for conn in wait_any([w.conn for w in workers], timeout=0.2):
            message = conn.recv()
            if message[0] == "tick":
                seen[by_conn[conn].proc.name] = message[1]
        if len(seen) == len(workers) and all(t["complete"] == t["open"] for t in seen.values()):
            return

def _merge(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rebuild:
        out = Path(args.out)
        saved = json.loads((out / "latest.json").read_text())
        doc = report.build(saved["results"], saved["machine"], report.load_reasons(out))
        print(doc["text"])
        (out / "latest.md").write_text(doc["markdown"])
        report.plot(saved["results"], out / "latest.png", saved["machine"])
        if (out / "auth.json").exists():
            auth = json.loads((out / "auth.json").read_text())
            results = auth_runs.resummarized(auth["results"])     # today's estimators
            auth_runs.write(out, results, auth["machine"], _auth_machine_lines(auth["machine"]),
                            auth["command"], quick=False)
        return 0
    bench = Bench(args)
    info = machine()
    started = time.time()
    described = {}
    auth_results: dict = {}
    try:
        bench.setup()
        info["kafka"] = kafka_version()     # after setup: a fresh checkout's run installs it
        info["load_generator"] = args.lg        # what ran (python when go had no toolchain)
        if not args.auth_only:
            described = bench.run()
        if args.auth:
            auth_results = auth_runs.AuthRuns(bench, TOPIC, SUBJECT_PREFIX,
                                              rss_bytes).run(args.auth)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.teardown()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info["python_loop_s_at_end"] = speed_probe()
    if args.auth_only:
        info["duration_s"] = round(time.time() - started)
        return write_auth(out, auth_results, info, argv)
    info["duration_s"] = round(time.time() - started)
    info["systems"] = described
    info["settings"] = {k: v for k, v in vars(args).items()
                        if k in ("warmup", "steady", "drain", "lg", "lg_procs", "buffer",
                                 "quick", "workers", "storm", "storm_clients", "storm_rate",
                                 "storm_pre", "storm_tail")}
    info["grpc"] = bench.grpc
    doc = report.build(bench.results, info, report.load_reasons(out))
    print(doc["text"])
    if args.quick:
        (out / "quick.md").write_text(doc["markdown"])
        log(f"quick run: {out / 'quick.md'} (latest.md is left to full runs)")
    else:
        (out / "latest.md").write_text(doc["markdown"])
        (out / "latest.json").write_text(json.dumps({"machine": info, "results": bench.results},
                                                    indent=1, default=str))
        drawn = report.plot(bench.results, out / "latest.png", info)
        png = ", latest.png" if drawn else " (no matrix rows: no plot)"
        log(f"wrote {out / 'latest.md'}, latest.json{png} in {info['duration_s']} s")
    failures = [r for r in bench.results if r.get("status") in ("LOSS", "error")]
    if args.auth:
        failures += [1] if write_auth(out, auth_results, info, argv) else []
    return 1 if failures else 0


def write_auth(out: Path, results: dict, info: dict, argv) -> int:
    """Print and write the auth runs' figures; 1 when one lost events or failed."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = "make bench" if not args else "bench/run " + " ".join(args)
    print(auth_runs.text(results), flush=True)
    mine = {**info, "systems": {}, "settings": {k: v for k, v in vars(parse_args(args)).items()
                                                if k.startswith(("auth_", "private_"))
                                                or k in ("warmup", "steady", "drain", "lg",
                                                         "lg_procs", "inflight", "buffer")}}
    mine["settings"]["lg"] = info.get("load_generator", mine["settings"]["lg"])
    auth_runs.write(out, results, mine, _auth_machine_lines(mine), command,
                    quick=bench_quick(args))
    return 1 if auth_runs.failures(results) else 0


def _auth_machine_lines(info: dict) -> list[str]:
    """The machine and software lines of auth.md (the auth runs have no peer systems)."""
    return [x for x in report._machine_lines(info) if not x.startswith("Systems:")]


def bench_quick(args) -> bool:
    return "--quick" in args


if __name__ == "__main__":
    sys.exit(main())
