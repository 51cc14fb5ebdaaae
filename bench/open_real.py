"""What opening a stream costs a real gunicorn worker, counted in instructions.

    .venv/bin/python bench/open_real.py [--opens 1000] [--inflight 64] [--rounds 3]
                                        [--kinds off,ticket,bearer,anonymous] [--cache-sim]

Each kind gets a gateway of its own, started as bench/run's auth connect run starts it (gunicorn,
one gevent worker, LOG_LEVEL=WARNING, rate limits off, one PYTHONHASHSEED for all), but under
valgrind's callgrind (needs valgrind), against a Kafka broker of its own (scripts/kafka-local on
--kafka-port: bench/run's, so never beside it). In each of --rounds rounds, once the last
round's streams are gone, the worker's counts are zeroed (callgrind_control), an idle window
is counted, then --opens streams of `/events?history=false` are opened --inflight at a time
and held, as the connect run holds them, and counted. Every credential is new: a token minted
for a new subject, or a ticket issued with the gateway's AUTH_TICKET_SECRET, as an instance
sharing it would.

A worker under callgrind runs about 50 times slower while its timers (Kafka's polls, the
reports) fire as often as ever, so the idle window's rate times the opens' duration is taken
off ("net", what the opens did); "total" keeps it. Prints each kind's median over the rounds
and the ratios no auth / kind: unlike CPU time on a shared VM (20 % apart between runs), a
count repeats within a few per cent, and it is the real server's: gunicorn's parsing, the
fast /events path, the actors, the first write (bench/open_micro.py counts the in-process
part alone). About 10 minutes for the four kinds, two at a time. --cache-sim adds the L1
cache misses per open of callgrind's simulation of this machine's caches (about twice as long).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from auth_runs import SCOPE, AuthRuns, connect_env, mint  # noqa: E402
from bench import Kafka  # noqa: E402
from systems import ROOT, Gateway  # noqa: E402

from actors.auth.identity import Identity  # noqa: E402
from actors.auth.tickets import issue  # noqa: E402

KINDS = ("off", "ticket", "bearer", "anonymous")
JWT_SECRET, TICKET_SECRET = secrets.token_hex(32), secrets.token_hex(32)
TOPIC = "open-real"
PATH = "/events?history=false"
IDLE_S = 4.0


class CountedGateway(Gateway):
    """A gateway whose master and worker run under callgrind, their counts in its workdir."""

    def __init__(self, *args, cache_sim: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache_sim = cache_sim

    def spawn(self, args, log_name, env=None, stdout=None, cwd=ROOT):
        return super().spawn(["valgrind", "--tool=callgrind", "--trace-children=yes",
                              f"--cache-sim={'yes' if self.cache_sim else 'no'}",
                              f"--callgrind-out-file={self.workdir}/callgrind.%p", *args],
                             log_name, env=env, stdout=stdout, cwd=cwd)

    def wait(self, ready, what, timeout=60.0):
        super().wait(ready, what, timeout=600.0)        # a start under callgrind: ~1 minute

    def worker(self) -> int:
        return self.processes()[1].pid

    def control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.worker())], check=True,
                       capture_output=True, timeout=300)

    def counted(self) -> list[int]:
        """The events of the worker's latest dump (zeroed before it): instructions, then with
        --cache-sim data reads and writes, I1, D1 read and D1 write misses (and the LL's)."""
        pid = self.worker()
        parts = sorted(self.workdir.glob(f"callgrind.{pid}.*"), key=lambda p: int(p.suffix[1:]))
        text = parts[-1].read_text(errors="replace")
        return [int(n) for n in re.search(r"^(?:summary|totals): ([\d ]+)$", text,
                                             re.M).group(1).split()]

    def window(self, work, *args) -> tuple[object, list[int], float]:
        """(what `work(*args)` returns, the worker's events and the seconds while it ran)."""
        self.control("-z")
        started = time.monotonic()
        done = work(*args)
        self.control("-d")
        return done, self.counted(), time.monotonic() - started


def kind_env(kind: str, seed: int) -> dict:
    return connect_env(kind, JWT_SECRET, TICKET_SECRET, seed, GUNICORN_CMD_ARGS="--timeout 600")


def credentials(kind: str, count: int) -> list:
    if kind in ("off", "anonymous"):
        return [None] * count
    names = [f"real-{secrets.token_hex(6)}" for _ in range(count)]
    if kind == "bearer":
        return [mint(JWT_SECRET, name) for name in names]
    expires, now = time.time() + 3600, time.time()
    return [issue(Identity(name, tuple(SCOPE["event_types"]), tuple(SCOPE["sources"]), expires),
                  TICKET_SECRET.encode(), 600, now) for name in names]


def open_stream(port: int, kind: str, credential) -> socket.socket:
    """A stream opened and held: its response head and first frame read."""
    target = PATH + (f"&ticket={credential}" if kind == "ticket" else "")
    auth = f"Authorization: Bearer {credential}\r\n" if kind == "bearer" else ""
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
                 f"{auth}\r\n".encode())
    got = b""
    while b"retry:" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{kind}: the stream ended before its first frame: {got[:200]!r}")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"{kind}: {got[:200]!r}")
    return sock


def measure(kind: str, gateway: CountedGateway, a) -> list[dict]:
    with ThreadPoolExecutor(a.inflight) as pool:
        def open_all(given: list) -> list:
            return list(pool.map(lambda c: open_stream(gateway.port, kind, c), given))

        for sock in open_all(credentials(kind, 50)):       # warm-up
            sock.close()
        rounds = []
        for _ in range(a.rounds):
            AuthRuns.wait_idle(gateway, 600)     # the last round's streams cleaned up
            time.sleep(2.0)
            _, idle, idle_s = gateway.window(time.sleep, IDLE_S)
            held, events, took = gateway.window(open_all, credentials(kind, a.opens))
            for sock in held:
                sock.close()
            per_open = {"total": events[0] / a.opens,
                        "net": (events[0] - idle[0] / idle_s * took) / a.opens}
            if a.cache_sim:     # with the idle window's share, as "total"
                per_open.update(i1=events[3] / a.opens, d1=(events[4] + events[5]) / a.opens)
            rounds.append(per_open)
    return rounds


def run_kind(kind: str, seed: int, kafka: Kafka, workdir: Path, a) -> list[dict]:
    out = workdir / kind
    out.mkdir()
    gateway = CountedGateway(kafka.bootstrap, TOPIC, out, cache_sim=a.cache_sim,
                             env=kind_env(kind, seed), log_name="gateway.log")
    try:
        gateway.start()
        return measure(kind, gateway, a)
    finally:
        gateway.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--opens", type=int, default=1000)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default="off,ticket,bearer,anonymous")
    p.add_argument("--kafka-port", type=int, default=39092)
    p.add_argument("--cache-sim", action="store_true",
                   help="also count L1 cache misses (callgrind's simulation, ~2x slower)")
    a = p.parse_args()
    kinds = a.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        sys.exit(f"unknown kinds {sorted(unknown)}: choose from {', '.join(KINDS)}")
    if "off" not in kinds:
        sys.exit("--kinds needs off: the ratios are to it")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/open_real.py needs valgrind (apt-get install valgrind)")
    kafka = Kafka(a.kafka_port)
    kafka.start()
    seed = secrets.randbelow(2**32)
    try:
        kafka.create_topic(TOPIC)
        with tempfile.TemporaryDirectory(prefix="open-real-") as d, \
                ThreadPoolExecutor(2) as pool:
            found = dict(zip(kinds, pool.map(
                lambda k: run_kind(k, seed, kafka, Path(d), a), kinds), strict=True))
    finally:
        kafka.run("stop")
    report(found, a, seed)


def report(found: dict, a, seed: int) -> None:
    median = {kind: {key: statistics.median(r[key] for r in rounds) for key in ("total", "net")}
              for kind, rounds in found.items()}
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"gunicorn under callgrind, {a.rounds} rounds of {a.opens} opens, {a.inflight} at a "
          f"time, PYTHONHASHSEED {seed}. Instructions per open (median of the rounds):")
    for kind, m in median.items():
        spread = ", ".join(f"{r['net'] / 1000:.0f}k/{r['total'] / 1000:.0f}k" for r in found[kind])
        print(f"  {kind:9} net {m['net'] / 1000:6.0f}k  total {m['total'] / 1000:6.0f}k  "
              f"no auth / {kind}: net {median['off']['net'] / m['net']:.2f}, total "
              f"{median['off']['total'] / m['total']:.2f}  (rounds, net/total: {spread})")
    if "i1" in found["off"][0]:
        print("L1 misses per open, as total (callgrind's simulation of this machine's caches):")
        misses = {kind: {key: statistics.median(r[key] for r in rounds) for key in ("i1", "d1")}
                  for kind, rounds in found.items()}
        for kind, m in misses.items():
            print(f"  {kind:9} instructions {m['i1'] / 1000:5.1f}k  data {m['d1'] / 1000:5.1f}k  "
                  f"kind / no auth: {m['i1'] / misses['off']['i1']:.2f} and "
                  f"{m['d1'] / misses['off']['d1']:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
