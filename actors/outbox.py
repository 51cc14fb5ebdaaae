"""A client's bounded outbound buffer: the broker offers encoded frames, the stream takes them.

Both sides run as greenlets of one worker thread, so the fast path needs no locks: the
broker appends already-encoded bytes (one chunk per client per Kafka batch) and the
response generator drains everything waiting into a single write.
"""
from __future__ import annotations

import threading
from collections import deque


def _event_class():
    """gevent's Event when the process is patched: threading.Event over patched locks is a
    pure-Python Condition, and its set()/wait() cost most of the fan-out (py-spy)."""
    try:
        from gevent import monkey
        if monkey.is_module_patched("threading"):
            from gevent.event import Event
            return Event
    except ImportError:
        pass
    return threading.Event


_EVENT = None


class Outbox:
    __slots__ = ("capacity", "_chunks", "_queued", "_wake", "closed_reason",
                 "sent", "dropped", "last_id", "taken_oldest_ms")

    def __init__(self, capacity: int):
        global _EVENT
        if _EVENT is None:
            _EVENT = _event_class()
        self.capacity = capacity
        self._chunks: deque = deque()
        self._queued = 0            # events waiting to be written
        self._wake = _EVENT()
        self.closed_reason: str | None = None
        self.sent = 0
        self.dropped = 0
        self.last_id: str | None = None
        self.taken_oldest_ms = 0    # Kafka timestamp of the oldest live event in the last take()

    @property
    def queued(self) -> int:
        return self._queued

    def offer(self, frames: bytes, count: int, last_id: str | None, force=False,
              oldest_ms: int = 0) -> bool:
        """Queue `count` events; False (and counted as dropped) when they do not fit.

        `oldest_ms` is the Kafka timestamp of the chunk's first live event (0: not live), for
        the delivery-latency histogram.
        """
        if self.closed_reason is not None:
            return False
        if not force and self._queued + count > self.capacity:
            self.dropped += count
            return False
        self._chunks.append((frames, count, last_id, oldest_ms))
        self._queued += count
        self._wake.set()
        return True

    def poke(self, data: bytes) -> None:
        """Queue bytes that are not events (a heartbeat); never refused while open."""
        if self.closed_reason is None:
            self._chunks.append((data, 0, None, 0))
            self._wake.set()

    def close(self, reason: str, final: bytes = b"") -> None:
        if self.closed_reason is None:
            if final:
                self._chunks.append((final, 0, None, 0))
            self.closed_reason = reason
            self._wake.set()

    def take(self, timeout: float | None = None) -> tuple[bytes, int, str | None]:
        """Wait for data, then everything queued as one chunk: (bytes, events, last id)."""
        if not self._chunks:
            self._wake.wait(timeout)
        self._wake.clear()
        parts, count, last_id, oldest = [], 0, None, 0
        while self._chunks:
            frames, n, chunk_last, chunk_oldest = self._chunks.popleft()
            parts.append(frames)
            if n:
                count += n
                last_id = chunk_last
            if chunk_oldest and not oldest:
                oldest = chunk_oldest
        self._queued -= count
        self.taken_oldest_ms = oldest
        return b"".join(parts), count, last_id

    @property
    def finished(self) -> bool:
        """Closed and fully drained: the stream may end."""
        return self.closed_reason is not None and not self._chunks

    def written(self, count: int, last_id: str | None) -> None:
        if count:
            self.sent += count
            self.last_id = last_id
