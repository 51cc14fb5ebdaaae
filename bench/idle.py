"""What a gateway costs when nothing happens: its CPU with no streams, then with idle streams.

    .venv/bin/python bench/idle.py [--workers 1] [--seconds 30] [--streams 1000] [--rounds 2]
                                   [--partitions 3] [--rate 0]

Starts a Kafka broker of its own (scripts/kafka-local on --kafka-port, reset at the end) with a
topic of --partitions nobody writes to, and the gateway under gunicorn (bench/systems.py).
Once it is warm, it measures the CPU of all the gateway's processes (master and workers) over
--seconds, then opens --streams streams that receive nothing and measures again. Prints % of
one core per round and the median. The machine and what else runs on it matter: compare runs
made minutes apart on one machine.

With --rate R (and --streams 0) a producer in this process writes R small events a second
meanwhile, one partition after the other: what reading Kafka costs per event, by the number of
partitions.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from systems import Gateway  # noqa: E402

TOPIC = "bench.idle"


def kafka(port: int, command: str) -> str:
    env = {**os.environ, "KAFKA_LOCAL_PORT": str(port)}
    done = subprocess.run([str(ROOT / "scripts" / "kafka-local"), command], env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def create_topic(brokers: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    try:
        admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def cpu_percent(system: Gateway, seconds: float) -> float:
    procs = system.processes()
    before = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(seconds)
    after = sum(sum(p.cpu_times()[:2]) for p in procs)
    return (after - before) / seconds * 100


def open_streams(system: Gateway, count: int) -> list[socket.socket]:
    request = (f"GET /events?history=false HTTP/1.1\r\nHost: 127.0.0.1:{system.port}\r\n\r\n"
               .encode())
    streams = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", system.port))
        sock.sendall(request)
        streams.append(sock)
    for sock in streams:
        sock.settimeout(10)
        if not sock.recv(4096).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("a stream was refused")
    return streams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--kafka-port", type=int, default=39492)
    p.add_argument("--partitions", type=int, default=3, help="of the topic it reads")
    p.add_argument("--rate", type=int, default=0, help="events/s produced while measuring")
    a = p.parse_args()
    if a.rate and a.streams:
        p.error("--rate measures reading Kafka alone: give it --streams 0 (streams that do not "
                "read would fill their sockets and be cut as slow)")
    brokers = kafka(a.kafka_port, "start")
    try:
        create_topic(brokers, a.partitions)
        with tempfile.TemporaryDirectory(prefix="sse-idle-") as workdir:
            system = Gateway(brokers, TOPIC, Path(workdir), workers=a.workers)
            system.start()
            try:
                with producing(brokers, a.partitions, a.rate):
                    measure(system, a)
            finally:
                system.stop()
    finally:
        kafka(a.kafka_port, "reset")


@contextmanager
def producing(brokers: str, partitions: int, rate: int):
    """`rate` events a second to TOPIC, partition by partition, until the block ends (after
    5 s of warm-up)."""
    if not rate:
        yield
        return
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=brokers, linger_ms=5, batch_size=1 << 16)
    stop = threading.Event()

    def produce() -> None:
        sent, started = 0, time.monotonic()
        while not stop.is_set():
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(min(ahead, 0.01))
                continue
            event = (b'{"id":"e%d","type":"idle.tick","source":"bench",'
                     b'"timestamp":"2026-12-06T00:00:00Z","data":{"n":%d}}' % (sent, sent))
            producer.send(TOPIC, event, partition=sent % partitions)
            sent += 1

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    time.sleep(5)
    try:
        yield
    finally:
        stop.set()
        thread.join()
        producer.close()


def measure(system: Gateway, a) -> None:
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"gateway with {a.workers} worker(s), a topic of {a.partitions} partition(s), "
          f"{a.rate} events/s produced, {a.seconds:g} s per round (% of one core):")
    alone = [cpu_percent(system, a.seconds) for _ in range(a.rounds)]
    print(f"  no streams        {statistics.median(alone):5.2f}   "
          f"(all: {', '.join(f'{v:.2f}' for v in alone)})"
          + (f"; {statistics.median(alone) / 100 / a.rate * 1e6:.0f} us of CPU per event"
             if a.rate else ""))
    if a.streams:
        streams = open_streams(system, a.streams)
        time.sleep(2)
        held = [cpu_percent(system, a.seconds) for _ in range(a.rounds)]
        print(f"  {a.streams} idle streams {statistics.median(held):5.2f}   "
              f"(all: {', '.join(f'{v:.2f}' for v in held)})")
        for sock in streams:
            sock.close()


if __name__ == "__main__":
    main()
