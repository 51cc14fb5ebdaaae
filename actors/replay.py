"""ReplayActor: serves resumes the history cannot, by reading Kafka itself.

It reads each partition of a stream's gap [from the client's frontier, to the live frontier
when the client subscribed), merges partitions by timestamp (each partition stays in order),
gives every event the frontier after it as its id, and streams the events into the client's
outbox in bounded chunks; then it tells the broker, which appends the live events it held
meanwhile. Replays run as jobs in short slices (actors/replay_queue.py): clients resuming
from the same place share one read, a client that leaves has its replay cancelled at once,
and client addresses take turns. A gap that Kafka no longer retains, or one larger than
SSE_REPLAY_MAX_EVENTS, starts the replay with a `gap` event saying so. An event with an owner
(AUTH_SUBJECT_FIELD) is replayed to its subject's streams only.
"""
from __future__ import annotations

import logging
import time

import pykka

from actors import framing, prompt
from actors.kafka_client import KafkaUnreachable
from actors.kafka_reader import KafkaReader
from actors.logs import LogBudget, more_since
from actors.messages import CancelReplay, ContinueReplay, DisconnectClient, ReadRange, Replayed
from actors.replay_queue import Job, ReplayQueue, ReplayStalled
from actors import resume
from actors.resume import Frontier

logger = logging.getLogger(__name__)

SLICE_S = 0.02          # one turn of a read, before cancellations and other reads get theirs
IDLE_S = 0.005          # pause when every read waits for its clients (doubling to IDLE_MAX_S)
IDLE_MAX_S = 0.05
BOUNDS_TTL_S = 1.0      # how long the log start offsets looked up for one resume serve others
SINCE_TTL_S = 1.0       # ... and the offsets found for one `since` time (see _offsets_at)
DOWN_LOG_INTERVAL_S = 30.0   # Kafka down: said at most this often, however many clients resume
UNAVAILABLE = "replay unavailable (Kafka unreachable); retry"
REQUEST_FAILED = "replay failed for this request (the gateway log says why); Kafka is fine"
GAP_LOG_INTERVAL_S = 60.0    # resumes that lose records: one WARNING a minute, the rest INFO
LOST = {    # a gap's reason: what became of the records, and what to do
    "retention": "deleted by Kafka's retention before it came back (raise the topics' "
                 "retention.ms if clients stay away this long)",
    "replay_limit": "over SSE_REPLAY_MAX_EVENTS ({}) (raise it if clients should catch up "
                    "further back)",
    "topic_deleted": "gone with their deleted topic",
}


class ReplayActor(pykka.ThreadingActor):
    def __init__(self, *, settings, reader_factory=KafkaReader, clock=time.monotonic):
        super().__init__()
        self.settings = settings
        self.reader_factory = reader_factory
        self.reader = None
        self.clock = clock
        self.queue = ReplayQueue()
        self.scheduled = False
        self.idle_s = IDLE_S
        self._log_start_cache: tuple = (float("-inf"), -1, {})   # when, incarnations, offsets
        self._at_times: dict[int, tuple] = {}   # since_ms -> (when, incarnations, offsets)
        self._swept = float("-inf")             # when _at_times last lost its stale entries
        self._down_log = LogBudget(1, DOWN_LOG_INTERVAL_S)
        self._gap_log = LogBudget(1, GAP_LOG_INTERVAL_S)
        self._unreadable_said: set = set()      # partitions said unreadable, until readable

    def on_receive(self, message):
        match message:
            case ReadRange():
                try:
                    self.enqueue(message)
                except Exception as exc:  # noqa: BLE001 - one request's failure ends it alone
                    self._failed(message, exc)
            case CancelReplay(client_id=client_id):
                if self.queue.cancel(client_id) is not None:
                    logger.debug("replay for client %s cancelled: it left", client_id)
            case ContinueReplay():
                self.scheduled = False
                self.work()
            case _:
                return super().on_receive(message)

    def enqueue(self, request: ReadRange) -> None:
        """Plan a client's replay and queue it (joining a read from the same place)."""
        if self.reader is None:
            self.reader = self.reader_factory(self.settings)
        until = request.until
        # Nothing is before offset 0: such a partition is not asked about (one gone with its
        # topic's re-creation with fewer partitions stays in the live positions at 0).
        empty = {p for p, o in until.items() if o <= 0}
        begin, out = self._bounds(set(until) - request.deleted - empty)
        start, gaps = self.plan(request, begin, out | empty)
        floor = request.start or {}     # kept where this instance lacks a partition it has
        offsets = {**floor, **{p: max(start[p], floor.get(p, 0)) for p in until}}
        # Partitions it cannot read: the stream keeps its place there, and reads them later.
        short = {p: floor.get(p, 0) for p in out if floor.get(p, 0) < until[p]}
        offsets.update(short)
        topics = self.settings.kafka_topics
        notice = framing.gap(Frontier(topics, offsets).token(), gaps) if gaps else b""
        if gaps:
            self._say_lost(request, gaps)
        self.queue.add(Job(request, notice, short),
                       {p: o for p, o in start.items() if p not in out and p not in empty},
                       offsets, topics, self.clock())
        self._schedule()

    def _say_lost(self, request: ReadRange, gaps: list) -> None:
        """What a client's gap event tells it, for the operator: how many records of its
        topics and why (a `since` stream's: at most, as retention's may be older than it)."""
        lost: dict[str, int] = {}
        for reason, _p, first, end in gaps:
            lost[reason] = lost.get(reason, 0) + end - first
        dropped = self._gap_log.take(self.clock())
        log = logger.warning if dropped is not None else logger.info
        how, bound = (("resumed", "") if request.start is not None
                      else ("asked for a time and starts", "up to "))
        log("client %s %s with a gap: %s%d record(s) of its topics it will not get (a gap "
            "event says so): %s%s", request.client_id, how, bound, sum(lost.values()),
            "; ".join(f"{count} {LOST[reason].format(self.settings.sse_replay_max_events)}"
                      for reason, count in lost.items()), more_since(dropped or 0))

    def _bounds(self, partitions: set) -> tuple[dict, set]:
        """The log start offsets of the partitions the reader can ask Kafka about, and the
        others (no leader, or one that does not let us in): a look-up that failed on such a
        leader, which the reader could not know of before, is tried once without it."""
        out = self._unreadable(partitions)
        try:
            return self.log_start(partitions - out), out
        except Exception as exc:
            again = self._unreadable(partitions)
            if not _kafka_down(exc) or again <= out:
                raise
            return self.log_start(partitions - again), again

    def _unreadable(self, partitions: set) -> set:
        """Partitions the reader cannot read now; said once each time they change."""
        found = self.reader.unreadable(partitions) if partitions else {}
        if found and found.keys() - self._unreadable_said:
            logger.warning("replay: %s; streams resuming keep their place there and read it "
                           "once it is readable again (they reconnect then)",
                           "; ".join(f"{t}:{p} not read: {why}"
                                     for (t, p), why in sorted(found.items())))
        self._unreadable_said = (self._unreadable_said - partitions) | set(found)
        return set(found)

    def log_start(self, partitions: set) -> dict:
        """The first retained offset of each partition (looked up at most every BOUNDS_TTL_S,
        and again once a topic was re-created: its offsets started anew)."""
        when, generation, begin = self._log_start_cache
        fresh = _still_serves(self.clock(), when, generation, BOUNDS_TTL_S)
        if not fresh or not partitions <= begin.keys():
            begin, _end = self.reader.bounds(partitions)
            self._log_start_cache = (self.clock(), resume.INCARNATIONS.generation, begin)
        return begin

    def work(self) -> None:
        """Serve one slice of the next read, then let everything else run."""
        read = self.queue.next(self.clock())
        if read is None:
            if len(self.queue):
                time.sleep(self.idle_s)     # every read waits for its clients to take frames
                self.idle_s = min(self.idle_s * 2, IDLE_MAX_S)
                self._schedule()
            return
        self.idle_s = IDLE_S
        try:
            if self.reader is None:
                self.reader = self.reader_factory(self.settings)
            done = read.run(self.reader, self.settings.sse_max_event_bytes, self.clock, SLICE_S,
                            getattr(self.settings, "auth_subject_field", None))
        except Exception as exc:  # noqa: BLE001 - its clients retry; the other reads go on
            self._read_failed(read, exc)
            done = []
        self.queue.done(done)
        for job in done:
            job.flush(force=True)
            job.reply_to.tell(Replayed(job.client_id, (), True, streamed=dict(job.streamed),
                                       short=job.short))
        read.served += len(done)
        if not read.jobs and not read.removed:
            self.queue.remove(read)
            logger.info("replayed %d record(s) from Kafka to %d client(s) in %.0f ms",
                        read.records, read.served, (self.clock() - read.created) * 1000)
        if len(self.queue):
            prompt.turn()                 # live streams run between slices
            self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.actor_ref.tell(ContinueReplay())

    def plan(self, request: ReadRange, begin: dict, out=frozenset()) -> tuple[dict, list]:
        """Where to start in each partition, and the gaps the client must be told about
        (the partitions `out` are not read now: nothing to read there)."""
        until, deleted, seen = request.until, request.deleted, request.start or {}
        if request.since_ms is not None:
            start = self._since_starts(request, begin, out)
        else:
            start = {p: seen.get(p, begin.get(p, 0)) for p in until}
        gaps = [("topic_deleted", p, seen.get(p, 0), until[p]) for p in sorted(deleted)
                if request.start is not None and seen.get(p, 0) < until[p]]
        for p in deleted | out:
            start[p] = until[p]             # nothing left to read there (or not now)
        return start, gaps + _clamp(start, until, begin, self.settings.sse_replay_max_events)

    def _since_starts(self, request: ReadRange, begin: dict, out) -> dict:
        """A `since` stream's starts: the first event stamped at or after it, or where the
        client's Last-Event-ID says it was."""
        until, seen, since_ms = request.until, request.start or {}, request.since_ms or 0
        # A reconnect's Last-Event-ID says where it was: from there, whatever the time (it
        # was shown events stamped before it live: a time in the future, a slow clock),
        # a place of 0 too (the partition was empty: what came since is all unseen).
        asked = {p for p in until if p not in seen} - request.deleted - out
        if since_ms <= 0:
            # Before the epoch: from the earliest event, records without a time (-1) too,
            # which Kafka's offsets-for-times passes over (it refuses negative times).
            found = {p: begin[p] for p in asked if begin[p] < until[p]}
        else:
            found = self._offsets_at(asked, since_ms) if asked else {}
        return {p: seen[p] if p in seen else _at_time(found.get(p), until[p], begin.get(p, 0))
                for p in until}

    def _offsets_at(self, partitions: set, since_ms: int) -> dict:
        """Kafka's first offset at or after the time, per partition: an offset found serves
        the streams asking for the same time for SINCE_TTL_S (a warm start's held streams
        all do; a round trip apiece made 2,000 of them wait 2 s). It stays the first while
        the log only grows (retention: see _at_time); "none that late" (None) stops being
        true with the next record, and is asked again."""
        now, generation = self.clock(), resume.INCARNATIONS.generation
        when, made, known = self._at_times.get(since_ms, (now, generation, {}))
        if not _still_serves(now, when, made, SINCE_TTL_S):
            when, made, known = now, generation, {}
        wanted = partitions - known.keys()
        found = self.reader.offsets_for_time(wanted, since_ms) if wanted else {}
        if now - self._swept > SINCE_TTL_S:
            self._at_times = {t: v for t, v in self._at_times.items()
                              if now - v[0] <= SINCE_TTL_S}
            self._swept = now
        self._at_times[since_ms] = (when, made, {**known, **{p: o for p, o in found.items()
                                                            if o is not None}})
        return {**{p: known[p] for p in partitions & known.keys()}, **found}

    def _failed(self, request: ReadRange, exc: Exception) -> None:
        """Kafka down: drop the shared reader (the next replay opens a new one). Anything else
        concerns this request alone: the reader stays, and only this client is told."""
        if _kafka_down(exc):
            self._warn_down(f"replay for client {request.client_id} failed: {exc}")
            self._drop_reader()
            reason = UNAVAILABLE
        else:
            logger.error("replay for client %s failed", request.client_id, exc_info=exc)
            reason = REQUEST_FAILED
        request.reply_to.tell(DisconnectClient(request.client_id, reason))

    def _read_failed(self, read, exc: Exception) -> None:
        """Like _failed, for every client of a shared read."""
        down = _kafka_down(exc) or isinstance(exc, ReplayStalled)
        if down:
            self._warn_down(f"replay read for {len(read.jobs)} client(s) failed: {exc}")
            self._drop_reader()
        else:
            logger.error("replay read for %d client(s) failed", len(read.jobs), exc_info=exc)
        for job in self.queue.remove(read):
            job.reply_to.tell(DisconnectClient(job.client_id,
                                               UNAVAILABLE if down else REQUEST_FAILED))

    def _warn_down(self, text: str) -> None:
        """Kafka down, at most once per DOWN_LOG_INTERVAL_S: in an outage every resuming
        client fails alike (and the consumer has said that Kafka is unreachable)."""
        dropped = self._down_log.take(self.clock())
        if dropped is not None:
            logger.warning("%s%s", text, more_since(dropped))

    def _drop_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def on_stop(self):
        self._drop_reader()


def _at_time(found: int | None, until: int, begin: int) -> int:
    """Where a `since` starts in a partition: the first record that late (none: the live
    end). When that is the oldest record Kafka retains, the time may have been in what
    retention deleted: from the partition's beginning, which the plan turns into a gap."""
    if found is None:
        return until
    return 0 if found <= begin else found


def _still_serves(now: float, when: float, generation: int, ttl_s: float) -> bool:
    """Does a look-up made at `when`, of the topics' incarnations `generation`, still serve?
    Not past its time, nor across a topic's re-creation (its offsets started anew)."""
    return now - when <= ttl_s and generation == resume.INCARNATIONS.generation


def _clamp(start: dict, until: dict, begin: dict, max_events: int) -> list:
    """Move each start (in place) into what Kafka still has and within the replay's limit;
    the gaps that leaves (retention, replay_limit)."""
    gaps = []
    for p in until:
        if start[p] < begin.get(p, 0):
            gaps.append(("retention", p, start[p], begin[p]))
            start[p] = begin[p]
        start[p] = min(start[p], until[p])
    keep = _shares({p: until[p] - start[p] for p in until}, max_events)
    for p in until:
        if until[p] - keep[p] > start[p]:
            gaps.append(("replay_limit", p, start[p], until[p] - keep[p]))
            start[p] = until[p] - keep[p]
    return gaps


def _shares(sizes: dict, limit: int) -> dict:
    """How much of each partition's range to keep: all when they hold at most `limit`
    records, else `limit` records in all, shared in proportion (the remainders to the
    largest fractions)."""
    total = sum(sizes.values())
    if total <= limit:
        return sizes
    keep = {p: size * limit // total for p, size in sizes.items()}
    rest = limit - sum(keep.values())
    for p in sorted(sizes, key=lambda p: -(sizes[p] * limit % total))[:rest]:
        keep[p] += 1
    return keep


def _kafka_down(exc: Exception) -> bool:
    """An error of the connection to Kafka or of the Kafka client, not of one request."""
    from kafka.errors import KafkaError     # here: kafka-python loads after gevent patching
    return isinstance(exc, (KafkaUnreachable, KafkaError, OSError))
