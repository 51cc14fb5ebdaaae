"""Outbox against a plain model, under random interleavings of everything that uses it: the
broker's offers (refusable or forced) and control frames, the response greenlet's takes and
writes, going direct at any moment (a socket taking all, some or nothing of each send, or
failing), closes with and without a final frame, and time passing.

After every step the counts (queued, sent, dropped), the bytes judged, the oldest waiting
time, the ids (last written, last offered) and every accept or refusal are the model's; at the
end the bytes that reached the socket are exactly the accepted ones, in order, once.
"""
from __future__ import annotations

import random

import pytest

from actors.outbox import Outbox

CASES = 1000
STEPS = 60
FRAMES = [b"data: %d\n\n" % n * (1 + n % 4) for n in range(6)]    # shared, as the groups' are


def chunk(data: bytes) -> bytes:
    return b"%X\r\n%b\r\n" % (len(data), data) if data else b""


def unchunk(wire: bytes) -> bytes:
    payload, at = bytearray(), 0
    while at < len(wire):
        end = wire.index(b"\r\n", at)
        size = int(wire[at:end], 16)
        assert size, "an empty chunk ends the response"
        payload += wire[end + 2:end + 2 + size]
        assert wire[end + 2 + size:end + 4 + size] == b"\r\n"
        at = end + 4 + size
    return bytes(payload)


class Socket:
    def __init__(self, rng):
        self.rng, self.wire, self.fail = rng, bytearray(), False

    def send(self, data: bytes) -> int:
        if self.fail:
            raise ConnectionResetError
        n = self.rng.choice([len(data), len(data), 0, self.rng.randint(0, len(data))])
        if n == 0 and data:
            raise BlockingIOError
        self.wire += data[:n]
        return n


class Model:
    """What the outbox should do, kept as plain lists."""

    def __init__(self, capacity, max_bytes, patience):
        self.capacity, self.max_bytes, self.patience = capacity, max_bytes, patience
        # [bytes to write, events, last id, queued at, bytes judged (as queued: going direct
        # later frames them as chunks without judging them again)]
        self.waiting: list[list] = []
        self.writing = False
        self.direct = self.chunked = False
        self.closed = None
        self.sent = self.dropped = 0
        self.last_id = self.offered_id = None
        self.accepted = bytearray()         # payload the client must receive, in order

    def wire(self, data: bytes) -> bytes:
        return chunk(data) if self.direct and self.chunked else data

    def slow(self, now, more_bytes, more_events) -> bool:
        if not self.waiting:
            return False
        if more_bytes and sum(w[4] for w in self.waiting) + more_bytes > self.max_bytes:
            return True
        counted = [w[3] for w in self.waiting if w[1]]
        return (bool(counted) and sum(w[1] for w in self.waiting) + more_events > self.capacity
                and now - counted[0] >= self.patience)


def _run(seed: int) -> None:
    rng = random.Random(seed)
    capacity, patience = rng.randint(1, 6), rng.choice([0.0, 1.0, 5.0])
    max_bytes = rng.choice([40, 200, 10_000])
    box, model, sock = Outbox(capacity, max_bytes, patience), Model(capacity, max_bytes,
                                                                     patience), Socket(rng)
    now, taken, ids = 0.0, None, iter(range(10**6))
    chunked = rng.random() < 0.7

    def greenlet_writes(data):      # to the same socket: the order of all writes is kept
        # before go_direct the server frames each yielded write itself
        sock.wire += data if model.direct or not chunked else chunk(data)

    for _ in range(STEPS):
        op = rng.choice(["offer"] * 6 + ["force", "control", "take", "write", "tick",
                                          "direct", "close", "fail"])
        if op == "tick":
            now += rng.choice([0.5, 1.0, 3.0, 6.0])
        elif op in ("offer", "force"):
            frames = rng.choice(FRAMES)
            count = rng.choice([0, 1, 1, 2, 5])
            last = f"id-{next(ids)}" if count or rng.random() < 0.3 else None
            force = op == "force"
            was_waiting = bool(model.waiting)
            expect = (model.closed is None
                      and (force or not model.slow(now, len(frames), count)))
            before = len(sock.wire)
            got = box.offer(frames, count, last, force=force, now=now)
            if model.closed is None and not expect:
                model.dropped += count
                assert was_waiting, "refused while nothing waited"
            if expect:
                if last is not None:
                    model.offered_id = last
                w = model.wire(frames)
                if model.direct and not model.waiting and not model.writing:
                    if sock.fail:
                        model.closed = "client went away"
                        expect, w = False, None
                    else:
                        n = len(sock.wire) - before
                        assert sock.wire[before:] == w[:n]
                        if n == len(w):
                            if count:
                                model.sent += count
                                model.last_id = last if last is not None else model.last_id
                            w = None
                        else:
                            w = w[n:]
                if w is not None:
                    model.waiting.append([w, count, last, now, len(w)])
                if expect:
                    model.accepted += frames
            assert got == expect, (seed, op)
        elif op == "control":
            data = rng.choice([b": hb\n", b"id: x\n\n", b""])
            before = len(sock.wire)
            box.push_control(data)
            if model.closed is None:
                w = model.wire(data)
                if model.direct and not model.waiting and not model.writing:
                    if sock.fail:
                        model.closed = "client went away"
                        w = None
                    else:
                        n = len(sock.wire) - before
                        w = w[n:] if n < len(w) else None
                if w is not None:
                    model.waiting.append([w, 0, None, now, len(w)])
                if model.closed is None:
                    model.accepted += data
        elif op == "take" and taken is None:
            taken = box.take(0)
            data = b"".join(w[0] for w in model.waiting)
            count = sum(w[1] for w in model.waiting)
            counted = [w[2] for w in model.waiting if w[1]]
            assert taken == (data, count, counted[-1] if counted else None), seed
            model.waiting.clear()
            model.writing = model.direct and bool(data)
        elif op == "write" and taken is not None:
            data, count, last = taken
            greenlet_writes(data)
            box.written(count, last)
            model.writing = False
            if count:
                model.sent += count
                model.last_id = last
            taken = None
        elif op == "direct" and not model.direct and taken is None:
            model.direct, model.chunked = True, chunked
            box.go_direct(sock.send, chunked)
            for w in model.waiting:
                w[0] = model.wire(w[0])
        elif op == "close":
            final = rng.choice([b"", b": closing: bye\n"])
            box.close("bye", final)
            if model.closed is None:
                model.closed = "bye"
                if final:
                    model.waiting.append([model.wire(final), 0, None, now, 0])
                    model.accepted += final
        elif op == "fail" and rng.random() < 0.3:
            sock.fail = True
        # after every step
        assert box.queued == sum(w[1] for w in model.waiting), seed
        assert box.waiting == bool(model.waiting), seed
        assert (box.sent, box.dropped, box.last_id, box.offered_id) == (
            model.sent, model.dropped, model.last_id, model.offered_id), seed
        assert box.closed_reason == model.closed, seed
        assert box.finished == (model.closed is not None and not model.waiting), seed
        assert box.lagging(now) == model.slow(now, 0, 0), seed
    # the greenlet writes what it holds, then takes and writes the rest
    for _ in range(2):
        if taken is not None:
            greenlet_writes(taken[0])
            box.written(*taken[1:])
        taken = box.take(0)
    assert taken == (b"", 0, None)
    out = bytes(sock.wire)
    assert (unchunk(out) if chunked else out) == bytes(model.accepted), seed


@pytest.mark.parametrize("block", range(5))
def test_the_outbox_matches_its_model_under_random_interleavings(block):
    for seed in range(block * CASES // 5, (block + 1) * CASES // 5):
        _run(seed)
