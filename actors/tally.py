"""Tally: the instance's counters, kept across the deaths and replacements of its workers.

Each worker counts for itself, so the instance's counter is built from the workers' answers
(actors/replies.py combine_stats). A worker that dies (SIGKILL, a crash) or is replaced
(SIGHUP) takes its counts with it: summed over the live workers alone, /stats and /metrics
would fall by its share, which Prometheus reads as a reset (a spike in rate()). So every
answer to GetStats also settles the counts it used into `<instance dir>/counters.json`:

    workers   per live worker ("<pid>:<start>"): its largest counts seen, and for the counts
              of records read, the offset that lines it up with the instance (below)
    retired   the counts of the dead workers, summed
    floor     the largest count of records read by any dead worker
    started_monotonic, started_at
              when the oldest worker ever seen started (time.monotonic(), the whole machine's
              clock since boot, which the wall clock's steps do not move; the file lives in
              the master's instance directory, so never across a boot): the instance's uptime
              (earlier versions kept `started` in Unix time: workers of both, after a SIGHUP
              to new code, each read their own); `started_at`, the same start as the Unix
              time that worker read then (sse_start_time_seconds: read once, never moved by
              the wall clock's steps)

Counts of deliveries, drops, replays, connections and refusals (SUMMED) are the retired
ones plus every live worker's. Every worker reads every record, so a count of records read
(PER_RECORD) is the instance's largest: a worker joining late starts at 0, and its offset
is the instance's count then, less its own (a count that appears later, a new topic, it read
from the start as every worker did: offset 0); the instance's count is the largest of the
floor and every worker's offset plus count. Both never fall: a worker's counts only grow,
and a dead one's move into `retired` and `floor` whole. A worker that stops settles its last
counts (InstanceGateway.keep_last_counts); one killed loses what it counted after the last
answer that asked it (it was never shown).

The file is read and replaced (written aside, then renamed) under an flock, so the workers
settle one at a time and a worker killed mid-way leaves the previous file.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from actors import replies
from actors.replies import ServiceStats
from actors.processes import process_start

logger = logging.getLogger(__name__)

TALLY_FILE = "counters.json"
LOCK_WAIT = 1.0           # seconds a settle waits for another worker's
SUMMED = ("events_delivered", "events_dropped", "events_replayed", "kafka_replays",
          "slow_disconnects", "connections_total", "delivered_per_topic", "dropped_per_topic")
PER_RECORD = tuple(name for name in replies.PER_RECORD if name != "kafka_lag")  # lag: no count
REFUSED = "limiter.refused"
STARTED = "started_monotonic"
STARTED_AT = "started_at"       # the same start as a Unix time, as its worker read it then


def _started(state: dict, started: float, started_at: float) -> None:
    """The instance's start: the oldest worker's ever seen. Its Unix time is the one that
    worker read at its start (a later worker's is not comparable: the wall clock steps)."""
    if started_at:                      # 0: no worker said (all of an earlier version)
        if STARTED not in state or started < state[STARTED] - 1.0:
            state[STARTED_AT] = started_at
        elif STARTED_AT not in state:   # a file of an earlier version: its start, in Unix time
            state[STARTED_AT] = started_at - (started - state[STARTED])
    state[STARTED] = min(state.get(STARTED, started), started)


def identity(pid: int) -> str | None:
    """"<pid>:<start time>" of a live process of ours; None when it is gone."""
    start = process_start(pid)
    return None if start is None else f"{pid}:{start}"


def worker_identity(name: str) -> str | None:
    """The identity of a peer named "worker <pid>" (rpc/peers.py); None when it is gone."""
    pid = name.rpartition(" ")[2]
    return identity(int(pid)) if pid.isdigit() else None


def is_alive(key: str) -> bool:
    pid, _, start = key.partition(":")
    now = identity(int(pid))
    return now is not None and (now == key or start == "0" or now.endswith(":0"))


def flatten(figures: ServiceStats) -> tuple[dict[str, int], dict[str, int]]:
    """One worker's counters as flat {name or "name/key": count}: (summed, per record)."""
    broker = figures.broker
    summed = _flat(broker, SUMMED)
    summed.update((f"{REFUSED}/{key}", count) for key, count in figures.limiter.refused.items())
    return summed, _flat(broker, PER_RECORD)


def _flat(stats, names) -> dict[str, int]:
    flat: dict[str, int] = {}
    for name in names:
        value = getattr(stats, name)
        if isinstance(value, dict):
            flat.update((f"{name}/{key}", count) for key, count in value.items())
        else:
            flat[name] = value
    return flat


def unflatten(figures: ServiceStats, summed: dict[str, int],
              records: dict[str, int]) -> ServiceStats:
    """`figures` with its counters replaced by the instance's."""
    values: dict[str, dict] = {}
    for flat in (summed, records):
        for name, count in flat.items():
            field, _, key = name.partition("/")
            values.setdefault(field, {})[key] = count
    broker: dict[str, Any] = {field: (counts if field.endswith("_topic") else counts[""])
              for field, counts in values.items() if field != REFUSED}
    for name in SUMMED + PER_RECORD:
        broker.setdefault(name, {} if name.endswith("_topic") else 0)
    limiter = replace(figures.limiter, refused=values.get(REFUSED, {}))
    return replace(figures, broker=replace(figures.broker, **broker), limiter=limiter)


class Tally:
    """The counters file of one instance; settle() is called with every GetStats answer."""

    def __init__(self, path: str, *, own: Callable[[], str | None] = lambda: identity(os.getpid()),
                 identify: Callable[[str], str | None] = worker_identity,
                 alive: Callable[[str], bool] = is_alive):
        self.path, self.own, self.identify, self.alive = path, own, identify, alive
        self.lock = threading.Lock()
        self.failed = 0         # answers without the file since it was last kept

    def settle(self, combined: ServiceStats, mine: ServiceStats,
               peers: dict[str, ServiceStats]) -> ServiceStats:
        """`combined` (the live workers' figures, combined) with the instance's counters;
        `mine` this worker's own figures, `peers` the others' by name. `combined` unchanged
        (logged) when the file cannot be used."""
        try:
            with self.lock, _Flock(self.path + ".lock"):
                parts = {key: figures for key, figures in
                         [(self.own(), mine), *((self.identify(name), figures)
                                                for name, figures in peers.items())] if key}
                state = self._load()
                self._retire(state, parts)
                known = _record_names(state)
                newcomers = [key for key in parts if key not in state["workers"]]
                for key, figures in parts.items():
                    _record(state, key, *flatten(figures))
                for key in newcomers:
                    _first_sight(state, key, known)
                for key in sorted(parts, key=lambda key: key in newcomers):
                    _line_up(state, key, joining=key in newcomers)
                now = time.monotonic()
                _started(state, now - combined.broker.uptime_seconds, combined.broker.started_at)
                self._save(state)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.failed += 1
            if self.failed == 1:        # then once it is kept again: not with every answer
                full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
                logger.error("the instance's counters in %s could not be kept (%s: %s)%s: "
                             "/stats, /metrics and GetStats show the live workers' counts only "
                             "(the counters of workers that ended are left out) until they can",
                             self.path, type(exc).__name__, exc,
                             "; free space in its filesystem" if full else "")
            return combined
        if self.failed:
            logger.warning("the instance's counters in %s are kept again, after %d answer(s) "
                           "without them", self.path, self.failed)
            self.failed = 0
        figures = unflatten(combined, *totals(state))
        uptime = round(now - state[STARTED], 3)
        return replace(figures, broker=replace(figures.broker, uptime_seconds=uptime,
                                               started_at=state.get(STARTED_AT, 0.0)))

    def _load(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as file:
                state = json.load(file)
        except FileNotFoundError:
            state = {}
        except ValueError as exc:           # cut short (a full disk), edited: never mended
            state = _damaged(self.path, exc)
        if not isinstance(state, dict) or not all(
                isinstance(state.get(part, {}), dict) for part in ("workers", "retired", "floor")):
            state = _damaged(self.path, "not the counters' shape")
        for part in ("workers", "retired", "floor"):
            state.setdefault(part, {})
        return state

    def _retire(self, state: dict, parts: dict) -> None:
        workers = state["workers"]
        for key in [key for key in workers if key not in parts and not self.alive(key)]:
            entry = workers.pop(key)
            _add(state["retired"], entry["summed"])
            for name, count in entry["records"].items():
                line = entry["offsets"].get(name, 0) + count
                state["floor"][name] = max(state["floor"].get(name, 0), line)

    def _save(self, state: dict) -> None:
        aside = f"{self.path}.{os.getpid()}.new"
        with open(aside, "w", encoding="utf-8") as file:
            file.write(json.dumps(state, separators=(",", ":")))    # C encoder: dump() is not
        os.replace(aside, self.path)


def _damaged(path: str, why) -> dict:
    logger.error("the instance's counters in %s were damaged (%s): started afresh; the "
                 "counts go on from the live workers', and those of workers that ended before "
                 "are lost", path, why)
    return {}


def _record(state: dict, key: str, summed: dict, records: dict) -> None:
    """A live worker's counts: the largest seen of each."""
    entry = state["workers"].setdefault(key, {"summed": {}, "records": {}, "offsets": {}})
    _raise(entry["summed"], summed)
    _raise(entry["records"], records)


def _record_names(state: dict) -> set[str]:
    """The counts of records read that the instance has (its workers' and the dead's)."""
    return set(state["floor"]).union(*(entry["records"] for entry in state["workers"].values()))


def _first_sight(state: dict, key: str, known: set[str]) -> None:
    """A worker seen for the first time is lined up with the instance on every count of
    records read the instance has, its own count of those it has not read yet being 0: lined
    up only when it first counts one (a topic it had no event of yet), it would take the
    instance's count then less its own, as if it had read nothing new since it was first
    seen, and what it read meanwhile would be lost to the instance."""
    entry = state["workers"][key]
    for name in known:
        entry["records"].setdefault(name, 0)


def _line_up(state: dict, key: str, joining: bool) -> None:
    """A worker's new count of records read gets its offset (once every worker's latest
    counts are recorded, the joining ones' last). A worker `joining` the tally is lined up
    with the instance: what it did not read, it joined too late for. A count the instance did
    not have when the worker joined (a new topic) it read from its first record, as every
    other worker did: it starts from 0, however far apart the workers happen to be when the
    first answer holds it."""
    entry = state["workers"][key]
    for name, count in entry["records"].items():
        if name not in entry["offsets"]:
            entry["offsets"][name] = (max(0, _record_total(state, name, but=key) - count)
                                      if joining else 0)


def _record_total(state: dict, name: str, but: str = "") -> int:
    lines = [entry["offsets"].get(name, 0) + entry["records"][name]
             for key, entry in state["workers"].items()
             if key != but and name in entry["records"] and name in entry["offsets"]]
    return max([state["floor"].get(name, 0), *lines])


def totals(state: dict) -> tuple[dict[str, int], dict[str, int]]:
    """The instance's counters: (summed, per record)."""
    summed = dict(state["retired"])
    for entry in state["workers"].values():
        _add(summed, entry["summed"])
    names = set(state["floor"]).union(*(entry["records"] for entry in state["workers"].values()))
    return summed, {name: _record_total(state, name) for name in names}


def _add(total: dict, counts: dict) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


def _raise(largest: dict, counts: dict) -> None:
    for name, count in counts.items():
        largest[name] = max(largest.get(name, 0), count)


class _Flock:
    """An exclusive flock on a small file beside the counters, for one settle. Waited for
    without blocking the worker (a wait in flock would stop every greenlet), LOCK_WAIT at
    most: a holder stopped (SIGSTOP) inside it cannot hang the others' /stats."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._lock(time.monotonic() + LOCK_WAIT)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def _lock(self, deadline: float) -> None:
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another worker held {self.path} for {LOCK_WAIT} s"
                                       ) from None
                time.sleep(0.002)           # gevent's, in a worker: others run meanwhile

    def __exit__(self, *exc):
        os.close(self.fd)           # closing drops the lock
        return False
