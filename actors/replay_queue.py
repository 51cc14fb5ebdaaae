"""The replay actor's work: jobs, the reads that serve them, and the order they are served in.

A *job* is one client's resume from Kafka: its range, its filter and subject (an owned event
is shown to its subject's jobs only), and the frames waiting for its outbox. A *read* is one
pass over Kafka from one start, serving every job that resumes from there (a reconnect storm
costs one read, not one per client). Reads run in short slices;
the queue picks the next one round-robin by client address (one address's replays cannot
delay another's), FIFO within an address. Memory stays bounded: each partition buffers at most
one fetch, records are parsed and filtered as they go, a frame is built once per id and shared
by the jobs that show it, and a job hands its frames to its client's outbox in chunks of
CHUNK_BYTES, only once the outbox has taken the previous chunk (so a slow client pauses its
replay; one that stays slow for DETACH_AFTER_S leaves its shared read and goes on alone).
"""
from __future__ import annotations

import heapq
import logging
from collections import Counter, OrderedDict, deque

from actors import framing
from actors.events import InvalidRecord, parse_record, time_order, visible
from actors.kafka_reader import Retained, Unreadable
from actors.resume import Frontier

logger = logging.getLogger(__name__)

CHUNK_BYTES = 65536        # frames handed to an outbox at once (a larger event goes alone)
DETACH_AFTER_S = 1.0       # a job whose client does not take its frames leaves a shared read
COALESCE_S = 0.5           # a new read waits this long for company while one like it runs
STALL_S = 30.0             # a read that gets nothing from Kafka this long fails
UNREADABLE_AFTER_S = 1.0   # ... and after this long asks which partitions it cannot read
EMIT_RUN = 128             # records emitted between two looks at the jobs and the fetches


class ReplayStalled(RuntimeError):
    pass


class Job:
    """One client's replay: where it ends, what it wants, and its chunk of frames."""

    __slots__ = ("client_id", "address", "filter", "subject", "named", "outbox", "reply_to",
                 "until", "own_frontier", "chunk", "chunk_bytes", "chunk_count", "last_id",
                 "streamed", "full_since", "short")

    def __init__(self, request, notice: bytes = b"", short: dict | None = None):
        self.client_id = request.client_id
        self.address = request.address
        self.filter = request.filter
        self.subject = request.subject
        self.named = request.named
        self.outbox = request.outbox
        self.reply_to = request.reply_to
        self.until = dict(request.until)
        self.own_frontier: Frontier | None = None   # once its read passed its end
        self.chunk = [notice] if notice else []
        self.chunk_bytes, self.chunk_count = len(notice), 0
        self.last_id: str | None = None
        self.streamed: Counter[str] = Counter()  # events handed to the outbox, per topic
        self.full_since: float | None = None
        self.short = short or {}    # partitions it could not read: where the stream stays

    @property
    def gone(self) -> bool:
        return self.outbox.closed_reason is not None

    @property
    def full(self) -> bool:
        return self.chunk_bytes >= CHUNK_BYTES

    def add(self, frame: bytes, sse_id: str, topic: str) -> None:
        self.chunk.append(frame)
        self.chunk_bytes += len(frame)
        self.chunk_count += 1
        self.last_id = sse_id
        self.streamed[topic] += 1

    def notify(self, frame: bytes, sse_id: str) -> None:
        """A notice (a `gap` event) that moves the client's id but is not an event of a topic."""
        self.chunk.append(frame)
        self.chunk_bytes += len(frame)
        self.last_id = sse_id

    def flush(self, force: bool = False) -> bool:
        """Hand the chunk to the outbox once it has taken the one before (or now, if forced)."""
        if not self.chunk:
            return True
        if not force and self.outbox.queued:
            return False
        frames = self.chunk[0] if len(self.chunk) == 1 else b"".join(self.chunk)
        self.outbox.offer(frames, self.chunk_count, self.last_id, force=True)
        self.chunk, self.chunk_bytes, self.chunk_count = [], 0, 0
        return True


class Read:
    """One pass over Kafka from `start` to the furthest end of its jobs, merging partitions
    by timestamp (each partition in offset order)."""

    def __init__(self, key, start: dict, frontier: Frontier, address: str, now: float):
        self.key = key
        self.address = address
        self.next_offset = dict(start)       # per partition, where the reader goes on from
        self.until = dict(start)             # the furthest end among its jobs
        self.buffers: dict[tuple, deque] = {p: deque() for p in start}
        self.heads: list | None = None       # a heap: (time_order, p) of each buffer's first
        self.frontier = frontier             # the jobs' ids, while none has been passed
        self.jobs: dict[str, Job] = {}
        self.started = False                 # set by the queue when it first runs
        self.created = self.progress = now
        self.records = 0                     # records shown to the jobs
        self.served = 0                      # jobs it completed
        self.removed = False

    def add(self, job: Job) -> None:
        self.jobs[job.client_id] = job
        for p, end in job.until.items():
            if p in self.until:
                self.until[p] = max(self.until[p], end)

    def position(self, p) -> int:
        """Everything of partition p before this offset has been shown to the jobs."""
        buffer = self.buffers[p]
        return buffer[0].offset if buffer else self.next_offset[p]

    def finished(self, job: Job) -> bool:
        return all(self.position(p) >= end for p, end in job.until.items()
                   if p in self.next_offset)

    def wanted(self) -> dict:
        """The ranges to fetch: partitions with nothing buffered and records still to come."""
        return {p: (self.next_offset[p], self.until[p]) for p in self.next_offset
                if not self.buffers[p] and self.next_offset[p] < self.until[p]}

    def hand_over_full(self, now: float) -> list[Job]:
        """Hand each job's full chunk over to its client; the jobs whose client has not made
        room for it (stuck since `full_since`)."""
        out = []
        for job in self.jobs.values():
            if job.full and not job.flush():
                job.full_since = job.full_since if job.full_since is not None else now
                out.append(job)
            else:
                job.full_since = None
        return out

    def detach(self, job: Job, now: float) -> "Read":
        """Take `job` out of this read into one of its own, from where it stands."""
        del self.jobs[job.client_id]
        start = {p: min(self.position(p), job.until.get(p, 0)) for p in self.next_offset}
        frontier = (job.own_frontier
                    or Frontier(self.frontier.topics, dict(self.frontier.offsets)))
        job.own_frontier = None
        alone = Read(None, start, frontier, job.address, now)
        alone.add(job)
        alone.started = True
        return alone

    def run(self, reader, max_bytes: int, clock, budget_s: float,
            owner_of=None) -> list[Job]:
        """Serve the jobs for about `budget_s`; returns the jobs that are complete. `owner_of`
        (AUTH_SUBJECT_FIELD's SubjectField) reads each event's owner."""
        deadline, done = clock() + budget_s, []
        while self.jobs and clock() < deadline:
            done += self._complete()
            if not self.jobs or self.hand_over_full(clock()):
                break
            wanted = self.wanted()
            if wanted:
                if not self._fetch(reader, wanted, clock):
                    break
                continue
            self._emit_run(max_bytes, owner_of, clock, deadline)
        done += self._complete()
        for job in self.jobs.values():
            job.flush()               # whatever is ready, as soon as the client can take it
        return done

    def _fetch(self, reader, wanted: dict, clock) -> bool:
        try:
            records, positions = reader.fetch(wanted)
        except Unreadable as exc:
            self._skip(exc)
            return True
        except Retained as exc:
            self._retained(exc)
            return True
        moved = False
        for r in records:
            p = (r.topic, r.partition)
            if self.next_offset[p] <= r.offset < self.until[p]:
                self.buffers[p].append(r)
                moved = True
        for p in wanted:
            reached = max(self.next_offset[p], positions.get(p, self.next_offset[p]))
            if self.buffers[p]:
                reached = max(reached, self.buffers[p][-1].offset + 1)
                if self.heads is not None:      # it was empty: wanted
                    heapq.heappush(self.heads, (time_order(self.buffers[p][0]), p))
            moved = moved or reached > self.next_offset[p]
            self.next_offset[p] = reached
        now = clock()
        if moved:
            self.progress = now
            return True
        idle = now - self.progress
        if idle > UNREADABLE_AFTER_S and self._leave_out(reader.unreadable(set(wanted))):
            return True
        if idle > STALL_S:
            raise ReplayStalled(f"no records from Kafka for {STALL_S:.0f} s in {sorted(wanted)}")
        return False

    def _leave_out(self, unreadable: dict) -> bool:
        """Stop reading partitions the reader cannot read any more (their leader went away):
        each job whose range there is not done keeps its place (Job.short), for a later resume."""
        for (topic, partition), why in sorted(unreadable.items()):
            p, at = (topic, partition), self.next_offset.pop((topic, partition))
            del self.buffers[p], self.until[p]
            self.heads = None
            logger.warning("replay: %s:%d not read from offset %d on: %s; its streams keep their "
                           "place there", topic, partition, at, why)
            for job in self.jobs.values():
                if at < job.until.get(p, 0):
                    job.short[p] = at
        return bool(unreadable)

    def _skip(self, exc: Unreadable) -> None:
        """Step over partitions whose next batch cannot be read, to their end (what the live
        stream has)."""
        for (topic, partition), offset in exc.offsets.items():
            p = (topic, partition)
            if p in self.next_offset:
                logger.warning("replay: %s:%d from offset %d skipped: %s", topic, partition,
                               offset, exc.reason)
                self._jump(p, offset, self.until[p], "unreadable")

    def _retained(self, exc: Retained) -> None:
        """Kafka deleted records a partition was about to read (retention ran since the read
        was planned): go on from the oldest record it still holds."""
        for (topic, partition), (offset, first) in exc.offsets.items():
            p = (topic, partition)
            if p in self.next_offset:
                told = self._jump(p, offset, min(max(first, offset), self.until[p]),
                                  "retention")
                logger.warning("replay: %s:%d offsets %d to %d were deleted by retention "
                               "meanwhile: %d stream(s) of this read get a gap event (raise "
                               "the topic's retention.ms if replays run this close to it)",
                               topic, partition, offset, first, told)

    def _jump(self, p, offset: int, to: int, reason: str) -> int:
        """Go on from `to` in partition p; each job that wanted what lies between is told
        with a `gap` event (how many were)."""
        told = 0
        topic, partition = p
        self.next_offset[p] = to
        self.buffers[p].clear()
        self.heads = None
        self._part(p, to)
        self.frontier.advance(topic, partition, to)
        for job in self.jobs.values():
            end = min(job.until.get(p, to), to)
            if end <= offset:
                continue                # its range of p ends before: nothing lost for it
            frontier = job.own_frontier or self.frontier
            if job.own_frontier is not None:
                job.own_frontier.advance(topic, partition, end)
            sse_id = frontier.token()
            job.notify(framing.gap(sse_id, [(reason, p, offset, end)]), sse_id)
            told += 1
        return told

    def _emit_run(self, max_bytes: int, owner_of, clock, deadline: float) -> None:
        """Emit the buffered records in time order (every partition with records to come has
        some) until EMIT_RUN of them, the slice's deadline (a record costs every job of the
        read: 200 clients resuming together make it long), a job's chunk is full (to be
        handed over, or waited for), or a partition with records to come ran dry (they are to
        be fetched first for the merge by time to go on). Each buffer's first record waits in
        a heap (`heads`, kept across runs and fetches): the next one is found in
        log(partitions) steps."""
        buffers, heads = self.buffers, self.heads
        if heads is None:
            heads = self.heads = [(time_order(b[0]), p) for p, b in buffers.items() if b]
            heapq.heapify(heads)
        for _ in range(EMIT_RUN):
            if not heads:
                return
            p = heads[0][1]
            buffer = buffers[p]
            r = buffer.popleft()
            if buffer:
                heapq.heapreplace(heads, (time_order(buffer[0]), p))
            else:
                heapq.heappop(heads)
            if self._emit(r, max_bytes, owner_of) or (
                    not buffer and self.next_offset[p] < self.until[p]) or clock() >= deadline:
                return

    def _emit(self, r, max_bytes: int, owner_of=None) -> bool:
        """Show record r to the jobs that want it; True when one's chunk is now full."""
        p, after = (r.topic, r.partition), r.offset + 1
        self.records += 1
        self._part(p, after)
        self.frontier.advance(r.topic, r.partition, after)
        try:
            parsed = parse_record(r, max_bytes, owner_of)
        except InvalidRecord:
            parsed = None
        shared: str | None = None
        frames: dict[tuple, bytes] = {}
        full = False
        for job in self.jobs.values():
            if r.offset >= job.until.get(p, 0):
                continue
            if job.own_frontier is not None:
                job.own_frontier.advance(r.topic, r.partition, after)
            if (parsed is None or not job.filter.matches(parsed.type, parsed.source)
                    or not visible(parsed, job.subject)):
                continue
            if job.own_frontier is not None:
                sse_id = job.own_frontier.token()
            else:
                sse_id = shared = shared or self.frontier.token()
            frame = frames.get((sse_id, job.named))
            if frame is None:
                frame = frames[(sse_id, job.named)] = parsed.frame(sse_id, job.named)
            job.add(frame, sse_id, r.topic)
            full = full or job.full
        return full

    def _part(self, p, to: int) -> None:
        """The read's ids are about to pass `to` in p: those of a job that ends before stop
        following them (they never say more than it was shown)."""
        for job in self.jobs.values():
            if job.own_frontier is None and to > job.until.get(p, 0):
                job.own_frontier = Frontier(self.frontier.topics, dict(self.frontier.offsets))

    def _complete(self) -> list[Job]:
        done = [job for job in self.jobs.values() if self.finished(job)]
        for job in done:
            del self.jobs[job.client_id]
        return done


class ReplayQueue:
    """Reads waiting to run, in one line per client address, served round-robin."""

    def __init__(self):
        self.by_address: OrderedDict[str, list[Read]] = OrderedDict()
        self.unstarted: dict = {}              # key -> the read of that key not yet started
        self.running = Counter()               # key -> started reads of that key
        self.read_of: dict[str, Read] = {}     # client id -> its read

    def __len__(self) -> int:
        return sum(len(line) for line in self.by_address.values())

    def add(self, job: Job, start: dict, offsets: dict, topics, now: float) -> Read:
        """Join the not yet started read from the same place, or make a new one."""
        key = (tuple(sorted(start.items())), tuple(sorted(offsets.items())))
        read = self.unstarted.get(key)
        if read is None:
            read = Read(key, start, Frontier(topics, offsets), job.address, now)
            self.unstarted[key] = read
            self.by_address.setdefault(job.address, []).append(read)
        read.add(job)
        self.read_of[job.client_id] = read
        return read

    def cancel(self, client_id: str) -> Job | None:
        read = self.read_of.pop(client_id, None)
        if read is None:
            return None
        job = read.jobs.pop(client_id, None)
        if not read.jobs:
            self.remove(read)
        return job

    def done(self, jobs) -> None:
        for job in jobs:
            self.read_of.pop(job.client_id, None)

    def remove(self, read: Read) -> list[Job]:
        """Take a read out of the queue; returns the jobs it still had."""
        if read.removed:
            return []
        read.removed = True
        line = self.by_address.get(read.address, [])
        if read in line:
            line.remove(read)
            if not line:
                del self.by_address[read.address]
        if self.unstarted.get(read.key) is read:
            del self.unstarted[read.key]
        if read.started and read.key is not None:
            self.running[read.key] -= 1
            if not self.running[read.key]:
                del self.running[read.key]
        jobs = list(read.jobs.values())
        for job in jobs:
            self.read_of.pop(job.client_id, None)
        read.jobs.clear()
        return jobs

    def next(self, now: float) -> Read | None:
        """The next read to run a slice of, or None if every read is waiting."""
        self._tidy(now)
        for address in list(self.by_address):
            for read in self.by_address[address]:
                if self._ready(read, now):
                    self.by_address.move_to_end(address)
                    self._start(read)
                    return read
        return None

    def _start(self, read: Read) -> None:
        if read.started:
            return
        read.started = True
        if self.unstarted.get(read.key) is read:
            del self.unstarted[read.key]
        if read.key is not None:
            self.running[read.key] += 1

    def _ready(self, read: Read, now: float) -> bool:
        if read.hand_over_full(now):
            return False
        if read.started or read.key is None or not self.running[read.key]:
            return True
        return now - read.created >= COALESCE_S   # one like it is running: gather company

    def _tidy(self, now: float) -> None:
        """Drop jobs whose client left; move jobs that do not keep up to reads of their own."""
        for read in [r for line in self.by_address.values() for r in line]:
            for job in [j for j in read.jobs.values() if j.gone]:
                self.cancel(job.client_id)
            if len(read.jobs) < 2:
                continue
            stuck = read.hand_over_full(now)
            if len(stuck) == len(read.jobs):
                continue
            for job in stuck:
                if job.full_since is not None and now - job.full_since >= DETACH_AFTER_S:
                    alone = read.detach(job, now)
                    self.by_address.setdefault(job.address, []).append(alone)
                    self.read_of[job.client_id] = alone
