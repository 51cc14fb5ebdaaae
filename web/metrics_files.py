"""The metric files of prometheus_client's multiprocess mode, kept few.

Each worker writes its observations to `<metrics dir>/histogram_<pid>.db` (and
`counter_<pid>.db`), and a scrape sums
every file there, a dead worker's included, so the histogram never falls. Left at that, every
worker the instance ever had (each one gunicorn replaced after a crash, a SIGKILL, a SIGHUP)
leaves its file for good: 50 replacements left 34 files, and each file costs a scrape about
0.12 ms and a page of memory in /dev/shm, without bound. So when a worker has ended, the
master folds its file into one, `histogram_retired.db` (its counts added to those there),
and removes it:

    retire(directory, pid)          the master, in gunicorn's child_exit
    LockedCollector(directory)      the workers: the files' collector, read under
                                    the same lock, so that no scrape reads a file in the
                                    middle of its move (counted twice, or not at all, or a
                                    file gone between the listing and the read: an error)

The lock is an flock on `<metrics dir>/.lock`, shared by the scrapes and exclusive for the
fold, waited for without blocking (in a worker the sleep is gevent's). A fold that cannot
have it within FOLD_WAIT leaves the file where it is (still counted) and says so; a scrape
that cannot have it within SCRAPE_WAIT reads the files anyway.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import time

from actors.files import allocate

logger = logging.getLogger(__name__)

LOCK = ".lock"
RETIRED = "retired"          # histogram_retired.db: the ended workers' counts, summed
SUMMED = ("histogram", "counter", "summary")   # the kinds whose files a scrape adds up
FOLD_WAIT = 1.0
SCRAPE_WAIT = 2.0


class _Flock:
    def __init__(self, directory: str, kind: int, wait: float):
        self.path, self.kind, self.wait = os.path.join(directory, LOCK), kind, wait
        self.held = False

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, self.kind | fcntl.LOCK_NB)
                self.held = True
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return self
                time.sleep(0.002)

    def __exit__(self, *exc):
        os.close(self.fd)           # closing drops the lock
        return False


def retire(directory: str, pid: int) -> int:
    """Fold the files of the ended worker `pid` into the retired ones; how many were folded."""
    folded = 0
    with _Flock(directory, fcntl.LOCK_EX, FOLD_WAIT) as lock:
        if not lock.held:
            logger.warning("the metrics of the ended worker %d stay in their own file: a "
                           "scrape held %s for %.0f s", pid, lock.path, FOLD_WAIT)
            return 0
        for kind in SUMMED:
            path = os.path.join(directory, f"{kind}_{pid}.db")
            try:
                if os.path.getsize(path):       # empty: killed as it made it, nothing in it
                    _add(path, os.path.join(directory, f"{kind}_{RETIRED}.db"))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, struct.error) as exc:
                logger.warning("the metrics of the ended worker %d stay in %s: %s", pid, path,
                               exc)
                continue
            os.remove(path)
            folded += 1
    return folded


def _add(path: str, into: str) -> None:
    from prometheus_client.mmap_dict import MmapedDict      # in the master: only once it runs
    values = list(MmapedDict.read_all_values_from_file(path))      # all read, or nothing added
    _reserve(into, path)
    retired = MmapedDict(into)
    try:
        for key, value, _timestamp, _position in values:
            total, timestamp = retired.read_value(key)
            retired.write_value(key, total + value, timestamp)
    finally:
        retired.close()


def _reserve(into: str, adding: str) -> None:
    """Real room in `into` for all that folding `adding` may write, or OSError (ENOSPC): the
    files are sparse maps, and a write through a map that the filesystem has no room for is
    SIGBUS, which in the master ends the whole instance."""
    first = _first_size()
    with open(adding, "rb") as source:
        [more] = _USED.unpack(source.read(_USED.size))
    fd = os.open(into, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        [used] = _USED.unpack(os.pread(fd, _USED.size, 0)) if size >= _USED.size else [8]
        allocate(fd, max(size, first, used + more))       # ENOSPC: the fold is left for later
    finally:
        os.close(fd)


_USED = struct.Struct("i")      # a file's first bytes: how many of them are used


def _first_size() -> int:
    """The size prometheus_client gives a new file (a private constant, 64 KiB so far)."""
    from prometheus_client import mmap_dict
    return getattr(mmap_dict, "_INITIAL_MMAP_SIZE", 1 << 20)


OWN_KINDS = ("histogram", "counter")        # the files a worker writes (web/metrics.py)


def reserve_own(directory: str, pid: int) -> OSError | None:
    """Real room for the files worker `pid` is about to write, before prometheus_client maps
    them (a write through the map into a page with no room is SIGBUS, the worker dead before
    it served anything, and the next one too). The error (ENOSPC, EDQUOT) when there is no
    room: then nothing of these files is left. Other errors are raised."""
    size = _first_size()
    made: list[str] = []
    try:
        for kind in OWN_KINDS:
            path = os.path.join(directory, f"{kind}_{pid}.db")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                made.append(path)
            except FileExistsError:         # a reused pid's, not yet folded: kept
                fd = os.open(path, os.O_RDWR)
            try:
                allocate(fd, size)
            finally:
                os.close(fd)
    except OSError as exc:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return exc
    return None


class LockedCollector:
    """A collector of the files (prometheus_client's MultiProcessCollector, or web/metrics.py's
    WorkerFiles), read while no fold runs."""

    def __init__(self, directory: str, files=None):
        from prometheus_client.multiprocess import MultiProcessCollector
        self.directory = directory
        self.files = files if files is not None else MultiProcessCollector(None, path=directory)

    def collect(self):
        with _Flock(self.directory, fcntl.LOCK_SH, SCRAPE_WAIT):
            return list(self.files.collect())
