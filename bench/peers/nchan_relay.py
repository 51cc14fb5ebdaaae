"""Kafka -> nchan relay for the C reference: publishes every Kafka event to nginx+nchan over HTTP.

aiokafka reads every partition of the topics from the end; each record becomes one
`POST /pub` (body: the record's JSON, `X-EventSource-Event`: its type), pipelined in order on
one keep-alive connection, so the relay adds microseconds, not a round trip per event.
Prints `ready` on stdout once it is positioned at the end of every partition.

    python nchan_relay.py --brokers 127.0.0.1:39092 --topics bench.events --nchan 127.0.0.1:8091
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer


async def read_responses(reader: asyncio.StreamReader, counts: dict) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await reader.readexactly(length)
        counts["answered"] += 1
        if status >= 300:
            counts["errors"] += 1
            if counts["errors"] <= 5:
                print(f"relay: nchan answered {status}", file=sys.stderr, flush=True)


async def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--nchan", required=True, help="host:port of nginx")
    args = parser.parse_args(argv)
    host, _, port = args.nchan.rpartition(":")

    consumer = AIOKafkaConsumer(bootstrap_servers=args.brokers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    consumer.subscribe(args.topics.split(","))   # without a group: every partition
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    partitions = sorted(consumer.assignment())
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)

    reader, writer = await asyncio.open_connection(host, int(port))
    counts = {"answered": 0, "errors": 0}
    responses = asyncio.create_task(read_responses(reader, counts))
    print("ready", flush=True)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        kind = str(json.loads(record.value).get("type", record.topic))
                    except (ValueError, AttributeError):
                        continue
                    writer.write(b"POST /pub HTTP/1.1\r\nHost: nchan\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"X-EventSource-Event: %s\r\nContent-Length: %d\r\n\r\n%s"
                                 % (kind.encode(), len(record.value), record.value))
            await writer.drain()
            if responses.done():
                responses.result()      # raises what ended the connection
    finally:
        await consumer.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
