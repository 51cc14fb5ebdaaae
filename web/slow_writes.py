"""One loop per worker over the streams being written: it reports a client whose socket stopped
taking events (the broker then disconnects it as slow) and cuts a closed stream whose last
write does not finish (its client stopped reading).

The service starts it (service/main.py) and stops it; streams only join and leave its set.
"""
from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

INTERVAL = 1.0


class WriteChecker:
    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self.serving: set = set()       # bodies with check(now) and an info.id
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, body) -> None:
        self.serving.add(body)

    def forget(self, body) -> None:
        self.serving.discard(body)

    def start(self) -> "WriteChecker":
        self._stopped.clear()
        self._thread = threading.Thread(target=self._loop, name="stuck-writes", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self, now: float) -> None:
        for body in list(self.serving):
            try:
                body.check(now)
            except Exception:  # noqa: BLE001 - one odd socket must not end the watch
                logger.exception("checking stream %s failed", body.info.id)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self.check(time.monotonic())
