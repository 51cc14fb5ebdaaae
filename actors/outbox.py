"""A client's outbound buffer: the broker (and, for a resume, the replay actor) offers encoded
frames, the stream takes them.

Every side runs as a greenlet of one worker thread, so the fast path needs no locks: the
broker appends already-encoded bytes (one chunk per client per Kafka batch, the same bytes
object for every client of a group) and the response generator takes what waits in one write:
small chunks joined into at most JOIN_BYTES, a larger one alone, as it is. Nothing larger is
copied per client: a slow client's backlog stays the frames its group shares.

Slowness is judged by the client's socket, not by the size of a batch: whatever a batch
brings is accepted while the stream keeps taking (writing) what waits for it. A client is
too slow when events wait for its socket too long or take too much memory:
  * more than `capacity` events have waited over PATIENCE_SECONDS for a write to finish, or
  * the bytes waiting exceed `max_bytes` (SSE_EVENT_BUFFER_SIZE x SSE_MAX_EVENT_BYTES).
Data the stream has taken counts as written: a socket that keeps accepting writes is never
slow, however large a burst.

Once the response has sent its headers, the stream may hand the outbox its socket
(`go_direct`): then an offer that finds nothing waiting is written by the broker at once with
one non-blocking send, without waking the response greenlet (a wake, a generator step and
the server's write cost ~4x the send itself). What the socket does not take at once is queued
as wire bytes, and the greenlet writes it; while it does, offers queue behind it, in order.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

PATIENCE_SECONDS = 5.0
JOIN_BYTES = 1 << 20    # at most this much is copied into one write of several chunks
_last_wire: tuple = (None, b"")   # (frames, their chunk): one group's frames, framed once
# The latency histogram sees the first of every 32 live writes of a stream: an observation
# costs ~2.3 us (prometheus_client's multiprocess mode), a write ~9 us in all; one in 8 took
# 4 % of a worker's samples at 1,000 streams x 100 events/s.
LATENCY_SAMPLE = 32


class HubSignal:
    """An Event for one waiting greenlet on the gevent hub (the stream's response): 48 bytes
    where gevent's Event takes 150, and the waiter parks straight on the hub. A parked
    greenlet keeps its C stack, and Event.wait's call levels cost ~1 KB per idle stream."""
    __slots__ = ("_set", "_waiter")

    def __init__(self):
        self._set = False
        self._waiter = None         # the greenlet in wait(), if any

    def set(self) -> None:
        if not self._set:           # set already: the waiter is woken or has yet to look
            self._set = True
            if self._waiter is not None:
                _hub.loop.run_callback(self._wake)

    def clear(self) -> None:
        self._set = False

    def wait(self, timeout: float | None = None) -> None:
        if self._set or (timeout is not None and timeout <= 0):
            return
        self._waiter = getcurrent()
        timer = None
        if timeout is not None:
            timer = _hub.loop.timer(timeout)
            timer.start(self._wake)
        try:
            _hub.switch()
        finally:
            self._waiter = None     # a wake-up still scheduled finds no one: never a stray switch
            if timer is not None:
                timer.close()

    def _wake(self) -> None:
        """Run by the hub: resume the waiter, if it still waits."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch()


def _event_class():
    """HubSignal when the process is patched: threading.Event over patched locks is a
    pure-Python Condition, and its set()/wait() cost most of the fan-out (py-spy)."""
    global _hub, getcurrent
    try:
        from gevent import get_hub, monkey
        if monkey.is_module_patched("threading"):
            from greenlet import getcurrent
            _hub = get_hub()
            return HubSignal
    except ImportError:
        pass
    return threading.Event


def _went_away(_error: OSError) -> str:
    return "client went away"


_EVENT = None
_hub: Any = None            # gevent's hub and greenlet.getcurrent, once HubSignal is chosen
getcurrent: Any = None


class Outbox:
    """Owned by the client's ClientActor (see ClientActor.outbox: who else uses it, and why
    that is safe without locks)."""
    __slots__ = ("capacity", "max_bytes", "patience", "_chunks", "_queued", "_bytes", "_since",
                 "_wake", "closed_reason", "sent", "dropped", "last_id", "offered_id",
                 "taken_oldest_ms", "_send", "_chunked", "_writing", "_observe", "_direct_writes",
                 "_gone")

    def __init__(self, capacity: int, max_bytes: int | None = None,
                 patience: float = PATIENCE_SECONDS):
        global _EVENT
        if _EVENT is None:
            _EVENT = _event_class()
        self.capacity = capacity
        self.max_bytes = max_bytes if max_bytes is not None else capacity * 262144
        self.patience = patience
        # (frames, events, last id, oldest_ms) of each chunk, in order; a list: an idle deque
        # holds a 64-slot block (~600 B)
        self._chunks: list = []
        self._queued = 0            # events waiting to be taken for writing
        self._bytes = 0             # their bytes
        # monotonic time the oldest waiting event was queued, since the stream last took some
        self._since: float | None = None
        self._wake = _EVENT()
        self.closed_reason: str | None = None
        self.sent = 0
        self.dropped = 0
        self.last_id: str | None = None
        self.offered_id: str | None = None  # of the last event accepted (written or not yet)
        self.taken_oldest_ms = 0    # Kafka timestamp of the oldest live event in the last take()
        self._send: Callable[[bytes], int] | None = None   # non-blocking send, once direct
        self._chunked = False
        self._writing = False       # the response greenlet is writing what it took
        self._observe: Callable[[int], None] | None = None
        self._direct_writes = 0
        self._gone: Callable[[OSError], str] = _went_away

    def go_direct(self, send, chunked: bool, observe=None, gone=None) -> None:
        """Write offers straight to the socket from now on (see the module's docstring).

        `send(bytes) -> int` must never block (it raises BlockingIOError when the socket is
        full); `chunked`: frame each write as an HTTP/1.1 chunk; `observe(oldest_ms)` sees the
        first of every LATENCY_SAMPLE live writes (the delivery-latency histogram);
        `gone(error)` is the reason to close with when a send fails (the stream's own words)."""
        self._chunked = chunked
        self._observe, self._direct_writes = observe, -1
        if gone is not None:
            self._gone = gone
        self._chunks[:] = [(self._wire(data), n, last, oldest)
                           for data, n, last, oldest in self._chunks]
        self._send = send

    def _wire(self, data: bytes) -> bytes:
        """`data` as sent: one HTTP/1.1 chunk, or as it is. The broker offers one group's
        frames to every member: the last framing is reused for the same bytes object."""
        global _last_wire
        if not (self._chunked and data):
            return data
        last, wire = _last_wire
        if last is not data:
            wire = b"%X\r\n%b\r\n" % (len(data), data)
            _last_wire = (data, wire)
        return wire

    def _write_now(self, send, frames: bytes, count: int, last_id,
                   oldest_ms: int) -> bytes | memoryview | None:
        """Send at once; None when all went, else the wire bytes still to write (a view: the
        frames the group shares are not copied for this client)."""
        wire = self._wire(frames)
        try:
            done = send(wire)
        except BlockingIOError:
            return wire
        except OSError as error:
            self.close(self._gone(error))
            return None
        if done < len(wire):
            return memoryview(wire)[done:]
        if count:
            self.sent += count
            if last_id is not None:
                self.last_id = last_id
            if oldest_ms and self._observe is not None:
                self._direct_writes += 1
                if self._direct_writes % LATENCY_SAMPLE == 0:
                    self._observe(oldest_ms)
        return None

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def waiting(self) -> bool:
        """Is anything (events or not) waiting for the socket?"""
        return bool(self._chunks)

    def lagging(self, now: float, more_bytes: int = 0, more_events: int = 0) -> bool:
        """Is the socket not keeping up? Never while nothing waits: a write was possible.
        The byte budget judges an offer (`more_bytes`); what is already in, the time rule."""
        if not self._chunks:
            return False
        if more_bytes and self._bytes + more_bytes > self.max_bytes:
            return True
        return (self._since is not None and self._queued + more_events > self.capacity
                and now - self._since >= self.patience)

    def offer(self, frames: bytes, count: int, last_id: str | None, force=False,
              oldest_ms: int = 0, now: float | None = None) -> bool:
        """Queue `count` events; False (and counted as dropped) when the client is too slow.

        `oldest_ms` is the Kafka timestamp of the chunk's first live event (0: not live), for
        the delivery-latency histogram; `now` is time.monotonic(), passed once per batch.
        """
        if self.closed_reason is not None:
            return False
        if now is None:
            now = time.monotonic()
        if self._chunks and not force and self.lagging(now, len(frames), count):
            self.dropped += count
            return False
        if last_id is not None:
            self.offered_id = last_id
        wire: bytes | memoryview = frames
        send = self._send
        if send is not None:
            if not self._chunks and not self._writing:
                left = self._write_now(send, frames, count, last_id, oldest_ms)
                if left is None:
                    return self.closed_reason is None
                wire = left
            else:
                wire = self._wire(frames)
        if count and self._since is None:
            self._since = now
        self._chunks.append((wire, count, last_id, oldest_ms))
        self._queued += count
        self._bytes += len(wire)
        self._wake.set()
        return True

    def push_control(self, data: bytes) -> None:
        """Queue bytes that are not events (a heartbeat, an id); never refused while open."""
        if self.closed_reason is None:
            wire: bytes | memoryview = data
            send = self._send
            if send is not None:
                if not self._chunks and not self._writing:
                    left = self._write_now(send, data, 0, None, 0)
                    if left is None:
                        return
                    wire = left
                else:
                    wire = self._wire(data)
            self._chunks.append((wire, 0, None, 0))
            self._bytes += len(wire)
            self._wake.set()

    def close(self, reason: str, final: bytes = b"") -> None:
        if self.closed_reason is None:
            if final:
                self._chunks.append((self._wire(final) if self._send else final, 0, None, 0))
            self.closed_reason = reason
            self._wake.set()

    def take(self, timeout: float | None = None) -> tuple[bytes | memoryview, int, str | None]:
        """Wait for data, then what waits as one write: (bytes, events, last id). Chunks are
        joined up to JOIN_BYTES; a larger one comes alone, uncopied; the rest waits on, its
        wait counted afresh (the socket took some: a socket that keeps taking is not slow)."""
        chunks = self._chunks
        if not chunks:
            self._wake.wait(timeout)
        self._wake.clear()
        if len(chunks) == 1:        # the usual case: one batch since the last write
            data, count, last_id, oldest = chunks.pop()
            if not count:
                last_id = None
        else:
            data, count, last_id, oldest = self._join(chunks)
        self._queued -= count
        self._bytes = max(0, self._bytes - len(data)) if chunks else 0
        self._since = None
        self.taken_oldest_ms = oldest
        self._writing = self._send is not None and bool(data)
        return data, count, last_id

    @staticmethod
    def _join(chunks: list) -> tuple[bytes | memoryview, int, str | None, int]:
        """Take the first chunks, joined into at most JOIN_BYTES (at least the first chunk)."""
        parts: list = []
        count, last_id, oldest, size = 0, None, 0, 0
        for frames, n, chunk_last, chunk_oldest in chunks:
            if parts and size + len(frames) > JOIN_BYTES:
                break
            parts.append(frames)
            size += len(frames)
            if n:
                count += n
                last_id = chunk_last
            if chunk_oldest and not oldest:
                oldest = chunk_oldest
        del chunks[:len(parts)]
        return (parts[0] if len(parts) == 1 else b"".join(parts)), count, last_id, oldest

    @property
    def finished(self) -> bool:
        """Closed and fully drained: the stream may end."""
        return self.closed_reason is not None and not self._chunks

    def written(self, count: int, last_id: str | None) -> None:
        self._writing = False
        if count:
            self.sent += count
            self.last_id = last_id
