"""A slow client's backlog is the frames its group shares, not a copy of its own: the stream
takes small chunks joined up to JOIN_BYTES and a larger chunk alone, as it is. (Joining all
that waited, 30 slow clients of 900 KB events held 2.6 GB, 85 MB each.)"""
import tracemalloc

from actors import outbox
from actors.outbox import Outbox
from tests.unit.test_outbox_direct import FakeSocket

KB = 1024
JOIN_BYTES = getattr(outbox, "JOIN_BYTES", 1 << 20)
LARGE = JOIN_BYTES // 2 + KB         # two of them are more than one write joins


def test_a_large_chunk_is_taken_as_it_is_and_what_follows_waits_counted():
    box = Outbox(1000, max_bytes=10_000 * KB)
    big = [b"%d" % i * LARGE for i in range(3)]
    for i, frames in enumerate(big):
        assert box.offer(frames, 1, f"id-{i}", now=float(i))
    data, count, last = box.take(0)
    assert data is big[0] and (count, last) == (1, "id-0")
    assert box.queued == 2 and box.waiting
    # the budget still sees what waits: two of the three
    assert not box.lagging(10.0, 10_000 * KB - 2 * LARGE, 1)
    assert box.lagging(10.0, 10_000 * KB - 2 * LARGE + 1, 1)


def test_small_chunks_are_joined_up_to_the_limit_in_order():
    box = Outbox(10_000)
    frames = [b"data: %06d\n\n" % i + b"x" * 100 for i in range(20_000)]    # 2.3 MB
    for i, f in enumerate(frames):
        box.offer(f, 1, str(i), now=0.0)
    taken, counts = [], 0
    while box.waiting:
        data, count, last = box.take(0)
        assert len(data) <= JOIN_BYTES
        taken.append(data)
        counts += count
        box.written(count, last)
    assert b"".join(taken) == b"".join(frames) and counts == 20_000
    assert box.last_id == "19999" and box.queued == 0


def test_slow_clients_of_one_group_hold_no_copy_of_its_frames():
    frames = [bytes([65 + i]) * LARGE for i in range(5)]     # one group's batches
    boxes = [Outbox(1000, max_bytes=100_000 * KB) for _ in range(20)]
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for box in boxes:
            for i, f in enumerate(frames):
                box.offer(f, 1, str(i), now=0.0)
        taken = [box.take(0)[0] for box in boxes]
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert all(data is frames[0] for data in taken)
    assert held < 100 * KB, held        # 20 x 2.5 MB joined, before


def test_a_socket_that_keeps_taking_a_little_at_a_time_is_not_slow_however_large_a_burst():
    """As when the stream took all that waited: what it takes counts as written, and what
    stays waits afresh (the review: keeping each chunk's time cut a client mid-burst)."""
    box = Outbox(3, max_bytes=100_000 * KB, patience=5.0)
    for i in range(8):
        assert box.offer(b"x" * LARGE, 1, str(i), now=float(i) / 8)
    for step in range(1, 7):            # one taken a second: slower than the burst came
        box.take(0)
        box.written(1, str(step - 1))
        assert box.offer(b"y", 1, "new", now=5.0 + step)
    assert not box.lagging(11.0) and box.lagging(16.0)     # the time rule, from the last take


def test_what_a_socket_leaves_of_a_shared_chunk_is_not_copied():
    box, sock = Outbox(10), FakeSocket(room=10)
    box.go_direct(sock.send, chunked=False)
    frames = b"z" * (500 * KB)
    assert box.offer(frames, 1, "1")
    data, count, _last = box.take(0)
    assert isinstance(data, memoryview) and data.obj is frames
    assert bytes(data) == frames[10:] and count == 1
