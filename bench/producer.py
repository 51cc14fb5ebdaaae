"""Producer process: sends events to Kafka at a fixed rate, each with its send time.

Driven over a multiprocessing pipe by bench/bench.py:

    ("produce", run, rate, seconds, start_at)  seq 0..rate*seconds-1, the i-th at start_at + i/rate;
                                               answers ("produced", {...}); ("stop",) ends early
    ("produce", run, rate, seconds, start_at, subjects, key_prefix)
                                               private events: the i-th is owned by subject
                                               i % subjects (Kafka key key_prefix + 4-digit
                                               number), tagged for it (loadgen.TAG_SCALE) and is
                                               that subject's seq i // subjects
    ("quit",)

The event is the gateway's format; `data` starts with run, seq and t (send time, microseconds
since the epoch, taken just before `send`) in that order, which is what bench/loadgen.py reads.
"""
from __future__ import annotations

import os
import time

from loadgen import TAG_SCALE

PAD = "x" * 96      # ~250-byte events, the size of the demo's
TICK = 0.005


def subject_key(prefix: str, number: int) -> str:
    return f"{prefix}{number:04d}"


def event(run: int, seq: int, sent_us: int, event_id: str = "") -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_us // 1_000_000))
    return (f'{{"id":"{event_id or f"b{run}-{seq}"}","type":"bench.tick","source":"bench",'
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


class PrivateProducer:
    """The private-events run: thousands of keyed events per second. kafka-python's send()
    costs about 45 us of CPU per record on the 2-core machine (20,000/s would take most of a
    core from the gateway); aiokafka's batch API (records appended in C, one batch per tick)
    about 10 us. Partition 0 is named, so no key is hashed: the bench topic has one."""

    def __init__(self, brokers: str):
        import asyncio

        from aiokafka import AIOKafkaProducer

        async def start():
            producer = AIOKafkaProducer(bootstrap_servers=brokers, acks=1, linger_ms=0,
                                        enable_idempotence=False, max_batch_size=1 << 18,
                                        client_id="sse-bench-private")
            await producer.start()
            return producer
        self.loop = asyncio.new_event_loop()
        self.producer = self.loop.run_until_complete(start())

    def produce(self, conn, topic, run, rate, seconds, start_at, subjects, key_prefix) -> dict:
        return self.loop.run_until_complete(self._produce(conn, topic, run, rate, seconds,
                                                          start_at, subjects, key_prefix))

    async def _produce(self, conn, topic, run, rate, seconds, start_at, subjects,
                       key_prefix) -> dict:
        import asyncio
        total = max(1, int(round(rate * seconds)))
        keys = [subject_key(key_prefix, i).encode() for i in range(subjects)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0 = time.time()
        worst_late, seq, stopped = 0.0, 0, False
        while seq < total:
            if conn.poll(0) and conn.recv() == ("stop",):
                stopped = True
                break
            now = time.time()
            due = min(total, int((now - t0) * rate) + 1)
            if seq < due:
                worst_late = max(worst_late, now - (t0 + seq / rate))
            batch = self.producer.create_batch()
            while seq < due:
                owner = seq % subjects
                value = event(run * TAG_SCALE + owner, seq // subjects, time.time_ns() // 1000,
                              f"p{run}-{seq}")
                if batch.append(key=keys[owner], value=value, timestamp=None) is None:
                    await self._send(batch, topic)
                    batch = self.producer.create_batch()
                    continue
                seq += 1
            await self._send(batch, topic)
            if seq < total:
                await asyncio.sleep(max(TICK, t0 + seq / rate - time.time()))
        await self.producer.flush()
        return {"sent": seq, "seconds": time.time() - t0, "worst_late_ms": worst_late * 1000,
                "stopped": stopped, "cpu": sum(os.times()[:2])}

    async def _send(self, batch, topic) -> None:
        if batch.record_count():
            batch.close()
            await self.producer.send_batch(batch, topic, partition=0)

    def close(self) -> None:
        self.loop.run_until_complete(self.producer.stop())
        self.loop.close()


def main(conn, brokers: str, topic: str):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=brokers.split(","), acks=1,
                             enable_idempotence=False, linger_ms=0, client_id="sse-bench")
    producer.send(topic, b'{"type":"bench.hello","data":{}}').get(timeout=30)
    conn.send(("ready",))
    private = None
    try:
        while True:
            message = conn.recv()
            match message:
                case ("produce", run, rate, seconds, start_at):
                    conn.send(("produced", produce(producer, conn, topic, run, rate, seconds,
                                                   start_at)))
                case ("produce", run, rate, seconds, start_at, subjects, key_prefix):
                    private = private or PrivateProducer(brokers)
                    conn.send(("produced", private.produce(conn, topic, run, rate, seconds,
                                                           start_at, subjects, key_prefix)))
                case ("quit",):
                    break
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        producer.close(timeout=5)
        if private is not None:
            private.close()
