"""Producer process: sends events to Kafka at a fixed rate, each with its send time.

Driven over a multiprocessing pipe by bench/bench.py:

    ("produce", run, rate, seconds, start_at)  seq 0..rate*seconds-1, the i-th at start_at + i/rate;
                                               answers ("produced", {...}); ("stop",) ends early
    ("quit",)

The event is the gateway's format; `data` starts with run, seq and t (send time, microseconds
since the epoch, taken just before `send`) in that order, which is what bench/loadgen.py reads.
"""
from __future__ import annotations

import os
import time

PAD = "x" * 96      # ~250-byte events, the size of the demo's
TICK = 0.005


def event(run: int, seq: int, sent_us: int) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_us // 1_000_000))
    return (f'{{"id":"b{run}-{seq}","type":"bench.tick","source":"bench",'
            f'"timestamp":"{stamp}.{sent_us // 1000 % 1000:03d}Z",'
            f'"data":{{"run":{run},"seq":{seq},"t":{sent_us},"pad":"{PAD}"}}}}').encode()


def produce(producer, conn, topic, run, rate, seconds, start_at) -> dict:
    total = max(1, int(round(rate * seconds)))
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    t0 = time.time()
    worst_late = 0.0
    seq = 0
    stopped = False
    # Ticks of at least TICK seconds: every event due by now is sent at once (its own send time
    # taken just before), so kafka-python can put them in one request. One request per event
    # at 500/s cost the producer a third of a core on this machine.
    while seq < total:
        if conn.poll(0) and conn.recv() == ("stop",):
            stopped = True
            break
        now = time.time()
        due = min(total, int((now - t0) * rate) + 1)
        if seq < due:
            worst_late = max(worst_late, now - (t0 + seq / rate))
        while seq < due:
            producer.send(topic, event(run, seq, time.time_ns() // 1000))
            seq += 1
        if seq < total:
            time.sleep(max(TICK, t0 + seq / rate - time.time()))
    sent = seq
    producer.flush(timeout=30)
    return {"sent": sent, "seconds": time.time() - t0, "worst_late_ms": worst_late * 1000,
            "stopped": stopped, "cpu": sum(os.times()[:2])}


def main(conn, brokers: str, topic: str):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=brokers.split(","), acks=1,
                             enable_idempotence=False, linger_ms=0, client_id="sse-bench")
    producer.send(topic, b'{"type":"bench.hello","data":{}}').get(timeout=30)
    conn.send(("ready",))
    try:
        while True:
            message = conn.recv()
            match message:
                case ("produce", run, rate, seconds, start_at):
                    conn.send(("produced", produce(producer, conn, topic, run, rate, seconds,
                                                   start_at)))
                case ("quit",):
                    break
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        producer.close(timeout=5)
