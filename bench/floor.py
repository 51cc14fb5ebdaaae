"""The Kafka floor: one plain consumer's latency (producer send -> poll) during every scenario.

Whatever a system adds shows as its latency minus this floor; on a busy machine the floor
also shows how much of the latency is the machine's, not the server's.

    ("go", run, window_start, window_end)   record events of `run` (or tagged with it, see
                                            loadgen.TAG_SCALE) sent inside the window
    ("finish",)                             answers ("floor", latencies_us_bytes) and resets
    ("quit",)
"""
from __future__ import annotations

import time
from array import array

from loadgen import EVENT, TAG_SCALE


def main(conn, brokers: str, topic: str):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=brokers.split(","), group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100,
                             client_id="sse-bench-floor")
    partitions = None
    while not partitions:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            time.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)
    conn.send(("ready",))
    run, ws, we, lat = -1, 0, 0, array("q")
    try:
        while True:
            while conn.poll(0):
                match conn.recv():
                    case ("go", r, start, end):
                        run, ws, we = r, int(start * 1e6), int(end * 1e6)
                        consumer.seek_to_end(*tps)
                        for tp in tps:
                            consumer.position(tp)
                    case ("finish",):
                        conn.send(("floor", lat.tobytes()))
                        run, lat = -1, array("q")
                    case ("quit",):
                        return
            if run < 0:             # idle between scenarios: no fetching, no CPU
                time.sleep(0.05)
                continue
            batches = consumer.poll(timeout_ms=50)
            now = int(time.time() * 1e6)
            for records in batches.values():
                for record in records:
                    m = EVENT.search(record.value or b"")
                    if m and run in (int(m[1]), int(m[1]) // TAG_SCALE) \
                            and ws <= int(m[3]) <= we:
                        lat.append(now - int(m[3]))
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        consumer.close()
