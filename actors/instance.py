"""The instance: this worker's Gateway plus the other workers of the same gunicorn master.

    InstanceGateway(local, peers)      what web/ and rpc/ hold under gunicorn (WORKERS=1 too)
    .stats() .health() .clients() .disconnect() .disconnect_subject()   the whole instance
    .admit() .open_stream() .auth .settings .stopped_actors() .local    this worker's

`peers` reaches the other workers (rpc/peers.py: a private Unix socket each, found in the
instance directory). Its one method starts the same question on every live peer at once and
returns a function that collects the answers:

    collect = peers.ask(method, *args, timeout=seconds)   # "stats", "clients", ...
    for answer in collect():  answer.peer (a name), answer.value, answer.silent
                                                      (None, or why it did not answer)

A worker that is gone (its socket refuses) or stopping is skipped by `peers`: it holds
nothing any more, or not for long.
A worker that is alive but does not answer within the deadline is `silent`, and then:
- stats, clients: Unavailable (retry). A partial sum would make the counters go backwards and
  a page miss clients while its total looks whole; operators would act on wrong figures.
- disconnect: True when any worker held the client; otherwise Unavailable when one was
  silent (it may hold the client), else False (NOT_FOUND).
- disconnect_subject: Unavailable when one was silent (its streams of the subject may still
  run; the message says how many the others ended), else the sum.
- health: "degraded", saying which worker did not answer (a stuck worker is not healthy).
Peers get the caller's deadline, a little shorter, so the instance answers before it expires.
With a `tally` (actors/tally.py), the counters of stats keep the share of workers that died or
were replaced, so they never fall.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from actors.gateway import ASK_TIMEOUT, Gateway, Unavailable
from actors.replies import (
    ClientPage, Health, ServiceStats, combine_health, combine_stats, merge_pages,
)

SILENT = ("worker(s) of this instance did not answer in time: {}; retry shortly")


class NoPeers:
    """A single worker: nobody else to ask."""

    def ask(self, method: str, *args, timeout: float) -> Callable[[], list]:
        return list


class InstanceGateway:
    def __init__(self, local: Gateway, peers=None, *, ask_timeout: float = ASK_TIMEOUT,
                 tally=None):
        self.local = local
        self.peers = peers if peers is not None else NoPeers()
        self.ask_timeout = ask_timeout
        self.tally = tally

    # -- this worker's, unchanged --------------------------------------------------------------
    @property
    def settings(self):
        return self.local.settings

    @property
    def auth(self):
        return self.local.auth

    def admit(self, *args, **kwargs):
        return self.local.admit(*args, **kwargs)

    def open_stream(self, **kwargs):
        return self.local.open_stream(**kwargs)

    def stopped_actors(self) -> list[str]:
        return self.local.stopped_actors()

    # -- the instance's ---------------------------------------------------------------------
    def stats(self, timeout: float | None = None) -> ServiceStats:
        collect = self._start("stats", timeout=timeout)
        mine = self.local.stats(timeout)
        answers = collect()
        combined = combine_stats([mine, *self._values(answers)])
        if self.tally is None:
            return combined
        return self.tally.settle(combined, mine, {a.peer: a.value for a in answers})

    def keep_last_counts(self, timeout: float | None = None) -> None:
        """This worker stops (its streams are closed): its last counts go into the tally, so
        the instance keeps what it counted since the last GetStats."""
        self._settle_mine(timeout)

    def join_tally(self, timeout: float | None = None) -> None:
        """This worker starts: it is lined up with the instance's counters now, before it
        reads anything, not at the first GetStats that asks it. What it read before that
        would be lost to the instance whenever no other worker read it too (WORKERS=1, or
        every worker replaced by a SIGHUP). The other workers are asked for their counts
        now: after a SIGHUP the old one drains while this one joins, and it has read on since
        the last GetStats (those that do not answer are lined up later, as before)."""
        try:
            collect = self._start("stats", timeout=timeout) if self.tally is not None else list
        except Unavailable:         # the others cannot be looked up now: lined up later
            collect = list
        self._settle_mine(timeout, {a.peer: a.value for a in collect() if not a.silent})

    def _settle_mine(self, timeout: float | None, peers: dict | None = None) -> None:
        if self.tally is None:
            return
        try:
            mine = self.local.stats(timeout)
        except Unavailable:
            return
        self.tally.settle(mine, mine, peers or {})

    def health(self, timeout: float | None = None) -> Health:
        collect = self._start("health", timeout=timeout)
        mine = self.local.health(timeout)
        answers = collect()
        silent = [f"{a.peer} did not answer ({a.silent})" for a in answers if a.silent]
        return combine_health([mine, *(a.value for a in answers if not a.silent)], silent)

    def clients(self, limit: int, offset: int = 0, after: Sequence | None = None,
                timeout: float | None = None) -> ClientPage:
        """The page `[offset, offset + limit)` of every worker's clients in one order, counted
        from the first client after `after` when given; each worker sends its first
        offset + limit of those (none when `limit` is 0: the total alone)."""
        after = None if after is None else list(after)      # as JSON carries it to a peer
        each = offset + limit if limit else 0
        collect = self._start("clients", each, 0, after, timeout=timeout)
        mine = self.local.clients(each, 0, after, timeout=timeout)
        return merge_pages([mine, *self._values(collect())], limit, offset)

    def disconnect(self, client_id: str, reason: str, timeout: float | None = None) -> bool:
        collect = self._start("disconnect", client_id, reason, timeout=timeout)
        found = self.local.disconnect(client_id, reason, timeout)
        answers = collect()
        if found or any(a.value for a in answers if not a.silent):
            return True
        self._values(answers)                   # a silent worker may hold it: Unavailable
        return False

    def disconnect_subject(self, subject: str, reason: str, timeout: float | None = None) -> int:
        collect = self._start("disconnect_subject", subject, reason, timeout=timeout)
        ended = self.local.disconnect_subject(subject, reason, timeout)
        answers = collect()
        ended += sum(a.value for a in answers if not a.silent)
        silent = [a for a in answers if a.silent]
        if silent:
            raise Unavailable(f"{ended} stream(s) of the subject ended; "
                              + SILENT.format(_names(silent)) + " to end the rest")
        return ended

    # -- asking the peers ---------------------------------------------------------------------
    def _start(self, method: str, *args, timeout: float | None):
        return self.peers.ask(method, *args, timeout=self.peer_timeout(timeout))

    def peer_timeout(self, timeout: float | None) -> float:
        """The caller's deadline (ASK_TIMEOUT at most), less a margin to answer within it."""
        wait = self.ask_timeout if timeout is None else min(self.ask_timeout, timeout)
        return max(0.01, wait - min(0.1, wait * 0.2))

    @staticmethod
    def _values(answers) -> list:
        silent = [a for a in answers if a.silent]
        if silent:
            raise Unavailable(SILENT.format(_names(silent)))
        return [a.value for a in answers]


def _names(answers) -> str:
    return ", ".join(f"{a.peer} ({a.silent})" for a in answers)
