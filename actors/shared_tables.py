"""The tables of the shared limits file (actors/shared_limits.py), over its mapped buffer.

Counts: (key, slot) -> count in a fixed array of cells, with linear probing and
backward-shift deletion (no tombstones). Buckets: token buckets in sets of WAYS cells, a key in
the set its hash names. Keys are 16-byte digests; neither table locks: the caller holds the
file's lock.
"""
from __future__ import annotations

import struct

WAYS = 8                                # buckets per set
CELL = struct.Struct("<16sIHH")         # key, count, slot, used
BUCKET = struct.Struct("<16sdd")        # key, tokens, updated
SET = struct.Struct("<" + "16sdd" * WAYS)
EMPTY_KEY = bytes(16)
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class Counts:
    """(key, slot) -> count in a fixed array of cells: linear probing, backward-shift deletion."""

    def __init__(self, buf, offset: int, cells: int):
        self.buf, self.offset, self.cells, self.mask = buf, offset, cells, cells - 1
        self.limit = cells * 3 // 4

    def home(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") & self.mask

    def cell(self, index: int) -> tuple[bytes, int, int, int]:
        return CELL.unpack_from(self.buf, self.offset + index * CELL.size)

    def scan(self, key: bytes, slot: int) -> tuple[int, int, int, int, int]:
        """(count over all slots, cells of key, index of slot's cell or -1, its count, the
        free cell ending the run: where a new cell for key goes)."""
        total = entries = own_count = 0
        own = -1
        index = self.home(key)
        buf, offset, size, mask = self.buf, self.offset, CELL.size, self.mask
        unpack = CELL.unpack_from
        for _ in range(self.cells):
            cell_key, count, cell_slot, used = unpack(buf, offset + index * size)
            if not used:
                return total, entries, own, own_count, index
            if cell_key == key:
                total += count
                entries += 1
                if cell_slot == slot:
                    own, own_count = index, count
            index = (index + 1) & mask
        return total, entries, own, own_count, -1        # no free cell (never at 3/4 full)

    def set_count(self, index: int, count: int) -> None:
        _U32.pack_into(self.buf, self.offset + index * CELL.size + 16, count)

    def put(self, index: int, key: bytes, slot: int) -> None:
        CELL.pack_into(self.buf, self.offset + index * CELL.size, key, 1, slot, 1)

    def remove(self, index: int) -> None:
        """Empty cell `index`, moving later cells of its run back so every key stays reachable
        from its home (a writer killed midway leaves at worst a duplicate: see _repair)."""
        mask, hole, probe = self.mask, index, index
        while True:
            probe = (probe + 1) & mask
            key, count, slot, used = self.cell(probe)
            if not used:
                break
            if (probe - self.home(key)) & mask >= (probe - hole) & mask:
                self.buf[self._at(hole):self._at(hole) + CELL.size] = \
                    self.buf[self._at(probe):self._at(probe) + CELL.size]
                hole = probe
        _U16.pack_into(self.buf, self._at(hole) + 22, 0)

    def _at(self, index: int) -> int:
        return self.offset + index * CELL.size

    def start(self) -> int:
        """An empty cell: no run crosses it, so a walk from it meets every run whole."""
        for index in range(self.cells):
            if not self.cell(index)[3]:
                return index
        raise RuntimeError("a shared count table has no empty cell; recreate the limits file")

    def walk(self):
        """Indices of every cell once, starting after an empty one, so that removing the cell
        just yielded (then yielding the same index again) visits whatever moved into it."""
        first = self.start()
        step = 1
        while step <= self.cells:
            index = (first + step) & self.mask
            again = yield index
            if not again:
                step += 1

    def drop(self, keep) -> list[bytes]:
        """Remove every used cell for which keep(key, slot) is false; their keys."""
        dropped = []
        walk = self.walk()
        again = None
        try:
            while True:
                index = walk.send(again)
                key, _count, slot, used = self.cell(index)
                again = bool(used) and not keep(key, slot)
                if again:
                    self.remove(index)
                    dropped.append(key)
        except StopIteration:
            return dropped

    def used_cells(self) -> list[tuple[bytes, int, int]]:
        return [(key, count, slot) for key, count, slot, used in
                (self.cell(index) for index in range(self.cells)) if used]


class Buckets:
    """Token buckets in sets of WAYS cells: a key lives in the set its hash names."""

    def __init__(self, buf, offset: int, sets: int, rate: float, burst: float):
        self.buf, self.offset, self.mask = buf, offset, sets - 1
        self.sets = sets
        self.rate, self.burst = rate, burst
        self.idle = burst / rate if rate else float("inf")

    def take(self, key: bytes, now: float) -> tuple[float, int, int]:
        """(seconds to wait, 0 if a token was spent; change in buckets used; buckets evicted)."""
        at = self.offset + (int.from_bytes(key[8:], "little") & self.mask) * SET.size
        values = SET.unpack_from(self.buf, at)
        keys = values[0::3]
        used = evicted = 0
        if key in keys:
            way = keys.index(key)
            tokens, updated = values[3 * way + 1:3 * way + 3]
            tokens = min(self.burst, tokens + (now - updated) * self.rate)
        else:
            tokens = self.burst
            way, used, evicted = self._place(at, keys, values[2::3], now)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        BUCKET.pack_into(self.buf, at + way * BUCKET.size, key, tokens, now)
        return wait, used, evicted

    def _place(self, at: int, keys, updates, now: float) -> tuple[int, int, int]:
        """A way for a new bucket in the set at `at`: (way, change in buckets used, evicted).
        Buckets idle long enough to be full again are forgotten first (as if never seen);
        failing that, the least recently used is evicted."""
        used = 0
        free = -1
        for way in range(WAYS):
            if keys[way] == EMPTY_KEY:
                free = way if free < 0 else free
            elif now - updates[way] >= self.idle:
                BUCKET.pack_into(self.buf, at + way * BUCKET.size, EMPTY_KEY, 0.0, 0.0)
                used -= 1
                free = way if free < 0 else free
        if free >= 0:
            return free, used + 1, 0
        return updates.index(min(updates)), used, 1

    def count(self) -> int:
        return sum(1 for set_index in range(self.sets)
                   for key in SET.unpack_from(self.buf, self.offset + set_index * SET.size)[::3]
                   if key != EMPTY_KEY)
