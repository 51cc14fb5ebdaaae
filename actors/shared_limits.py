"""SharedLimits: the rate limiter's counts for a whole instance, shared by all its workers.

gunicorn's master calls `create(path, settings)` once, before forking (and again on a SIGHUP
that changed the size the tables need: the new workers attach to the new file while the old
ones drain on theirs); each worker's limiter attaches with `SharedLimits.attach(path,
settings)`. The file is mapped by every worker and each change happens under an fcntl.lockf
lock on it (the kernel drops the lock of a worker that dies holding it), so SSE_MAX_CLIENTS,
SSE_MAX_CLIENTS_PER_IP, SSE_MAX_CLIENTS_PER_SUBJECT and the per-address token bucket hold
exactly across workers.

A worker attaching claims a slot (its pid and process start time); the streams it holds are
counted per slot, in cells keyed by (address or subject, slot). When a worker dies (even by
SIGKILL) the next sweep by any survivor removes its cells and frees its slot: a worker sweeps
when it admits or reads the figures, at most once a second (every 0.1 s before a refusal).
A pid reused by a new process is told apart by its start time (without /proc, by signal 0
alone); a zombie, or a process of another user, counts as dead.

File layout (little-endian, sizes fixed by create()):
  header        4096 bytes: magic, version, sizes, the hash key, the pid inside the lock (0
                outside: a non-zero pid on entry means a writer died mid-update, and the
                tables are checked and recounted), instance-wide counters
  slots         SLOTS x 16 bytes: pid, streams held, process start time
  per address   C x 24 bytes: key, count, slot, used; C = power of two >= 2 x SSE_MAX_CLIENTS
  per subject   C x 24 bytes, the same
  buckets       S sets x 8 ways x 32 bytes: key, tokens, last update; 16,384 buckets
Keys are 16-byte keyed blake2b digests of the address or subject, never the text. The count
tables use linear probing with backward-shift deletion (no tombstones); a stream count cell
exists only while a stream is held, so at most SSE_MAX_CLIENTS cells are in use and a table
is never more than half full; past three quarters (only with a table created smaller) a new
key is refused as too_many_streams, and no held count is ever dropped. A full bucket set
drops a bucket idle long enough to be full again, else its least recently used one (the
`buckets` figure counts buckets in use or idle but not yet reused).

A writer killed inside the lock can leave at worst a duplicated cell (a move cut short) and
stale counters; the pid it left in the header makes the next holder remove duplicates and
recount everything from the cells and slots (_repair). The caps are read under the lock, so
they are exact; the limiter keeps its refusal counts itself (per worker).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass

from actors.files import allocate
from actors.processes import process_start
from actors.settings import HOW_TO_START
from actors.shared_tables import CELL, SET, WAYS, Buckets, Counts

logger = logging.getLogger(__name__)

LIMITS_FILE = "limits"          # its name in the instance directory
MAGIC = b"SSELIMIT"
VERSION = 1
SLOTS = 256                     # processes attached at once (the workers and those replacing them)
BUCKETS = 16_384                # token buckets for the instance
MAX_COUNT_CELLS = 1 << 21
SWEEP_INTERVAL = 1.0            # seconds between sweeps for dead workers
REFUSAL_SWEEP_INTERVAL = 0.1    # at most this often before a refusal
HEADER_SIZE = 4096

_CONFIG = struct.Struct("<8sIIII16s")     # magic, version, slots, count cells, sets, hash key
# The counters, at COUNTERS_AT: writer, streams, ip used, subject used, addresses, subjects,
# buckets used, buckets evicted.
_COUNTERS = struct.Struct("<IIIIIIIQ")
COUNTERS_AT = 64
_U32 = struct.Struct("<I")
_SLOT = struct.Struct("<IIQ")             # pid, streams, start


@dataclass(frozen=True, slots=True)
class StreamCaps:
    total: int
    per_ip: int
    per_subject: int                # 0: no limit

    @classmethod
    def from_settings(cls, settings) -> "StreamCaps":
        return cls(settings.sse_max_clients, settings.sse_max_clients_per_ip,
                   getattr(settings, "sse_max_clients_per_subject", 0) or 0)


def cap_refusal(caps: StreamCaps, total: int, by_ip: int, by_subject: int,
                subject: str | None) -> str:
    """Which stream cap refuses one more stream ("" when none does), checked in this order."""
    if by_ip >= caps.per_ip:
        return "too_many_streams_per_ip"
    if subject and 0 < caps.per_subject <= by_subject:
        return "too_many_streams_per_subject"
    if total >= caps.total:
        return "too_many_streams"
    return ""


@dataclass(frozen=True, slots=True)
class SharedFigures:
    """Instance-wide readings of the shared tables."""
    streams: int
    addresses: int
    subjects: int
    buckets: int
    buckets_evicted: int


@dataclass(frozen=True, slots=True)
class _Layout:
    slots: int
    count_cells: int
    sets: int

    @property
    def slots_at(self) -> int:
        return HEADER_SIZE

    @property
    def ips_at(self) -> int:
        return self.slots_at + self.slots * _SLOT.size

    @property
    def subjects_at(self) -> int:
        return self.ips_at + self.count_cells * CELL.size

    @property
    def buckets_at(self) -> int:
        return self.subjects_at + self.count_cells * CELL.size

    @property
    def size(self) -> int:
        return self.buckets_at + self.sets * SET.size


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def create(path: str, settings, *, count_cells: int | None = None,
           buckets: int = BUCKETS, evicted: int = 0) -> None:
    """Write a fresh limits file at `path` (mode 0600), sized for `settings`; in gunicorn's
    master before the workers fork. `count_cells`/`buckets`: smaller tables, for tests;
    `evicted`: the buckets-evicted count to go on from (the file a SIGHUP replaces)."""
    layout = _layout(settings, count_cells, buckets)
    temporary = f"{path}.{os.getpid()}.new"
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Allocated, not sparse: on a full /dev/shm this fails here, in the master, where a
        # sparse file made every worker die of SIGBUS at its first write, over and over.
        allocate(fd, layout.size)
        header = _CONFIG.pack(MAGIC, VERSION, layout.slots, layout.count_cells, layout.sets,
                              os.urandom(16))
        os.pwrite(fd, header, 0)
        if evicted:
            os.pwrite(fd, _COUNTERS.pack(0, 0, 0, 0, 0, 0, 0, evicted), COUNTERS_AT)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def evicted_in(path: str) -> int:
    """The buckets-evicted count of the limits file at `path` (0 when there is none): a
    counter /metrics shows as never falling, carried into the file a SIGHUP makes anew."""
    try:
        with open(path, "rb") as file:
            magic = file.read(8)
            file.seek(COUNTERS_AT)
            counters = _COUNTERS.unpack(file.read(_COUNTERS.size))
    except (OSError, struct.error):
        return 0
    return counters[-1] if magic == MAGIC else 0


def size(settings) -> int:
    """Bytes of the limits file `create` writes for `settings`."""
    return _layout(settings, None, BUCKETS).size


def _layout(settings, count_cells: int | None, buckets: int) -> _Layout:
    cells = count_cells or _count_cells(settings)
    if cells & (cells - 1):
        raise ValueError(f"count_cells must be a power of two, not {cells}")
    return _Layout(SLOTS, cells, max(1, _power_of_two(buckets) // WAYS))


def _count_cells(settings) -> int:
    return min(MAX_COUNT_CELLS, _power_of_two(max(64, 2 * settings.sse_max_clients)))


def fits(path: str, settings) -> bool:
    """The limits file at `path` was made for count tables of the size `settings` need (a
    SIGHUP may have changed SSE_MAX_CLIENTS since); False when it is missing or unreadable."""
    try:
        with open(path, "rb") as file:
            magic, version, _slots, cells, _sets, _key = _CONFIG.unpack(file.read(_CONFIG.size))
    except (OSError, ValueError, struct.error):
        return False
    return magic == MAGIC and version == VERSION and cells == _count_cells(settings)


_process_lock: threading.Lock | None = None
_process_lock_pid = 0


def _lock_for_this_process() -> threading.Lock:
    """lockf locks belong to the process: threads (greenlets) of one process need this too.
    Made on first use in each process, after fork and after gevent's patching."""
    global _process_lock, _process_lock_pid
    if _process_lock is None or _process_lock_pid != os.getpid():
        _process_lock, _process_lock_pid = threading.Lock(), os.getpid()
    return _process_lock


class SharedLimits:
    """One worker's handle on the limits file: admit/release streams, spend tokens, read the
    instance's figures. Every call takes the file lock for a few microseconds."""

    def __init__(self, path: str, fd: int, buf: mmap.mmap, settings, clock):
        self.path, self.fd, self.buf, self.clock = path, fd, buf, clock
        magic, version, slots, cells, sets, self.hash_key = _CONFIG.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path} is not a limits file of version {VERSION}; "
                             "it is made by the gunicorn master (actors.shared_limits.create)")
        self.layout = _Layout(slots, cells, sets)
        self.hasher = hashlib.blake2b(digest_size=16, key=self.hash_key)
        if buf.size() < self.layout.size:
            raise ValueError(f"{path} is truncated; restart the instance to recreate it")
        self.ips = Counts(buf, self.layout.ips_at, cells)
        self.subjects = Counts(buf, self.layout.subjects_at, cells)
        self.buckets = Buckets(buf, self.layout.buckets_at, sets,
                                settings.rate_limit_requests_per_min / 60.0,
                                float(settings.rate_limit_burst_size))
        self.caps = StreamCaps.from_settings(settings)
        self.pid = os.getpid()
        self.start = process_start(self.pid) or 0
        self.slot = -1
        self.last_sweep = self.last_refusal_sweep = 0.0
        self.lock = _Locked(self)

    @classmethod
    def attach(cls, path: str, settings, *, clock=time.monotonic) -> "SharedLimits":
        """Map the limits file made by create() and claim a worker slot for this process."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no limits file at {path}: the gateway's gunicorn master creates it before "
                f"forking (actors.shared_limits.create); {HOW_TO_START}"
            ) from None
        try:
            buf = mmap.mmap(fd, os.fstat(fd).st_size)
            limits = cls(path, fd, buf, settings, clock)
            with limits._locked():
                limits._sweep(now=True)
                limits._claim()
        except BaseException:
            os.close(fd)
            raise
        return limits

    # -- the lock ----------------------------------------------------------------------------
    def _locked(self) -> "_Locked":
        return self.lock

    def _enter(self) -> None:
        writer = self._counters()[0]
        if writer:
            self._repair(writer)
        _U32.pack_into(self.buf, COUNTERS_AT, self.pid)

    # -- slots -------------------------------------------------------------------------------
    def _slot(self, index: int) -> tuple[int, int, int]:
        return _SLOT.unpack_from(self.buf, self.layout.slots_at + index * _SLOT.size)

    def _claim(self) -> None:
        for index in range(self.layout.slots):
            if self._slot(index)[0] == 0:
                at = self.layout.slots_at + index * _SLOT.size
                _SLOT.pack_into(self.buf, at, 0, 0, self.start)
                _U32.pack_into(self.buf, at, self.pid)
                self.slot = index
                return
        raise RuntimeError(f"all {self.layout.slots} worker slots of {self.path} are held by "
                           "live processes; run fewer workers")

    def _alive(self, pid: int, start: int) -> bool:
        if pid == self.pid:     # this process, or a dead one whose pid it was given
            return start == self.start
        now_start = process_start(pid)
        return now_start is not None and (start == 0 or now_start == 0 or now_start == start)

    def _sweep(self, *, now: bool = False, refusing: bool = False) -> int:
        """Free the slots of dead workers (with their counts); how many were freed. Done `now`,
        else at most every REFUSAL_SWEEP_INTERVAL when `refusing`, else every SWEEP_INTERVAL."""
        clock = time.monotonic()
        if refusing:
            if clock - self.last_refusal_sweep < REFUSAL_SWEEP_INTERVAL:
                return 0
            self.last_refusal_sweep = clock
        elif not now and clock - self.last_sweep < SWEEP_INTERVAL:
            return 0
        self.last_sweep = clock
        freed = 0
        for index in range(self.layout.slots):
            pid, streams, start = self._slot(index)
            if pid and index != self.slot and not self._alive(pid, start):
                logger.warning("worker %d is gone: its %d stream(s) were cut (clients that "
                               "reconnect with their Last-Event-ID resume where they were, with "
                               "a gap event if Kafka no longer holds what they missed); their "
                               "places in the instance's limits are free again", pid, streams)
                self._free(index)
                freed += 1
        return freed

    def _free(self, index: int) -> None:
        """Remove slot `index`'s cells and counts, then the slot itself (redone from the start
        if the worker doing it dies midway)."""
        streams = self._slot(index)[1]
        writer, total, ip_used, subject_used, addresses, subjects, used, evicted = self._counters()
        for table, name in ((self.ips, "ips"), (self.subjects, "subjects")):
            dropped = table.drop(lambda key, slot: slot != index)
            gone = sum(1 for key in set(dropped) if table.scan(key, -1)[1] == 0)
            if name == "ips":
                ip_used, addresses = ip_used - len(dropped), addresses - gone
            else:
                subject_used, subjects = subject_used - len(dropped), subjects - gone
        self._set_counters(writer, max(0, total - streams), ip_used, subject_used, addresses,
                           subjects, used, evicted)
        _SLOT.pack_into(self.buf, self.layout.slots_at + index * _SLOT.size, 0, 0, 0)

    # -- counters ----------------------------------------------------------------------------
    def _counters(self) -> tuple[int, int, int, int, int, int, int, int]:
        return _COUNTERS.unpack_from(self.buf, COUNTERS_AT)

    def _set_counters(self, *values: int) -> None:
        _COUNTERS.pack_into(self.buf, COUNTERS_AT, *values)

    def _repair(self, writer: int) -> None:
        """A writer died inside the lock: remove the duplicate a cut-short move may have left
        and the cells of free slots, then recount every counter from the tables and slots."""
        logger.warning("process %d died while changing the shared limits; checking them", writer)
        held = {index for index in range(self.layout.slots) if self._slot(index)[0]}
        counts = []
        for table in (self.ips, self.subjects):
            seen: set[tuple[bytes, int]] = set()

            def keep(key, slot, seen=seen):
                if slot not in held or (key, slot) in seen:
                    return False
                seen.add((key, slot))
                return True
            table.drop(keep)
            cells = table.used_cells()
            counts.append((len(cells), len({key for key, _, _ in cells})))
        streams = sum(self._slot(index)[1] for index in held)
        evicted = self._counters()[7]
        self._set_counters(0, streams, counts[0][0], counts[1][0], counts[0][1], counts[1][1],
                           self.buckets.count(), evicted)

    # -- the limiter's calls -----------------------------------------------------------------
    def key(self, text: str) -> bytes:
        digest = self.hasher.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.digest()

    def admit(self, address: str, stream: bool, subject: str | None = None, *,
              rate_limited: bool = True, peek: bool = False) -> tuple[float, str]:
        """(seconds to wait when the address's bucket is empty, else 0; the cap that refuses
        the stream, else ""). Allowed when both are falsy; the stream is then counted.
        `peek`: the caps are checked as for a stream, and nothing is counted."""
        ip_key = self.key(address)
        subject_key = self.key(subject) if subject else b""
        with self._locked():
            self._sweep()
            writer, total, ip_used, subject_used, addresses, subjects, used, evicted = \
                self._counters()
            if rate_limited:
                wait, more, gone = self.buckets.take(ip_key, self.clock())
                if more or gone:
                    self._set_counters(writer, total, ip_used, subject_used, addresses,
                                       subjects, used + more, evicted + gone)
                    used, evicted = used + more, evicted + gone
                if wait:
                    return wait, ""
            if not stream and not peek:
                return 0.0, ""
            reason, ip, by_subject = self._decide(total, ip_key, subject, subject_key)
            if reason and self._sweep(refusing=True):
                writer, total, ip_used, subject_used, addresses, subjects, used, evicted = \
                    self._counters()
                reason, ip, by_subject = self._decide(total, ip_key, subject, subject_key)
            if reason or not stream:
                return 0.0, reason
            if (ip[2] < 0 and ip_used >= self.ips.limit) or \
                    (by_subject is not None and by_subject[2] < 0
                     and subject_used >= self.subjects.limit):
                return 0.0, "too_many_streams"          # a table is full: refuse, lose nothing
            ip_used, addresses = self._count(self.ips, ip_key, ip, ip_used, addresses)
            if by_subject is not None:
                subject_used, subjects = self._count(self.subjects, subject_key, by_subject,
                                                     subject_used, subjects)
            self._add_to_slot(1)
            self._set_counters(writer, total + 1, ip_used, subject_used, addresses, subjects,
                               used, evicted)
            return 0.0, ""

    def _decide(self, total, ip_key, subject, subject_key):
        ip = self.ips.scan(ip_key, self.slot)
        by_subject = self.subjects.scan(subject_key, self.slot) if subject else None
        reason = cap_refusal(self.caps, total, ip[0], by_subject[0] if by_subject else 0, subject)
        return reason, ip, by_subject

    def _count(self, table: Counts, key: bytes, found, used: int, keys: int) -> tuple[int, int]:
        _total, entries, own, own_count, free = found
        if own >= 0:
            table.set_count(own, own_count + 1)
            return used, keys
        table.put(free, key, self.slot)
        return used + 1, keys + (entries == 0)

    def _add_to_slot(self, change: int) -> None:
        at = self.layout.slots_at + self.slot * _SLOT.size + 4
        _U32.pack_into(self.buf, at, _U32.unpack_from(self.buf, at)[0] + change)

    def release(self, address: str, subject: str | None = None) -> tuple[bool, bool]:
        """A stream this worker admitted ended. (its address held one here, its subject did):
        False names a release never admitted (nothing is changed for it)."""
        ip_key = self.key(address)
        subject_key = self.key(subject) if subject else b""
        with self._locked():
            writer, total, ip_used, subject_used, addresses, subjects, used, evicted = \
                self._counters()
            ip_found = self._uncount(self.ips, ip_key)
            if ip_found is None:
                return False, True
            ip_used, addresses = ip_used - ip_found[0], addresses - ip_found[1]
            subject_found = self._uncount(self.subjects, subject_key) if subject else (0, 0)
            if subject_found is not None:
                subject_used -= subject_found[0]
                subjects -= subject_found[1]
            self._add_to_slot(-1)
            self._set_counters(writer, max(0, total - 1), ip_used, subject_used, addresses,
                               subjects, used, evicted)
            return True, subject_found is not None

    def _uncount(self, table: Counts, key: bytes) -> tuple[int, int] | None:
        """Give back one of key's streams held by this slot: (cells freed, keys gone), or
        None when this slot held none."""
        _total, entries, own, own_count, _free = table.scan(key, self.slot)
        if own < 0:
            return None
        if own_count > 1:
            table.set_count(own, own_count - 1)
            return 0, 0
        table.remove(own)
        return 1, int(entries == 1)

    def figures(self) -> SharedFigures:
        with self._locked():
            self._sweep()
            _writer, total, _ip, _subject, addresses, subjects, used, evicted = self._counters()
        return SharedFigures(total, addresses, subjects, used, evicted)

    def close(self) -> None:
        """Give back this worker's slot and every count it holds; unmap the file."""
        if self.fd < 0:
            return
        try:
            if self.slot >= 0 and os.getpid() == self.pid:
                with self._locked():
                    self._free(self.slot)
                self.slot = -1
        finally:
            with _lock_for_this_process():
                self.buf.close()
                os.close(self.fd)
                self.fd = -1


class _Locked:
    """The file lock (and this process's lock) around one change; a plain class because it is
    entered on every admission and a generator-based context manager costs more."""

    __slots__ = ("limits", "process_lock")

    def __init__(self, limits: SharedLimits):
        self.limits = limits

    def __enter__(self):
        limits = self.limits
        pid = os.getpid()
        if pid != limits.pid:
            raise RuntimeError("a SharedLimits was used after fork: attach in each process")
        if limits.fd < 0:
            raise RuntimeError("the shared limits are closed")
        lock = _process_lock if _process_lock_pid == pid else None
        self.process_lock = lock or _lock_for_this_process()
        self.process_lock.acquire()
        try:
            fcntl.lockf(limits.fd, fcntl.LOCK_EX)
            limits._enter()
        except BaseException:
            self._unlock()
            raise
        return limits

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:        # after an error the mark stays: the next holder checks
            _U32.pack_into(self.limits.buf, COUNTERS_AT, 0)
        self._unlock()
        return False

    def _unlock(self) -> None:
        try:
            fcntl.lockf(self.limits.fd, fcntl.LOCK_UN)
        finally:
            self.process_lock.release()
