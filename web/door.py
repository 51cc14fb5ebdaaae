"""The door: connections that have not finished their request head yet (pure bookkeeping).

A connection is *pending* from accept until its request head is complete. The door decides:
- `enter`: a newcomer is refused when its address already holds `per_address` pending
  connections (addresses in `exempt`, i.e. trusted proxies, are not counted per address);
  when the whole worker holds `total`, the oldest pending connection is named for eviction,
  so a client that sends its request at once always gets in;
- `expired`: the pending connections whose head took longer than `timeout` seconds.
Time is passed in (monotonic seconds), so this module needs no clock and no gevent.
"""
from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class DoorLimits:
    timeout: float          # seconds a request head may take (HTTP_HEADER_TIMEOUT_SECONDS)
    per_address: int        # pending connections one address may hold (HTTP_MAX_PENDING_PER_IP)
    total: int              # pending connections the worker holds at most (HTTP_MAX_PENDING)
    exempt: tuple = ()      # networks not counted per address (TRUSTED_PROXIES)


def address_key(peer) -> str:
    """What the per-address cap counts by: the peer address, for IPv6 its /64 (the rule of
    web/address.limit_key, written again here: that module loads Flask, which the master,
    importing web/worker.py before gevent patches, must not)."""
    return _host_key(_host(peer))


def _host(peer) -> str:
    return peer[0] if isinstance(peer, tuple) else str(peer)


@lru_cache(maxsize=4096)        # every connection asks; the same peers come back (reconnects)
def _host_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped:
        return str(mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Door:
    """Pending connections by age. Keys are whatever identifies a connection (its socket)."""

    def __init__(self, limits: DoorLimits):
        self.limits = limits
        self._pending: OrderedDict = OrderedDict()     # conn -> (address key, deadline)
        self._per_address: Counter = Counter()
        self.refused = self.timed_out = self.evicted = 0

    def __len__(self) -> int:
        return len(self._pending)

    def holding(self, key: str) -> int:
        return self._per_address[key]

    def enter(self, conn, peer, now: float):
        """Admit `conn` from `peer` (a socket address or a host) as pending. Returns
        (admitted, conn to evict or None)."""
        counted = not self._exempt(_host(peer))
        key = address_key(peer)
        if counted and self._per_address[key] >= self.limits.per_address:
            self.refused += 1
            return False, None
        evict = None
        if len(self._pending) >= self.limits.total:
            evict = next(iter(self._pending))
            self._forget(evict)
            self.evicted += 1
        self._pending[conn] = (key if counted else None, now + self.limits.timeout)
        if counted:
            self._per_address[key] += 1
        return True, evict

    def done(self, conn) -> None:
        """The head is complete (or the connection ended): it is no longer pending."""
        self._forget(conn)

    def expired(self, now: float) -> list:
        """Pending connections past their deadline, oldest first; they are forgotten."""
        late = []
        for conn, (_key, deadline) in self._pending.items():
            if deadline > now:
                break
            late.append(conn)
        for conn in late:
            self._forget(conn)
        self.timed_out += len(late)
        return late

    def drain(self) -> list:
        """Every pending connection (the worker is stopping); they are forgotten."""
        every = list(self._pending)
        for conn in every:
            self._forget(conn)
        return every

    def _forget(self, conn) -> None:
        entry = self._pending.pop(conn, None)
        if entry is not None and entry[0] is not None:
            key = entry[0]
            self._per_address[key] -= 1
            if self._per_address[key] <= 0:
                del self._per_address[key]

    def _exempt(self, host: str) -> bool:
        """Is the peer itself a trusted proxy? (by its own address: not its /64)"""
        if not self.limits.exempt:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        address = getattr(address, "ipv4_mapped", None) or address
        return any(address in network for network in self.limits.exempt)
