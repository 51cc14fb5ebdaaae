"""SharedNonces: the nonces of redeemed tickets, shared by the workers of one instance.

One file in the instance directory, mapped by every worker: a header, then SETS sets of WAYS
cells. A cell holds an 8-byte keyed digest of a nonce (the key is the file's own, random) and
the second its ticket expires; a nonce belongs to the set its digest names. A claim, under an
fcntl lock of the file, refuses a digest already in the set whose second has not passed, else
writes it over a cell whose second has passed (an empty cell's is 0). A set with no such cell
refuses the ticket: a nonce is never forgotten while its ticket is valid.

Nothing is created or removed per ticket (the first design made a file per nonce: three
system calls an open). gunicorn's master creates the file (`create`) with the instance
directory, allocated, not sparse: no room fails the start there, never a worker with SIGBUS.
Its 8,192 x 64 cells (6 MiB) refused a first nonce past 297,000-337,000 unexpired ones in four
fills with random nonces: room for 8,000 opens a second with the default 30 s lifetime.
"""
from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import secrets
import struct

from gevent.monkey import get_original

from actors.files import allocate

MAGIC = b"SSENONCE"
VERSION = 1
SETS, WAYS = 8_192, 64
HEADER = 64
_HEADER = struct.Struct("<8sIII16s")        # magic, version, sets, ways, hash key
_U32 = struct.Struct("<I")
_EMPTY = bytes(4)               # the second of a cell never used, or freed
NONCES_FILE = "nonces"          # its name in the instance directory
POPULATE = getattr(mmap, "MAP_POPULATE", 0)     # Linux


def _size(sets: int, ways: int) -> int:
    return HEADER + sets * ways * 12      # a cell: 8 bytes of digest, 4 of second


SIZE = _size(SETS, WAYS)


class Full(Exception):
    """No room for one more nonce until some expire (the caller refuses the ticket)."""


class SharedNonces:
    def __init__(self, path: str, *, sets: int = SETS, ways: int = WAYS):
        """Attach to the file at `path`, made here when the master did not (`sets` and
        `ways` are read from it; smaller ones are for tests)."""
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            create(path, sets, ways)
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        try:
            magic, version, self.sets, self.ways, key = _HEADER.unpack(
                os.pread(self._fd, _HEADER.size, 0))
            if magic != MAGIC or version != VERSION:
                raise ValueError(f"{path} is not a ticket nonce file of version {VERSION}")
            # every page mapped now, not faulted in one at a time by the opens to come
            self._buf = mmap.mmap(self._fd, _size(self.sets, self.ways),
                                  flags=mmap.MAP_SHARED | POPULATE)
        except BaseException:
            os.close(self._fd)
            raise
        self._hasher = hashlib.blake2b(key=key, digest_size=8)
        self._expiries = struct.Struct(f"<{self.ways}I")
        self._stride = self.ways * 12          # bytes of a set
        # The OS thread's lock, under gevent too: a claim never yields while it holds it, so no
        # greenlet ever waits on it (gevent's own lock added 3.6k instructions to each claim)
        self._lock = get_original("threading", "Lock")()
        self._now = 0.0
        self._last: tuple[str | None, tuple[bytes, int]] = (None, (b"", 0))

    def used(self, nonce: str, expires: float, now: float) -> bool:
        """Claimed already by a worker of this instance (nothing is claimed; no lock taken:
        `claim` decides)."""
        self._now = now
        digest, at = self._where(nonce)
        index = self._cell_of(digest, at)
        return index >= 0 and _U32.unpack_from(self._buf, self._ends(at) + 4 * index)[0] >= now

    def claim(self, nonce: str, expires: float, now: float) -> bool:
        """True the first time a nonce is claimed in this instance (until its expiry); Full
        when its set has no cell to spare."""
        self._now = now
        digest, at = self._where(nonce)
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                return self._put(at, digest, math.ceil(expires), now)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _put(self, at: int, digest: bytes, second: int, now: float) -> bool:
        ends = self._ends(at)
        index = self._cell_of(digest, at)
        if index >= 0:
            if _U32.unpack_from(self._buf, ends + 4 * index)[0] >= now:
                return False
        else:       # a cell never used (or freed): most sets of a table in use have one
            index = self._cell_of(_EMPTY, ends)
        if index < 0:                   # no empty cell: the one whose second passed first
            expiries = self._expiries.unpack_from(self._buf, ends)
            soonest = min(expiries)
            if soonest >= now:
                raise Full()
            index = expiries.index(soonest)
        _U32.pack_into(self._buf, ends + 4 * index, 0)           # a cut-short write: free
        self._buf[at + 8 * index:at + 8 * index + 8] = digest
        _U32.pack_into(self._buf, ends + 4 * index, second)
        return True

    def _where(self, nonce: str) -> tuple[bytes, int]:
        """The nonce's digest and the offset of its set (the last nonce's are kept: a ticket is
        checked, then claimed)."""
        if nonce == self._last[0]:
            return self._last[1]
        hasher = self._hasher.copy()
        hasher.update(nonce.encode("utf-8", "surrogatepass"))
        digest = hasher.digest()
        where = digest, HEADER + (int.from_bytes(digest, "little") % self.sets) * self._stride
        self._last = nonce, where
        return where

    def _cell_of(self, value: bytes, start: int) -> int:
        """The first of `ways` cells of len(value) bytes from `start` that holds `value`, or
        -1 (a match across two cells is none): a digest's way in its set, or a second's."""
        width, end = len(value), start + len(value) * self.ways
        found = self._buf.find(value, start, end)
        while found > start and (found - start) % width:
            found = self._buf.find(value, found + 1, end)
        return (found - start) // width if found >= 0 else -1

    def _ends(self, at: int) -> int:
        return at + 8 * self.ways

    def __len__(self) -> int:
        """Nonces held whose second has not passed (by the last `now` given)."""
        return sum(sum(1 for second in self._expiries.unpack_from(self._buf, self._ends(at))
                       if second >= self._now)
                   for at in range(HEADER, len(self._buf), self._stride))

    def close(self) -> None:
        self._buf.close()
        os.close(self._fd)


def create(path: str, sets: int = SETS, ways: int = WAYS) -> None:
    """The file, allocated and headed, put in place atomically (one made first is kept)."""
    draft = f"{path}.{os.getpid()}.new"
    fd = os.open(draft, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        allocate(fd, _size(sets, ways))
        os.pwrite(fd, _HEADER.pack(MAGIC, VERSION, sets, ways, secrets.token_bytes(16)), 0)
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        os.close(fd)
        os.unlink(draft)
