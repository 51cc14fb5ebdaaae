"""Outbox.go_direct: the broker writes to the socket itself when nothing waits, in order, and
what the socket leaves is queued as wire bytes for the response greenlet."""
from __future__ import annotations

import pytest

from actors.outbox import LATENCY_SAMPLE, Outbox


class FakeSocket:
    """send() takes at most `room` bytes (None: all); BlockingIOError when full."""

    def __init__(self, room=None):
        self.room, self.wire, self.fail = room, b"", None

    def send(self, data: bytes) -> int:
        if self.fail:
            raise self.fail
        n = len(data) if self.room is None else min(self.room, len(data))
        if n == 0:
            raise BlockingIOError
        self.wire += data[:n]
        if self.room is not None:
            self.room -= n
        return n


def chunk(data: bytes) -> bytes:
    return b"%X\r\n" % len(data) + data + b"\r\n"


def direct(room=None, chunked=True, observe=None):
    box, sock = Outbox(capacity=10), FakeSocket(room)
    box.go_direct(sock.send, chunked, observe)
    return box, sock


def test_an_offer_with_nothing_waiting_is_written_at_once_as_one_chunk():
    box, sock = direct()
    assert box.offer(b"data: a\n\n", 1, "id-1")
    assert sock.wire == chunk(b"data: a\n\n")
    assert (box.sent, box.last_id, box.queued) == (1, "id-1", 0)
    assert box.take(timeout=0) == (b"", 0, None)      # nothing for the greenlet


def test_without_chunking_the_bytes_go_as_they_are():
    box, sock = direct(chunked=False)
    box.offer(b"data: a\n\n", 1, "id-1")
    box.push_control(b": hb\n\n")
    assert sock.wire == b"data: a\n\n: hb\n\n"


def test_what_the_socket_leaves_waits_and_later_offers_queue_behind_it_in_order():
    box, sock = direct(room=5)
    assert box.offer(b"data: a\n\n", 1, "id-1")
    assert box.offer(b"data: b\n\n", 1, "id-2")   # behind the remainder, not sent directly
    sock.room = None
    assert box.sent == 0 and box.queued == 2
    data, count, last = box.take(timeout=0)
    assert sock.wire + data == chunk(b"data: a\n\n") + chunk(b"data: b\n\n")
    assert (count, last) == (2, "id-2")


def test_offers_queue_while_the_greenlet_writes_what_it_took():
    box, sock = direct(room=0)
    box.offer(b"data: a\n\n", 1, "id-1")           # socket full: queued
    sock.room = None
    data, count, last = box.take(timeout=0)        # the greenlet now writes `data`
    box.offer(b"data: b\n\n", 1, "id-2")           # must not overtake it
    assert sock.wire == b""
    box.written(count, last)
    assert box.take(timeout=0)[0] == chunk(b"data: b\n\n")
    box.written(1, "id-2")
    box.offer(b"data: c\n\n", 1, "id-3")           # idle again: direct
    assert sock.wire == chunk(b"data: c\n\n") and box.sent == 3


def test_a_socket_error_closes_the_outbox_and_the_offer_is_not_taken():
    box, sock = direct()
    sock.fail = BrokenPipeError()
    assert not box.offer(b"data: a\n\n", 1, "id-1")
    assert box.closed_reason == "client went away" and box.finished
    assert box.dropped == 0 and box.sent == 0


def test_chunks_queued_before_going_direct_are_framed_then():
    box, sock = Outbox(capacity=10), FakeSocket()
    box.offer(b"data: h\n\n", 1, "id-0", force=True)
    box.go_direct(sock.send, True)
    assert box.take(timeout=0)[0] == chunk(b"data: h\n\n")
    box.close("bye", b": closing\n\n")
    assert box.take(timeout=0)[0] == chunk(b": closing\n\n")


def test_a_slow_socket_still_makes_a_slow_client():
    box, _sock = direct(room=0)
    for n in range(box.capacity + 1):
        box.offer(b"data: x\n\n", 1, f"id-{n}", now=0.0)
    assert not box.offer(b"data: y\n\n", 1, "id-late", now=box.patience + 1)
    assert box.dropped == 1


@pytest.mark.parametrize("writes", [1, LATENCY_SAMPLE, 3 * LATENCY_SAMPLE])
def test_the_latency_histogram_sees_the_first_of_every_sample_of_live_writes(writes):
    seen = []
    box, _sock = direct(observe=seen.append)
    for n in range(writes):
        box.offer(b"data: a\n\n", 1, f"id-{n}", oldest_ms=1000 + n)
    box.push_control(b": hb\n\n")                  # not an event: never observed
    assert seen == [1000 + n for n in range(0, writes, LATENCY_SAMPLE)]


def test_a_failed_send_closes_with_the_reason_the_stream_gives_for_its_error():
    box, sock = Outbox(capacity=10), FakeSocket()
    box.go_direct(sock.send, True, gone=lambda error: f"gone: {error.errno}")
    sock.fail = TimeoutError(110, "Connection timed out")
    box.push_control(b": hb\n")
    assert box.closed_reason == "gone: 110"
