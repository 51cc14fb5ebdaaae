"""DirWatch: a worker notices that the instance directory was removed under the running
instance (a cleaner of /tmp or /dev/shm, systemd-logind's RemoveIPC=yes) and tells the master
(SIGHUP), which makes it again and replaces the workers (web/serve.py `_heal_instance_dir`).
Without it the workers lose the instance's limits, figures and each other until one ends, and
that worker's replacement could not start."""
from __future__ import annotations

import logging
import os
import signal
import time

from web import instance_dir

logger = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
# each worker waits its turn (by its age) once it saw the directory gone: the master makes it
# again at the first SIGHUP, and the other workers then find it whole
TURN_SECONDS = 0.5


class DirWatch:
    def __init__(self, path: str, master: int, age: int, *, clock=time.monotonic,
                 kill=os.kill, parent=os.getppid):
        self.path, self.master = path, master
        self.clock, self.kill, self.parent = clock, kill, parent
        self.turn = TURN_SECONDS * (age % 4)
        self.next_look = clock() + CHECK_SECONDS
        self.gone_since: float | None = None

    def check(self) -> bool:
        """Look (at most every CHECK_SECONDS, sooner while it waits its turn); True when it
        told the master."""
        now = self.clock()
        if now < self.next_look:
            return False
        gone = instance_dir.missing(self.path)
        if gone is None:
            self.gone_since, self.next_look = None, now + CHECK_SECONDS
            return False
        if self.gone_since is None:
            self.gone_since = now
        if now - self.gone_since < self.turn:
            self.next_look = self.gone_since + self.turn
            return False
        self.gone_since, self.next_look = None, now + CHECK_SECONDS
        if self.master <= 1 or self.parent() != self.master:
            return False                # the master is gone: nothing to tell
        logger.warning("worker %d: %s was removed under the running instance; asking the master "
                       "to make it again and replace the workers (SIGHUP)", os.getpid(), gone)
        self.kill(self.master, signal.SIGHUP)
        return True
