"""Records from Kafka for the consumer actor: the live source it polls (KafkaSource), on its own
kafka-python consumer (opened by actors/kafka_client.py). A partition whose batch cannot be
read, or whose position Kafka no longer holds, is dealt with here, so the other partitions go
on. The replay actor's bounded reader is actors/kafka_reader.py; what both use,
actors/kafka_reads.py.

kafka-python is imported lazily (see actors/kafka_client.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from actors import resume
from actors.kafka_client import (
    RECONNECT_MAX_MS, REFUSED_RECONNECT_MAX_MS, open_consumer, reconnect_backoff,
)
from actors.kafka_reads import (
    Offsets, OffsetsUnanswered, Record, Unreached, as_records, failed_partitions, forget,
    offset_of, position_of, reason_of, topic_partitions,
)
from actors.messages import Skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stall:
    """A partition the source stopped reading: a batch it cannot decode, or no permission.
    It stays reported while a retry runs, until the retry has read or failed for a while."""
    offset: int
    reason: str
    since: float
    retrying_since: float | None = None


REFUSED_RETRY_S = 30.0           # a leader that refused our login is tried again this often


class KafkaSource(Offsets):
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
        self._consumer.assign(topic_partitions(partitions))
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
            records = as_records(self._consumer.poll(timeout_ms=timeout_ms))
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
            offset = offset_of(state)
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
        found = failed_partitions(self._consumer, exc)
        if not found:
            return False
        reason = reason_of(exc)
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
        return position_of(self._consumer, tp)

    def _park(self, tp) -> None:
        self._consumer.pause(tp)
        forget(self._consumer, tp)

    def _restart(self, tp, offset: int) -> None:
        self._park(tp)
        self._consumer.seek(tp, offset)
        self._consumer.resume(tp)


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


ADVICE = {"TopicAuthorizationFailedError": ": grant the gateway's Kafka user READ on the "
                                            "topic, or remove it from KAFKA_TOPICS"}


def _listed(topic: str, parts: list) -> str:
    """`t:0 from offset 7`, or `12 partition(s) of t (the first four, and 8 more)`."""
    if len(parts) == 1:
        return parts[0]
    more = f", and {len(parts) - 4} more" if len(parts) > 4 else ""
    return f"{len(parts)} partition(s) of {topic} ({', '.join(parts[:4])}{more})"

