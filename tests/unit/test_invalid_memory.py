"""Invalid records are let go with their batch, not when a garbage collection comes: a worker
collects rarely (service/main.py _tune_gc), and a producer of oversized events grew it by the
size of every one it skipped (180 MB a batch of 200 records of 900 KB)."""
import gc
import tracemalloc

import pytest

from actors.events import InvalidRecord, events_from_records
from actors.kafka_reads import Record
from actors.resume import Frontier
from actors.settings import Settings
from actors.warm_start import WarmStart

MB = 1_000_000


def _records(value: bytes, count: int = 10) -> list[Record]:
    """Records of `value`, each its own copy (as Kafka's are)."""
    return [Record("t", 0, i, 1000, bytes(bytearray(value)), ()) for i in range(count)]


@pytest.fixture
def held():
    """The bytes still allocated, after a step, of what the step allocated; no collection."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        yield lambda: tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
        gc.enable()


# too large, not JSON, not an object, an integer too long to parse (an error with a context)
INVALID = [b"{" + b"x" * MB, b"x" * (MB // 10), b"[" + b"1," * (MB // 20) + b"1]",
           b'{"i": ' + b"9" * 5000 + b', "pad": "' + b"x" * (MB // 10) + b'"}']


@pytest.mark.parametrize("value", INVALID, ids=["too-large", "not-json", "list", "long-int"])
def test_the_live_batch_of_invalid_records_is_let_go(held, value):
    batch = events_from_records(_records(value), Frontier(("t",), {}), max_bytes=MB // 2)
    assert len(batch.invalid) == 10 and all(isinstance(why, InvalidRecord)
                                            for _r, why in batch.invalid)
    reasons = [str(why) for _r, why in batch.invalid]
    del batch
    assert held() < 64_000, reasons[0]


@pytest.mark.parametrize("value", INVALID, ids=["too-large", "not-json", "list", "long-int"])
def test_the_warm_start_keeps_no_invalid_record(held, value):
    settings = Settings.defaults(sse_max_event_bytes=MB // 2)
    warm = WarmStart(settings, {("t", 0): 0}, {("t", 0): 100}, 0.0)
    warm.add(_records(value))
    assert len(warm.skipped[("t", 0)][0]) == 10
    assert held() < 64_000
