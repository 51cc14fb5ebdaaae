"""What a Kafka replay costs the worker: CPU per record of a `since=0` stream, on real Kafka
and real gunicorn, for one checkout or several side by side (an A/B of two commits).

    .venv/bin/python bench/replay_cost.py [--records 10000] [--partitions 1] [--rounds 3]
                                          [--cycles 2] [--with-ids] [CHECKOUT ...]

Starts one Kafka broker (tests/harness.py, the test suite's own), writes --records events to
a topic of --partitions partitions (without `id` and `timestamp` fields, which the gateway
then adds; --with-ids: with both, so the record's text is sent as it is), then for each
CHECKOUT (default: this one; give two worktrees for an A/B) starts its gateway under
gunicorn with one worker and opens --rounds streams one after another, each `since=0` with
no history, read to the last event. Prints each round's worker CPU (user + system, from
/proc) per record, then each checkout's median. Checkouts take turns for --cycles cycles, in
an order that alternates, so that the machine's drift falls on both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import harness  # noqa: E402

TOPIC = "replay-cost"


def worker_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(port: int, records: int) -> None:
    """One since=0 stream, read until it has shown `records` events."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /events?since=0&history=false HTTP/1.1\r\nHost: bench\r\n\r\n")
        lines, seen = sock.makefile("rb"), 0
        while seen < records:
            line = lines.readline()
            if not line:
                raise RuntimeError(f"the stream ended after {seen} of {records} events")
            seen += line.startswith(b"id:")


def produce(bootstrap: str, records: int, partitions: int, with_ids: bool) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for i in range(records):
        event = {"type": "order.created", "source": "shop", "data": {"i": i, "note": "x" * 120}}
        if with_ids:
            event = {"id": f"e{i}", **event, "timestamp": "2026-12-02T12:00:00.000Z"}
            event["data"] = event.pop("data")       # the event's own key order
        producer.send(TOPIC, json.dumps(event, separators=(",", ":")).encode())
    producer.flush()
    producer.close()


def measure(checkout: Path, bootstrap: str, args, log: Path) -> list[float]:
    service = harness.Service(bootstrap, [TOPIC], log, LOG_LEVEL="WARNING",
                              SSE_REPLAY_MAX_EVENTS=str(args.records))
    harness.ROOT = checkout          # Service.start runs gunicorn in harness.ROOT
    try:
        service.start(expect_partitions=args.partitions, timeout=60)
    finally:
        harness.ROOT = ROOT
    try:
        worker = int(subprocess.check_output(["pgrep", "-P", str(service.process.pid)]).split()[0])
        read_all(service.port, args.records)            # warm: the reader's connection
        found = []
        for _ in range(args.rounds):
            before = worker_cpu(worker)
            read_all(service.port, args.records)
            found.append(1e6 * (worker_cpu(worker) - before) / args.records)
            print(f"{checkout}: {found[-1]:.1f} us CPU per record", flush=True)
        return found
    finally:
        service.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--with-ids", action="store_true")
    args = p.parse_args()
    checkouts = [c.resolve() for c in args.checkouts]
    kafka = harness.LocalKafka.on_free_ports()
    kafka.start()
    found: dict[Path, list[float]] = {c: [] for c in checkouts}
    try:
        produce(kafka.bootstrap, args.records, args.partitions, args.with_ids)
        log = ROOT / ".cache" / "bench" / "replay-cost-gateway.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        for cycle in range(args.cycles):
            for checkout in checkouts if cycle % 2 == 0 else checkouts[::-1]:
                found[checkout] += measure(checkout, kafka.bootstrap, args, log)
    finally:
        kafka.reset()           # stops the broker and removes its data
    print(f"\n{args.records} records, {args.partitions} partition(s), "
          f"{'with' if args.with_ids else 'without'} id and timestamp fields; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for checkout, values in found.items():
        print(f"{checkout}: median {statistics.median(values):.1f} us CPU per record "
              f"(min {min(values):.1f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()
