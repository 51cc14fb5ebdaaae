"""What the history costs in memory per kept event, by the size of the event's JSON.

    .venv/bin/python bench/history_memory.py [--sizes 200,2000,20000] [--events 2000]
                                             [--partitions 1]

Builds events from Kafka records the way the consumer does (events.events_from_records) and
keeps them in a history (HistoryActor.remember, no actor started), then prints the bytes
Python allocated for them (tracemalloc) per event, and that as a multiple of the record's
value. Each worker of an instance holds a history of its own. With --partitions N the records
go round the N partitions of one topic, at offsets a million apart from one partition to the
next (each event's id holds every partition's place: see "Event ids" in README.md).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.events import events_from_records  # noqa: E402
from actors.history import HistoryActor  # noqa: E402
from actors.kafka_reads import Record  # noqa: E402
from actors.resume import Frontier  # noqa: E402

BATCH = 100


def value(offset: int, pad: str) -> bytes:
    return json.dumps({"id": f"e{offset}", "type": "order.created", "source": "shop",
                       "timestamp": "2026-12-02T12:00:00.000Z", "data": {"pad": pad}}).encode()


def cost(size: int, events: int, partitions: int = 1) -> tuple[float, float, float]:
    """(bytes per kept event, mean bytes of a record's value, mean characters of an id) for
    values of about `size`."""
    pad = "x" * max(0, size - len(value(0, "")))
    gc.collect()
    tracemalloc.start()
    history, frontier = HistoryActor(size=events, topics=("t",)), Frontier(("t",))
    before, values, ids = tracemalloc.get_traced_memory()[0], 0, 0
    for first in range(0, events, BATCH):
        records = [Record("t", n % partitions, 1_000_000 * (n % partitions) + n,
                          1_764_000_000_000 + n, value(n, pad), ())
                   for n in range(first, first + BATCH)]
        values += sum(len(r.value) for r in records)
        kept = events_from_records(records, frontier).events
        ids += sum(len(event.sse_id) for event in kept)
        history.remember(kept)
        del records, kept
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / events, values / events, ids / events


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200,2000,20000", help="bytes of each event's JSON")
    p.add_argument("--events", type=int, default=2000, help="events kept (SSE_HISTORY_SIZE)")
    p.add_argument("--partitions", type=int, default=1, help="partitions the records go round")
    a = p.parse_args()
    print(f"Python {platform.python_version()}, {a.events} events kept, {a.partitions} "
          f"partition(s):")
    for size in (int(s) for s in a.sizes.split(",")):
        per_event, record, sse_id = cost(size, a.events, a.partitions)
        print(f"  JSON of {record:7,.0f} B, ids of {sse_id:5,.0f} characters: {per_event:9,.0f} B "
              f"per event in the history ({per_event - 2 * record - 3 * sse_id:+,.0f} B beyond "
              f"twice the JSON and three times the id)")


if __name__ == "__main__":
    main()
