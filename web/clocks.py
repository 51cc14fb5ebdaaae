"""gunicorn's timings on the monotonic clock: its master's stop (Arbiter.stop) and a gevent
worker's drain (GeventWorker.run) time graceful_timeout with time.time(), so a step of the
wall clock (NTP after a VM's pause) cut every stream at once, forward, or held a hung worker
for the step's length, back. Each module is given this in place of `time` where it times."""
from __future__ import annotations

import time


class MonotonicTime:
    """The time module, but its time() is the monotonic clock's."""
    time = staticmethod(time.monotonic)

    def __getattr__(self, name):
        return getattr(time, name)


MONOTONIC = MonotonicTime()
