"""Records from Kafka for the actors: the live source the consumer actor polls (KafkaSource)
and the bounded reader of the replay actor (KafkaReader), each on its own kafka-python
consumer (opened by actors/kafka_client.py). A partition whose batch cannot be read, or whose
position Kafka no longer holds, is dealt with here, so the other partitions go on.

kafka-python is imported lazily (see actors/kafka_client.py).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from actors import resume
from actors.kafka_client import (
    RECONNECT_MAX_MS, REFUSED_RECONNECT_MAX_MS, open_consumer, reconnect_backoff,
)
from actors.messages import Skip

logger = logging.getLogger(__name__)


class Record(NamedTuple):      # a NamedTuple, as actors/events.py says why
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    headers: tuple
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Stall:
    """A partition the source stopped reading: a batch it cannot decode, or no permission.
    It stays reported while a retry runs, until the retry has read or failed for a while."""
    offset: int
    reason: str
    since: float
    retrying_since: float | None = None


class Unreached(NamedTuple):
    """A leader of our partitions that lets the gateway in no more while other brokers do."""
    node: int
    address: str
    partitions: tuple
    refusal: str        # kafka-python's login refusal, or "" (down, or not answering)

    def leader(self, explain=str) -> str:
        """What /health and the logs say of it; `explain` words the refusal."""
        why = (f"refuses the gateway: {explain(self.refusal) or self.refusal}" if self.refusal
               else "does not answer")
        return f"its leader, broker {self.node} at {self.address}, {why}"


class OffsetsUnanswered(RuntimeError):
    """Kafka gave no offsets for these partitions in time: a leader we cannot reach, mostly."""

    def __init__(self, partitions):
        names = ", ".join(f"{t}:{p}" for t, p in sorted(partitions))
        super().__init__(f"no offsets from Kafka in {OFFSETS_TIMEOUT_MS // 1000} s for {names}")


UNREACHED_AFTER_FAILURES = 3     # failed connections to a leader in a row before it is reported
REFUSED_RETRY_S = 30.0           # a leader that refused our login is tried again this often


def _records(batches) -> list[Record]:
    """A poll's records as Records (kafka_records reads most of them as Records already)."""
    return [m if m.__class__ is Record else
            Record(m.topic, m.partition, m.offset, m.timestamp, m.value, tuple(m.headers or ()),
                   m.key)
            for messages in batches.values() for m in messages]


def _tps(partitions):
    from kafka import TopicPartition
    return [TopicPartition(t, p) for t, p in sorted(partitions)]


class _Offsets:
    """Offset look-ups shared by the live source and the replay reader."""

    _consumer: Any = None         # a kafka.KafkaConsumer (imported late: see the docstring)

    def bounds(self, partitions) -> tuple[dict, dict]:
        """(first, next) offset of each partition: what Kafka still retains."""
        tps = _tps(partitions)
        with _leaders_needed():
            begin = self._consumer.beginning_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
            end = self._consumer.end_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
        return ({(tp.topic, tp.partition): o for tp, o in begin.items()},
                {(tp.topic, tp.partition): o for tp, o in end.items()})

    def offsets_for_time(self, partitions, timestamp_ms: int) -> dict:
        """First offset at or after the time, per partition (None: nothing that late)."""
        with _leaders_needed():
            found = self._consumer.offsets_for_times(
                {tp: timestamp_ms for tp in _tps(partitions)}, timeout_ms=OFFSETS_TIMEOUT_MS)
        return {(tp.topic, tp.partition): (hit.offset if hit is not None else None)
                for tp, hit in found.items()}

    def _unreached(self, partitions) -> list[Unreached]:
        """The leaders of `partitions` that refused our login, or failed to connect
        UNREACHED_AFTER_FAILURES times in a row, with their partitions (see KafkaSource)."""
        from kafka import TopicPartition
        manager, cluster = self._consumer._manager, self._consumer._cluster
        led: dict = {}
        for p in sorted(partitions):
            led.setdefault(cluster.leader_for_partition(TopicPartition(*p)), []).append(p)
        out = []
        for node, partitions in led.items():
            conn = manager._conns.get(node)
            if node in (None, -1) or (conn is not None and conn.connected):
                continue
            refusal = getattr(manager, "_auth_failures", {}).get(node)
            if refusal is None and manager._backoff.get(node, (0,))[0] < UNREACHED_AFTER_FAILURES:
                continue
            broker = cluster.broker_metadata(node)
            address = f"{broker.host}:{broker.port}" if broker is not None else "address unknown"
            out.append(Unreached(node, address, tuple(partitions), "" if refusal is None
                                 else str(refusal)))
        return out

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=2000)
        except Exception as exc:  # noqa: BLE001
            logger.warning("closing a kafka consumer: %s", exc)


OFFSETS_TIMEOUT_MS = 5000


@contextlib.contextmanager
def _leaders_needed():
    """kafka-python 3.0's offset look-ups raise a bare KeyError for a partition without a
    leader: it is Kafka's state (a broker down), so it is raised as a Kafka error."""
    try:
        yield
    except KeyError as exc:
        from kafka.errors import LeaderNotAvailableError
        tp = exc.args[0] if exc.args else None
        if not hasattr(tp, "partition"):
            raise
        raise LeaderNotAvailableError(
            f"{tp.topic}:{tp.partition} has no leader (is its broker down?)") from None


class KafkaSource(_Offsets):
    """Manually assigned partitions of fixed topics; no consumer group, no commits.

    A partition whose next batch cannot be read (a codec we lack, corrupt data, a CRC error,
    no permission) is set aside at its offset and retried now and then, so the others go on.
    """

    def __init__(self, settings, clock=time.monotonic, patient: bool = False):
        self._consumer = open_consumer(settings, "live", patient=patient)
        self._topics = tuple(settings.kafka_topics)
        self._consumer._cluster.set_topics(self._topics)
        self._assigned: set = set()
        self._stalled: dict[tuple[str, int], Stall] = {}
        self._reported: dict = {}
        self._skips: list[Skip] = []
        self._refused_retry: dict = {}      # node -> when its kept login refusal is dropped
        self._anew: set = set()             # parked until assigned anew: topic created again
        self._clock = clock

    def partitions(self) -> set[tuple[str, int]]:
        """Partitions of our topics known from the latest metadata (refreshed in the background)."""
        cluster = self._consumer._cluster
        return {(topic, partition) for topic in self._topics
                for partition in cluster.partitions_for_topic(topic) or ()}

    def topic_ids(self) -> dict:
        """Our topics' Kafka ids (uuid.UUID; None where unknown), from the latest metadata."""
        cluster = self._consumer._cluster
        return {topic: cluster.topic_id(topic) for topic in self._topics}

    def leaderless(self, partitions) -> set[tuple[str, int]]:
        """Those of `partitions` without a leader in the latest metadata (kafka-python's offset
        look-ups fail on them)."""
        from kafka import TopicPartition
        cluster = self._consumer._cluster
        return {p for p in partitions
                if cluster.leader_for_partition(TopicPartition(*p)) in (None, -1)}

    def unauthorized_topics(self) -> set[str]:
        """Our topics the broker's metadata says we may not describe."""
        return set(self._consumer._cluster.unauthorized_topics) & set(self._topics)

    def refresh(self) -> None:
        self._consumer._cluster.request_update()

    def bounds(self, partitions) -> tuple[dict, dict]:
        from kafka.errors import KafkaTimeoutError
        try:
            return super().bounds(partitions)
        except KafkaTimeoutError:
            raise OffsetsUnanswered(partitions) from None

    def offsets_for_time(self, partitions, timestamp_ms: int) -> dict:
        from kafka.errors import KafkaTimeoutError
        try:
            return super().offsets_for_time(partitions, timestamp_ms)
        except KafkaTimeoutError:
            raise OffsetsUnanswered(partitions) from None

    def unreached(self) -> list[Unreached]:
        """Leaders of our partitions that refused our login, or failed to connect
        UNREACHED_AFTER_FAILURES times in a row (one broker's listener, certificate or
        credentials wrong, or it is down): their partitions are not read meanwhile."""
        return self._unreached(self.partitions())

    def _retry_refused(self) -> None:
        """kafka-python keeps a broker's login refusal and raises it at every later connect
        without trying again: forgotten every REFUSED_RETRY_S, so a broker whose credentials
        were mended is read again (once the whole cluster refuses, the consumer starts over)."""
        refused = getattr(self._consumer._manager, "_auth_failures", {})
        now = self._clock()
        for node in list(self._refused_retry):
            if node not in refused:
                del self._refused_retry[node]
        for node in list(refused):
            if now >= self._refused_retry.setdefault(node, now + REFUSED_RETRY_S):
                refused.pop(node, None)
                self._refused_retry[node] = now + REFUSED_RETRY_S

    def assign(self, partitions: set, seeks: dict) -> None:
        """Read `partitions`; the newly added ones from the offsets in `seeks`."""
        from kafka import TopicPartition
        self._assigned = set(partitions)
        self._anew &= self._assigned
        self._consumer.assign(_tps(partitions))
        # assign() narrows the metadata to assigned topics; keep watching all of ours.
        self._consumer._cluster.set_topics(self._topics)
        for (topic, partition), offset in seeks.items():
            tp = TopicPartition(topic, partition)
            self._consumer.seek(tp, offset)
            if (topic, partition) in self._anew:        # parked by _moved: read anew now
                self._anew.discard((topic, partition))
                self._consumer.resume(tp)

    def poll(self, timeout_ms: int) -> list[Record]:
        self._retry_stalled()
        self._retry_refused()
        parked = [s for s in self._stalled.values() if s.retrying_since is None]
        if not self._assigned or len(parked) == len(self._assigned):
            time.sleep(timeout_ms / 1000)
            return []
        try:
            records = _records(self._consumer.poll(timeout_ms=timeout_ms))
        except Exception as exc:  # noqa: BLE001 - sorted out below: one partition, or re-raised
            if not self._moved(exc) and not self._stall(exc):
                raise
            return []
        for r in records:
            if self._stalled.pop((r.topic, r.partition), None) is not None:
                self._reported.pop((r.topic, r.partition), None)
        return records

    def positions(self) -> dict:
        """Next offset of every partition being read, as known without a network call. It
        steps over transaction markers and aborted batches, which are never records."""
        out = {}
        assignment = self._consumer._subscription.assignment
        for tp, state in list(assignment.items()):
            stall = self._stalled.get((tp.topic, tp.partition))
            offset = _offset(state)
            if (stall is None or stall.retrying_since) and offset is not None:
                out[(tp.topic, tp.partition)] = offset
        return out

    def stalled(self) -> dict[tuple[str, int], Stall]:
        return dict(self._stalled)

    def skipped(self) -> list[Skip]:
        """The positions given up since the last call (each logged once): see _moved."""
        skips, self._skips = self._skips, []
        return skips

    # -- positions Kafka no longer has ------------------------------------------------------
    def _moved(self, exc: Exception) -> bool:
        """Kafka refused a position (out of range, or a log truncated under it): go on from the
        oldest record it keeps, or from where the log was cut when that is before the position
        (an unclean leader election: its end, or where the new leader's log parts from what
        was read, which it may since have outgrown with records of its own). False if `exc` is
        about something else."""
        from kafka import TopicPartition
        from kafka.errors import LogTruncationError, OffsetOutOfRangeError
        cut: dict = {}
        if isinstance(exc, OffsetOutOfRangeError):
            asked = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        elif isinstance(exc, LogTruncationError):
            asked = {tp: self._position(tp) for tp in exc.divergent_offsets}
            cut = {(tp.topic, tp.partition): at.offset
                   for tp, at in exc.divergent_offsets.items() if at is not None}
        else:
            return False
        offsets = {(tp.topic, tp.partition): offset for tp, offset in asked.items()
                   if (tp.topic, tp.partition) in self._assigned}
        for p in self._created_again(set(offsets)):
            # The metadata lists the topic's new incarnation before the consumer read it anew
            # (which seeks it): not a log cut short, and nothing to read until then.
            self._park(TopicPartition(*p))
            self._anew.add(p)
            del offsets[p]
        if not offsets:
            return True
        try:
            begin, end = self.bounds(set(offsets))
        except OffsetsUnanswered:
            if not cut:
                raise           # Kafka refuses the position again at the next fetch
            # kafka-python tells a divergence once: back to it now (if Kafka no longer keeps
            # it, the next fetch is refused, and reads on from the oldest record kept)
            begin, end = {}, {}
        for p, offset in sorted(offsets.items()):
            first = begin.get(p, 0)
            skip = skip_of(p, offset, first, max(first, min(end.get(p, offset),
                                                            cut.get(p, offset))))
            self._consumer.seek(TopicPartition(*p), skip.resumed if skip else offset)
            if skip is not None:
                self._skips.append(skip)
                _log_skip(skip)
            elif isinstance(exc, LogTruncationError):
                _log_unknown_cut(p, offset)
        return True

    def _created_again(self, partitions: set) -> set:
        """Those of `partitions` whose topic the latest metadata lists under another Kafka
        topic id than the one ids carry: deleted and created again."""
        cluster = self._consumer._cluster
        return {p for p in partitions
                if resume.INCARNATIONS.replaces(p[0], cluster.topic_id(p[0]))}

    def highwaters(self) -> dict:
        """Each assigned partition's end offset as of the latest fetch (missing: no fetch yet)."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[(tp.topic, tp.partition)] = high
        return out

    def connected(self) -> bool:
        manager = self._consumer._manager
        return any(conn.connected for conn in list(manager._conns.values()))

    def back_off(self, refused: bool) -> None:
        """While the brokers refuse us, reconnect ever more slowly, up to once a minute."""
        reconnect_backoff(self._consumer, REFUSED_RECONNECT_MAX_MS if refused
                           else RECONNECT_MAX_MS)

    # -- partitions set aside ---------------------------------------------------------------
    def _stall(self, exc: Exception) -> bool:
        """Set aside the partition(s) `exc` is about; False if it names none."""
        found = _failed_partitions(self._consumer, exc)
        if not found:
            return False
        reason = _reason(exc)
        newly: dict[str, list] = {}         # topic -> its partitions to say, with offsets
        for tp in sorted(found):
            key = (tp.topic, tp.partition)
            if key not in self._assigned:
                continue
            offset = self._position(tp)
            self._stalled[key] = stall = Stall(offset, reason, self._clock())
            self._park(tp)
            if self._reported.get(key) == (offset, reason):
                continue                 # the same failure again after a retry: said already
            self._reported[key] = (offset, reason)
            newly.setdefault(tp.topic, []).append(f"{tp.topic}:{tp.partition} from offset "
                                                  f"{offset}")
        for topic, parts in newly.items():      # one line a topic (an ACL refuses them all)
            logger.error("not reading %s: %s%s; the other partitions go on (retried in %.0f s)",
                         _listed(topic, parts), reason, ADVICE.get(type(exc).__name__, ""),
                         _retry_after(stall))    # the same reason for all of them
        return True

    def _retry_stalled(self) -> None:
        from kafka import TopicPartition
        now = self._clock()
        for key, stall in list(self._stalled.items()):
            if stall.retrying_since is not None:
                if now - stall.retrying_since >= RECOVERED_AFTER_S:   # no error since: fine
                    del self._stalled[key]
                    self._reported.pop(key, None)
            elif now - stall.since >= _retry_after(stall):
                self._stalled[key] = replace(stall, retrying_since=now)
                self._restart(TopicPartition(*key), stall.offset)
                logger.debug("retrying %s:%d at offset %d", key[0], key[1], stall.offset)

    def go_on(self, seeks: dict) -> None:
        """Read these partitions from these offsets on, whatever stopped them before."""
        from kafka import TopicPartition
        for key, offset in seeks.items():
            stall = self._stalled.pop(key, None)
            self._reported.pop(key, None)
            if stall is not None:
                logger.info("reading %s:%d from offset %d on: no longer set aside at %d",
                            key[0], key[1], offset, stall.offset)
            self._restart(TopicPartition(*key), offset)

    def _position(self, tp) -> int:
        return _position_of(self._consumer, tp)

    def _park(self, tp) -> None:
        self._consumer.pause(tp)
        _forget(self._consumer, tp)

    def _restart(self, tp, offset: int) -> None:
        self._park(tp)
        self._consumer.seek(tp, offset)
        self._consumer.resume(tp)


def _position_of(consumer, tp) -> int:
    """Where the consumer stands in `tp`, without a network call (0: not known)."""
    offset = _offset(consumer._subscription.assignment.get(tp))
    return 0 if offset is None else offset


def _offset(state) -> int | None:
    """The position in a partition's subscription state, as kafka-python keeps it (no network
    call; its position() checks every assigned partition at each call)."""
    return state.position.offset if state is not None and state.position is not None else None


def _forget(consumer, tp) -> None:
    """Drop what the fetcher holds of `tp`: after a batch it could not unpack, kafka-python
    would retry the same broken records forever inside poll(), holding the gevent hub."""
    fetcher = consumer._fetcher
    current = fetcher._next_partition_records
    if current is not None and current.topic_partition == tp:
        fetcher._next_partition_records = None
    meta = fetcher._next_in_line_exception_metadata
    if meta is not None and meta.partition == tp:
        fetcher._next_in_line_exception_metadata = None
    fetcher._paused_partition_records.pop(tp, None)
    fetcher._paused_completed_fetches.pop(tp, None)
    fetcher._completed_fetches = type(fetcher._completed_fetches)(
        c for c in fetcher._completed_fetches if c.topic_partition != tp)


class Unreadable(RuntimeError):
    """Batches of these partitions cannot be read from these offsets (why: `reason`)."""

    def __init__(self, offsets: dict, reason: str):
        super().__init__(f"cannot read {sorted(offsets)}: {reason}")
        self.offsets, self.reason = offsets, reason


class Retained(RuntimeError):
    """Kafka no longer holds these positions (retention deleted them): for each partition,
    (the offset asked for, the first one it still holds)."""

    def __init__(self, offsets: dict):
        super().__init__(f"deleted by retention: {sorted(offsets.items())}")
        self.offsets = offsets


def skip_of(p, offset: int, first: int, end: int) -> Skip | None:
    """Where a refused position goes on: the oldest record kept, or where a log cut before it
    ends (`end`); None if Kafka holds it after all (read it again)."""
    if offset < first:
        return Skip("retention", p, offset, first)
    if offset > end:
        return Skip("truncated", p, offset, end)
    return None


def _log_skip(skip: Skip) -> None:
    (topic, partition), wanted, resumed = skip.partition, skip.requested, skip.resumed
    if skip.reason == "retention":
        logger.warning("%s:%d offsets %d to %d were deleted by retention before this gateway read "
                       "them: its clients get a gap event and miss %d record(s); raise the "
                       "topic's retention.ms or fix what kept the gateway from Kafka",
                       topic, partition, wanted, resumed, resumed - wanted)
    else:
        logger.warning("%s:%d was truncated at offset %d, before this gateway's position %d "
                       "(e.g. by an unclean leader election): reading on from there; clients get "
                       "a gap event; check the brokers' unclean.leader.election",
                       topic, partition, resumed, wanted)


def _log_unknown_cut(p, offset: int) -> None:
    logger.warning("Kafka says %s:%d was truncated under this gateway's position %d (e.g. by an "
                   "unclean leader election) without saying where: reading on from there; "
                   "records its new leader wrote before it are not streamed; check the "
                   "brokers' unclean.leader.election", p[0], p[1], offset)


STALL_RETRY_S = 60.0        # a batch that could not be decoded: it will not change soon
DENIED_RETRY_S = 10.0       # no permission: an operator may be fixing the ACL right now
RECOVERED_AFTER_S = 3.0     # a retried partition without a new error by then reads again


def _retry_after(stall: Stall) -> float:
    return DENIED_RETRY_S if "not authorized" in stall.reason else STALL_RETRY_S


def _failed_partitions(consumer, exc) -> list:
    """The partitions a poll() error is about, from the error or the fetcher's state."""
    from kafka import TopicPartition
    fetcher = consumer._fetcher
    current = fetcher._next_partition_records
    if current:                      # records whose unpacking failed (a drained one is falsy)
        return [current.topic_partition]
    meta = fetcher._next_in_line_exception_metadata
    if meta is not None and meta.partition is not None:
        return [meta.partition]
    detail = exc.args[0] if exc.args else None
    if isinstance(detail, dict):
        return [tp for tp in detail if isinstance(tp, TopicPartition)]
    if isinstance(detail, (set, frozenset, list, tuple)):
        topics = {t for t in detail if isinstance(t, str)}
        return [tp for tp in consumer.assignment() if tp.topic in topics]
    return []


ADVICE = {"TopicAuthorizationFailedError": ": grant the gateway's Kafka user READ on the "
                                            "topic, or remove it from KAFKA_TOPICS"}


def _listed(topic: str, parts: list) -> str:
    """`t:0 from offset 7`, or `12 partition(s) of t (the first four, and 8 more)`."""
    if len(parts) == 1:
        return parts[0]
    more = f", and {len(parts) - 4} more" if len(parts) > 4 else ""
    return f"{len(parts)} partition(s) of {topic} ({', '.join(parts[:4])}{more})"


def _reason(exc: Exception) -> str:
    from kafka import errors
    if isinstance(exc, errors.TopicAuthorizationFailedError):
        return "not authorized to read this topic"
    if isinstance(exc, errors.UnsupportedCodecError):
        return f"batch compressed with a codec this gateway lacks ({exc})"
    if isinstance(exc, errors.CorruptRecordError):
        return f"corrupt batch: {exc}"
    return f"cannot read the next batch: {type(exc).__name__}: {str(exc)[:160]}"


class KafkaReader(_Offsets):
    """Reads bounded ranges of offsets, for replays; its own consumer, apart from the live one."""

    def __init__(self, settings):
        self._consumer = open_consumer(settings, "replay")
        # Its metadata watches all our topics: assign() then never narrows it (kafka-python
        # replaces the watched topics only when given one it lacks). Narrowed to the topics
        # read last, a refresh dropped the others, and an offsets look-up over both kinds
        # failed (kafka-python 3.0 leaves an unknown partition out of its answer: KeyError).
        self._consumer._cluster.set_topics(settings.kafka_topics)
        self._at: dict = {}        # where the consumer stands in each partition it reads

    def unreadable(self, partitions) -> dict:
        """Those of `partitions` this reader cannot ask Kafka about, and why: no leader in
        its latest metadata (the broker down, a replication factor of 1), or a leader that
        does not let it in (see KafkaSource.unreached)."""
        from kafka import TopicPartition
        cluster = self._consumer._cluster
        out = {p: "no leader (is its broker down?)" for p in partitions
               if cluster.leader_for_partition(TopicPartition(*p)) == -1}
        for u in self._unreached(set(partitions) - set(out)):
            out.update({p: u.leader() for p in u.partitions})
        return out

    def fetch(self, ranges: dict, timeout_ms: int = 50) -> tuple[list[Record], dict]:
        """One poll's records in [start, until) of each partition, and each partition's next
        offset after it (it steps over transaction markers). The consumer keeps its place
        between calls, so going on from where the last call stopped costs no seek."""
        from kafka import TopicPartition
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        if not wanted:
            return [], {p: r[0] for p, r in ranges.items()}
        tps = {p: TopicPartition(*p) for p in wanted}
        self._consumer.assign(list(tps.values()))    # keeps the place of partitions it still reads
        self._at = {p: o for p, o in self._at.items() if p in wanted}
        for p, (start, _until) in wanted.items():
            if self._at.get(p) != start:
                self._consumer.seek(tps[p], start)
                self._at[p] = start
        from kafka.errors import OffsetOutOfRangeError
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except OffsetOutOfRangeError as exc:
            raise self._retained(exc.args[0] if exc.args else {}) from None
        except Exception as exc:  # noqa: BLE001 - one partition's batch, or re-raised
            failed = _failed_partitions(self._consumer, exc)
            if not failed:
                raise
            offsets = {}
            for tp in failed:
                _forget(self._consumer, tp)
                offsets[(tp.topic, tp.partition)] = _position_of(self._consumer, tp)
            raise Unreadable(offsets, _reason(exc)) from None
        out = []
        for record in _records(batches):
            start, until = wanted.get((record.topic, record.partition), (0, 0))
            if start <= record.offset < until:
                out.append(record)
        assignment = self._consumer._subscription.assignment     # see _offset
        for p, tp in tps.items():
            offset = _offset(assignment.get(tp))
            if offset is not None:
                self._at[p] = offset
        return out, dict(self._at)

    def _retained(self, asked: dict) -> Exception:
        """Retained for the positions Kafka refused as out of range (each is sought again on
        the next fetch); an offset past the end is not retention: re-raised as it came."""
        offsets = {(tp.topic, tp.partition): offset for tp, offset in asked.items()}
        begin, end = self.bounds(set(offsets))
        for p in offsets:
            self._at.pop(p, None)
        if not offsets or any(offsets[p] >= end.get(p, 0) for p in offsets):
            from kafka.errors import OffsetOutOfRangeError
            return OffsetOutOfRangeError(asked)
        return Retained({p: (offsets[p], begin.get(p, offsets[p])) for p in offsets})
