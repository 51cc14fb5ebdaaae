"""The Python peer: what a user might write instead of the gateway, in ~80 lines.

Starlette + uvicorn (one process) + aiokafka. One consumer reads every partition of the topics
from the end; each event is framed once (id, event, data) and put on every client's bounded
asyncio.Queue; each client's StreamingResponse yields one event per write. A client whose queue
is full is cut off (as the gateway does), so loss shows up as missing events.

    KAFKA_BROKERS=127.0.0.1:39092 KAFKA_TOPICS=bench.events HTTP_PORT=8090 python starlette_peer.py

uvicorn's loop and HTTP implementation are pinned (PEER_LOOP=asyncio, PEER_HTTP=h11: what
`pip install starlette uvicorn aiokafka` gives) so results do not change when uvloop or httptools
happen to be installed; set them to uvloop / httptools to try the faster ones.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os

import uvicorn
from aiokafka import AIOKafkaConsumer
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
TOPICS = [t for t in os.environ.get("KAFKA_TOPICS", "bench.events").split(",") if t]
BUFFER = int(os.environ.get("SSE_EVENT_BUFFER_SIZE", "1000"))

class Subscriber:
    __slots__ = ("queue", "cut")

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=BUFFER)
        self.cut = False        # too slow: its stream ends once the queue is drained


clients: set[Subscriber] = set()
state = {"ready": False, "consumed": 0}


def frame(msg) -> bytes:
    body = json.loads(msg.value)
    return (f"id: {msg.topic}:{msg.partition}:{msg.offset}\nevent: {body.get('type', msg.topic)}\n"
            f"data: {json.dumps(body, separators=(',', ':'))}\n\n").encode()


async def pump():
    consumer = AIOKafkaConsumer(bootstrap_servers=BROKERS, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    try:
        consumer.subscribe(TOPICS)      # without a group: every partition, no rebalancing
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        state["ready"] = True
        async for msg in consumer:
            try:
                data = frame(msg)
            except ValueError:
                continue
            state["consumed"] += 1
            for sub in list(clients):
                try:
                    sub.queue.put_nowait(data)
                except asyncio.QueueFull:
                    sub.cut = True
                    clients.discard(sub)
    finally:
        await consumer.stop()


async def events(request):
    sub = Subscriber()
    clients.add(sub)

    async def stream():
        try:
            yield b"retry: 3000\n\n"
            while not (sub.cut and sub.queue.empty()):
                yield await sub.queue.get()
        finally:
            clients.discard(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def health(request):
    return JSONResponse({"ready": state["ready"], "clients": len(clients),
                         "consumed": state["consumed"]}, status_code=200 if state["ready"] else 503)


@contextlib.asynccontextmanager
async def lifespan(app):
    task = asyncio.create_task(pump())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


app = Starlette(routes=[Route("/events", events), Route("/health", health)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("HTTP_PORT", "8090")),
                loop=os.environ.get("PEER_LOOP", "asyncio"), http=os.environ.get("PEER_HTTP", "h11"),
                log_level="warning", backlog=4096, timeout_graceful_shutdown=1)
