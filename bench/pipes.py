"""What bench/bench.py's helper processes have in common: replies read from a pipe."""
from __future__ import annotations

import time


class PipeReplies:
    """Needs `conn` (a multiprocessing connection) and `proc.name`."""

    def recv_kind(self, kind: str, timeout: float, on_other=None):
        """The next message of `kind` (its payload); others go to `on_other(self, message)`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.conn.poll(left):
                raise RuntimeError(f"{self.proc.name}: no {kind!r} within {timeout:.0f}s")
            message = self.conn.recv()
            if message[0] == kind:
                return message[1] if len(message) > 1 else None
            if on_other:
                on_other(self, message)
