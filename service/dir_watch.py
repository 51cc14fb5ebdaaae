"""DirWatch: a worker notices that the instance directory was removed under the running
instance (a cleaner of /tmp or /dev/shm, systemd-logind's RemoveIPC=yes) and says what to do.
The workers go on serving their streams (the limits files stay mapped), but the instance's
limits, figures and management API no longer span them all; a SIGHUP has the master make it
again and replace them (web/serve.py `_heal_instance_dir`), as does a worker that ends."""
from __future__ import annotations

import logging
import os
import time

from web import instance_dir

logger = logging.getLogger(__name__)

CHECK_SECONDS = 2.0


class DirWatch:
    def __init__(self, path: str, master: int, *, clock=time.monotonic):
        self.path, self.master, self.clock = path, master, clock
        self.next_look = clock() + CHECK_SECONDS
        self.said = False           # for this disappearance

    def check(self) -> bool:
        """Look (at most every CHECK_SECONDS); True when it said the directory is gone."""
        now = self.clock()
        if now < self.next_look:
            return False
        self.next_look = now + CHECK_SECONDS
        gone = instance_dir.missing(self.path)
        if gone is None or self.said:
            self.said = gone is not None
            return False
        self.said = True
        logger.warning("%s was removed under the running instance (a cleaner of %s, or "
                       "systemd-logind's RemoveIPC=yes?): this worker serves its streams on, "
                       "but the instance's limits, figures and management API no longer span "
                       "every worker; send SIGHUP to the master (kill -HUP %d) to make it again "
                       "and replace the workers", gone, os.path.dirname(self.path), self.master)
        return True
