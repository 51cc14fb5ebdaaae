"""KafkaConsumerActor: reads every partition of the configured topics and feeds the broker.

It polls by telling itself `Poll`, so a stop request interleaves with polling. It never
dies of a Kafka fault: an unreachable broker means backoff and a state the health shows;
when Kafka returns, reading resumes from the exact next offsets. It dies of records it read
but could not deliver (a bug: `Unpublished`), so that the worker is replaced and its streams
resume on the next one, rather than go on without them.

Every event gets the stream frontier after it as its id (actors/resume.py). At start-up the
last SSE_HISTORY_SIZE events are read back ("warm start") so the history is full at once.
"""
from __future__ import annotations

import logging
import random
import threading
import time

import pykka

from actors import kafka_config, kafka_diagnosis
from actors.events import events_from_records
from actors.kafka_client import KafkaRefused, KafkaUnreachable
from actors.kafka_reads import OffsetsUnanswered, named
from actors.kafka_source import KafkaSource
from actors.logs import LogBudget, more_since
from actors.messages import Consumed, KafkaLag, KafkaStateChanged, Poll
from actors.resume import INCARNATIONS, Frontier
from actors.warm_start import WarmStart

logger = logging.getLogger(__name__)

# A poll returns as soon as records arrive: its time-out only sets how often an idle consumer
# turns (state, lag, assignment). Nobody asks this actor (the broker holds every figure), so a
# longer wait delays only its stop, and an idle worker turns less often (bench/idle.py).
POLL_TIMEOUT_MS = 200
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0         # no broker listens: probing costs nothing, and Kafka may be starting
REFUSED_BACKOFF_S = 60.0    # a broker refused the bootstrap: each attempt costs it a handshake
JITTER = 0.2                # each wait is drawn within ±20 %: workers do not retry in step
INVALID_LOG_INTERVAL_S = 10.0
LAG_INTERVAL_S = 5.0
WALK_EVERY_S = 0.25     # every partition's leader and its broker, looked at (not every poll)
MISSING_AFTER_S = 5.0     # a topic of ours absent from Kafka's metadata this long: said so
NOTE_KEPT_S = 3600.0      # how long /health says a topic was re-created
TURN_S = POLL_TIMEOUT_MS / 1000     # a turn while waiting for a bootstrap, or for its time
MAX_TIMESTAMP_MS = 2 ** 63 - 1      # Kafka's largest: an empty history holds nothing


def in_background(run) -> None:
    """Runs `run` apart from the actor (a greenlet under gevent), so that a bootstrap, which
    may take kafka-python's whole time-out, holds up neither a stop nor anything else."""
    threading.Thread(target=run, name="kafka-bootstrap", daemon=True).start()


class Unpublished(RuntimeError):
    """Records a poll returned could not be made events and told the broker (a bug, a
    MemoryError). Kafka's position is already past them: a retry would go on after them, lost
    to every stream, their ids too. The actor dies of it instead; the watchdog then retires
    the worker, and its streams resume from their last ids on the replacement."""


class KafkaConsumerActor(pykka.ThreadingActor):
    def __init__(self, *, settings, broker, source_factory=KafkaSource,
                 clock=time.monotonic, sleep=time.sleep, rng=random.random,
                 spawn=in_background, wall=time.time):
        super().__init__()
        self.settings = settings
        self.broker = broker
        self.source_factory = source_factory
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.spawn = spawn
        self.wall = wall
        self.opening: list | None = None  # a bootstrap running apart: [] until it ends
        self.stopped = False
        self.source = None
        self.state = None
        self.detail = ""
        self.in_metadata: set = set()    # partitions the latest metadata knows
        self.reset_topics: set = set()   # re-created topics the broker has not heard of yet
        self.recreated: dict = {}        # re-created topic -> its new id, until assigned anew
        self.topic_notes: dict = {}      # topic -> (what /health says of it, since when)
        self.assigned: set = set()
        self.absent_since: dict = {}     # topic of ours Kafka never listed -> since when
        self.leaderless: set = set()     # partitions not assigned yet: no leader to ask
        self.led_out: set = set()        # assigned partitions whose leader went away
        self.unreached: tuple = ()       # leaders that refuse us or do not answer (kafka_reads)
        self.out_of_reach: set = set()   # their partitions
        self.unread: set = set()         # assigned partitions not read now (the broker is told)
        self.unreached_new: set = set()  # partitions not assigned yet whose leader is one of them
        self.from_end: set = set()       # of those, the ones there at start: read from the end
        self.hidden: set = set()         # topics Kafka would not describe to us, not read yet
        self.since_start: set = set()    # their partitions: read from the gateway's start on
        self.started_ms: int | None = None   # when the gateway first connected (epoch ms)
        self.missing: tuple = ()         # those absent past MISSING_AFTER_S: logged, in /health
        self.gone: set = set()           # assigned topics the metadata no longer lists (deleted)
        self.held_back: set = set()      # partitions not read for want of a leader that answers
        self.frontier = Frontier(settings.kafka_topics)
        self.warm_start: WarmStart | None = None
        self.unannounced_starts: dict = {}   # where live reading starts, not yet told the broker
        self.backoff = FIRST_BACKOFF_S   # the next wait after a failed bootstrap, before jitter
        self.refused = False             # the brokers refused us since the last connection
        self.unreadable = ""             # a TLS file that could not be read while Kafka was lost
        self.retry_at = 0.0              # no bootstrap before then
        self.next_refresh = 0.0
        self.next_lag_report = 0.0
        self.next_walk = 0.0
        self.poll_failed_log = LogBudget(1, 60.0, unlogged=lambda count: logger.warning(
            "%d more failed Kafka poll(s) in the last minutes, not logged", count))
        self.poll_failures, self.poll_fault = 0, ""     # since the last poll that worked
        self.invalid_log = LogBudget(1, INVALID_LOG_INTERVAL_S, unlogged=lambda count: (
            logger.warning("%d more invalid record(s) skipped in the last minutes, not logged "
                           "(/stats counts them all)", count)))

    def on_start(self):
        logger.info("kafka: %s to %s as %s; codecs: %s", self.settings.kafka_security_protocol,
                    ",".join(self.settings.kafka_brokers), self.settings.kafka_client_id,
                    ", ".join(kafka_config.available_codecs()))
        self._set_state("connecting", f"bootstrap {','.join(self.settings.kafka_brokers)}")
        self.actor_ref.tell(Poll())

    def on_receive(self, message):
        match message:
            case Poll():
                try:
                    self.step()
                except Unpublished:
                    raise       # retried, the batch would be lost: the worker is replaced
                except Exception as exc:  # noqa: BLE001 - a Kafka fault must not kill the actor
                    self._poll_failed(exc)
                    self.sleep(1.0)
                else:
                    if self.poll_failures:
                        logger.warning("kafka polls work again, after %d failed",
                                       self.poll_failures)
                        self.poll_failures, self.poll_fault = 0, ""
                self.actor_ref.tell(Poll())
            case _:
                return super().on_receive(message)

    def _poll_failed(self, exc: Exception) -> None:
        """A traceback for each new fault; one that lasts, a traceback a minute."""
        fault, self.poll_failures = f"{type(exc).__name__}: {exc}", self.poll_failures + 1
        dropped = self.poll_failed_log.take(self.clock(), always=fault != self.poll_fault)
        if dropped is not None:
            logger.exception("kafka poll failed, retrying every second: %s%s", exc,
                             more_since(dropped))
        self.poll_fault = fault

    def step(self) -> None:
        """One turn: connect if needed, pick up new partitions, poll, publish."""
        if self.source is None and not self._connect():
            return
        now = self.clock()
        if now >= self.next_refresh:
            interval = self.settings.kafka_metadata_refresh_ms / 1000 if self.assigned else 0.5
            self.next_refresh = now + interval
            self._refresh_assignment()
        records = self.source.poll(POLL_TIMEOUT_MS)
        try:
            self._deliver(records)
        except Exception as exc:
            if not records:
                raise
            raise Unpublished(f"{len(records)} record(s) read from Kafka were not delivered "
                              f"({type(exc).__name__}: {exc}); this worker stops, and its "
                              "streams resume from their last ids on its replacement") from exc
        if now >= self.next_lag_report:
            self.next_lag_report = now + LAG_INTERVAL_S
            offsets, ends = self.frontier.offsets, self.source.highwaters()
            self.broker.tell(KafkaLag({p: max(0, high - offsets.get(p, high))
                                       for p, high in ends.items()}, ends))
        self._report_state()

    def _deliver(self, records) -> None:
        """What a poll returned, to the broker (held while the warm start reads)."""
        skips = tuple(self.source.skipped())
        positions = self.source.positions()
        if self.warm_start is not None:
            skips = ()          # the history covers only what the warm start read anyway
            records = self._warming(records, positions)
        stepped = self.warm_start is None and self._stepped(positions)
        if records or self.unannounced_starts or stepped or self.reset_topics or skips:
            self._publish(records, positions if self.warm_start is None else None, skips)

    def _report_state(self, force: bool = False) -> None:
        now = self.clock()
        walk = force or now >= self.next_walk
        if walk:        # O(partitions) in Python: at every poll, a tenth of a worker reading 1,000
            self.next_walk = now + WALK_EVERY_S
            self._led_out()
        stalled = self.source.stalled()
        hidden = self.source.unauthorized_topics()
        denied = sorted(hidden
                        | {t for (t, _p), s in stalled.items() if "not authorized" in s.reason})
        gone = sorted({t for t, _p in self.assigned - self.in_metadata} - hidden)
        detail = self._problems(stalled, gone)
        if not self.source.connected():
            reason = kafka_diagnosis.latest(self.settings)
            if reason and kafka_diagnosis.refusal(reason) and not self.refused:
                self.refused = True
                self.source.back_off(True)
            self._report_lost(reason)
            return
        kafka_diagnosis.forget()    # a refusal seen while connected is no later outage's cause
        self.unreadable = ""
        self._say_deleted(set(gone))
        if walk:
            unreached = self.source.unreached()
            self.out_of_reach = {p for u in unreached for p in u.partitions}
            self._unreached_notes(unreached)
        detail = ", ".join([*self.unreached, *([detail] if detail else [])])
        self.unread = set(stalled) | self.leaderless | self.led_out | self.out_of_reach
        self._say_read_again()
        if self.refused:
            self.refused = False
            self.source.back_off(False)
        if denied:
            self._set_state("unauthorized", "not authorized to read topic " + ", ".join(denied)
                            + (f" ({detail})" if detail else ""), force)
        else:
            self._set_state("connected", detail, force)

    def _problems(self, stalled: dict, gone: list[str]) -> str:
        """What is wrong with our partitions and topics, in one line for /health."""
        return ", ".join([f"{t}:{p} stopped at offset {s.offset}: {s.reason}"
                          for (t, p), s in sorted(stalled.items())]
                         + [f"topic {t} no longer exists" for t in gone]
                         + [f"topic {t} does not exist: create it or correct KAFKA_TOPICS"
                            for t in self.missing]
                         + self._leaderless_note()
                         + self._notes(gone))

    def _leaderless_note(self) -> list[str]:
        """/health's one note of the partitions without a leader, if any (as last looked at)."""
        without = self.leaderless | self.led_out
        if not without:
            return []
        said = ("has no leader (its broker is down?)" if len(without) == 1
                else "have no leader (their brokers are down?)")
        return [f"{named(without)} {said}: read once Kafka elects one"]

    def _notes(self, gone) -> list[str]:
        """What /health says of topics re-created, for NOTE_KEPT_S (to the minute: the workers
        of an instance notice it a moment apart, and /health shows one note for both)."""
        now = self.clock()
        for topic in [t for t, (_n, at) in self.topic_notes.items() if now - at >= NOTE_KEPT_S]:
            del self.topic_notes[topic]
        return [note for t, (note, _at) in sorted(self.topic_notes.items()) if t not in gone]

    def _report_lost(self, reason: str | None) -> None:
        """While Kafka is out of reach: why, if known. A TLS file that cannot be read comes
        first (kafka-python only fails each connection attempt on it, quietly); the broker
        logs each new reason once."""
        unreadable = kafka_config.unreadable_tls_file(self.settings)
        changed, self.unreadable = unreadable != self.unreadable, unreadable
        if self.state != "connecting" and (self.state != "unreachable" or reason or changed):
            lost = ("lost the connection to Kafka "
                    f"(KAFKA_BROKERS={','.join(self.settings.kafka_brokers)})")
            self._set_state("unreachable", f"{unreadable or reason or lost}; reconnecting")

    def _say_deleted(self, gone: set) -> None:
        """One warning for each topic deleted from Kafka while it was read (its partitions
        then have no leader either: that is not a broker down)."""
        gone -= {t for t, _p in self.in_metadata}       # listed still, if only in part
        for topic in sorted(gone - self.gone):
            logger.warning("topic %s of KAFKA_TOPICS was deleted from Kafka: its events are no "
                           "longer streamed, the other topics' are; if it is created again it "
                           "is read from its new beginning (clients resuming get a gap event)",
                           topic)
        self.gone = gone

    def _say_read_again(self) -> None:
        """After the warnings about partitions without a leader, or with one that does not
        answer: one line when they are read again."""
        held = self.led_out | self.leaderless | self.unreached_new | self.out_of_reach
        back = (self.held_back - held) & self.in_metadata      # not those of a deleted topic
        if back:
            logger.info("reading %s again: %s leader answers", named(back),
                        "its" if len(back) == 1 else "their")
        self.held_back = held

    def _led_out(self) -> set:
        """Assigned partitions whose leader went away (its broker down, a replication factor
        of 1): said once; each reads on from where it stopped once Kafka elects one. Not those
        of a deleted topic (`_say_deleted`)."""
        led_out = self.source.leaderless(self.assigned)
        if led_out:     # the latest metadata, not the last refresh's: a deletion shows at once
            led_out &= self.source.partitions()
        if led_out - self.led_out and led_out != self.assigned:   # all: Kafka is gone, said so
            logger.warning("partitions without a leader (is their broker down?): %s; each reads "
                           "on from where it stopped once Kafka elects one, the others stream "
                           "meanwhile", named(led_out))
        self.led_out = led_out
        return led_out

    def _unreached_notes(self, unreached) -> None:
        """What /health says of leaders that no longer let us in, kept in `unreached` (logged
        once when they change)."""
        notes = []
        for u in unreached:
            partitions = named(u.partitions)
            said = u.leader(lambda text: kafka_diagnosis.explain(text, self.settings))
            notes.append(f"{partitions} not read: {said}"
                         + ("" if u.refusal else " (down, or a firewall or TLS in the way?)"))
        if notes and notes != list(self.unreached):
            logger.warning("%s; the other partitions stream meanwhile", "; ".join(notes))
        self.unreached = tuple(notes)

    def _stepped(self, positions) -> bool:
        """True if a partition's position passed its frontier without a record (a transaction
        marker or an aborted batch): the frontier follows, so ids and lag stay exact."""
        offsets = self.frontier.offsets
        return any(offset > offsets.get(key, offset) for key, offset in positions.items())

    def _connect(self) -> bool:
        """Bootstraps apart from the actor; waits in short turns (for the bootstrap, or for
        its time after a failure), so a stop is never held up by either."""
        if self.opening is None and self.clock() >= self.retry_at:
            self.opening = []
            self.spawn(lambda box=self.opening, patient=self.refused: self._open(box, patient))
        if not self.opening:
            self.sleep(min(max(self.retry_at - self.clock(), 0.0) or TURN_S, TURN_S))
            return False
        (self.source, exc), self.opening = self.opening[0], None
        if exc is not None:
            reason = (kafka_diagnosis.latest(self.settings)
                      or kafka_diagnosis.explain_exception(str(exc), self.settings))
            self._set_state("unreachable", reason or str(exc))
            self.retry_at = self.clock() + self._backoff_after(exc)
            return False
        self.backoff, self.refused = FIRST_BACKOFF_S, False
        self.next_refresh = 0.0
        if self.started_ms is None:
            self.started_ms = int(self.wall() * 1000)
        return True

    def _open(self, box: list, patient: bool) -> None:
        try:
            source = self.source_factory(self.settings, **({"patient": True} if patient else {}))
        except Exception as exc:  # noqa: BLE001 - any bootstrap failure means: try again later
            box.append((None, exc))
            return
        if self.stopped:            # the actor stopped while Kafka let us in
            source.close()
        else:
            box.append((source, None))

    def _backoff_after(self, exc: Exception) -> float:
        """Seconds to the next bootstrap: doubling, with jitter, up to MAX_BACKOFF_S while no
        broker listens, up to REFUSED_BACKOFF_S once one refused us (until one succeeds)."""
        self.refused = self.refused or isinstance(exc, KafkaRefused) \
            or not isinstance(exc, KafkaUnreachable)
        delay = self.backoff * (1 - JITTER + 2 * JITTER * self.rng())
        self.backoff = min(self.backoff * 2, REFUSED_BACKOFF_S if self.refused else MAX_BACKOFF_S)
        return delay

    def _refresh_assignment(self) -> None:
        found = self.source.partitions()
        self.source.refresh()
        self.in_metadata = found
        was_missing = set(self.missing)         # created after start, if they appear now
        self._look_for_missing(found)
        self._note_hidden(found)
        self.recreated.update(self._recreated_topics())
        anew = {t for t, _p in found} & set(self.recreated)     # re-created, listed again
        kept = {p for p in self.assigned if p[0] not in anew}
        added = self._with_leader(found - kept)
        if not added:
            return
        try:
            begin, end = self.source.bounds(added)
            at_start = self._offsets_at_start(added & self.since_start)
        except OffsetsUnanswered as exc:
            logger.warning("%s; trying again without the partitions whose leader does not "
                           "let us in", exc)
            return
        created_later = not self.assigned and {t for t, _p in added} <= (
            was_missing | {t for t, _p in self.since_start})
        seeks, live_from = self._starts(added, begin, end, at_start,
                                        first=not self.assigned and not created_later)
        self.source.assign(added | kept, seeks)
        for (topic, partition), offset in live_from.items():
            self.frontier.advance(topic, partition, offset)
        # Announced at once, so the broker knows where live starts before any record arrives.
        self.unannounced_starts.update(live_from)
        if created_later:
            # No topic of KAFKA_TOPICS existed at start: nothing to warm up from, and the
            # streams held meanwhile get these topics from their beginning.
            starts, self.unannounced_starts = self.unannounced_starts, {}
            self.broker.tell(Consumed((), (), dict(self.frontier.offsets), starts, warm=True))
        for topic in anew:
            self._read_anew(topic, self.recreated.pop(topic))
        logger.info("assigned %d new partition(s): %s", len(added), named(added))
        self.assigned = kept | added
        self._report_state(force=True)  # announce the new partitions

    def _starts(self, added: set, begin: dict, end: dict, at_start: dict,
                first: bool) -> tuple[dict, dict]:
        """Where the `added` partitions are read from, and where their live stream starts."""
        self.since_start -= added
        if first:
            # The partitions there at start: live from the end, after reading back the recent
            # history.
            self.warm_start = WarmStart(self.settings, begin, end, self.clock())
            self.from_end = self.leaderless | self.unreached_new
            return self.warm_start.seeks(), end
        # Partitions that appear later are read from their beginning: nothing is missed.
        # Those that were there at start without a leader: from their end, as the rest.
        # Those Kafka hid from us at start: from where they stood then (nothing there is new).
        seeks = {p: (end if p in self.from_end else begin)[p] for p in added}
        seeks.update({p: end[p] if offset is None else offset for p, offset in at_start.items()})
        self.from_end -= added
        return seeks, seeks

    def _note_hidden(self, found: set) -> None:
        """Topics of ours Kafka will not describe to us (no DESCRIBE in its ACLs) before we
        read them: never called missing; once listed, their partitions are read from where
        they stood when the gateway started, as a topic it may not READ is."""
        seen = {t for t, _p in found | self.assigned}
        self.since_start |= {p for p in found if p[0] in self.hidden}
        self.hidden = (self.hidden | self.source.unauthorized_topics()) - seen

    def _offsets_at_start(self, partitions: set) -> dict:
        """Each partition's first offset written after the gateway started (None: none yet).
        Kafka answers no offsets of a topic it hides, so the records' times are what tell."""
        if not partitions:
            return {}
        return self.source.offsets_for_time(partitions, self.started_ms or 0)

    def _with_leader(self, partitions: set) -> set:
        """The partitions whose leader is known; the others (their broker down, a replication
        factor of 1) wait, said once in the log and in /health, while the rest stream."""
        leaderless = self.source.leaderless(partitions)
        if leaderless - self.leaderless:
            logger.warning("partitions without a leader (is their broker down?): %s; each is "
                           "read once Kafka elects one, the others stream meanwhile",
                           named(leaderless))
        self.leaderless = leaderless
        self.unreached_new = {p for u in self.source.unreached() for p in u.partitions
                              if p in partitions} - leaderless
        return partitions - leaderless - self.unreached_new

    def _look_for_missing(self, found: set) -> None:
        """Topics of KAFKA_TOPICS that Kafka has not listed for MISSING_AFTER_S while connected
        (a typo, a topic not created yet): one warning each, and a note in /health, while the
        others stream."""
        if not self.source.connected():
            return
        now, read = self.clock(), {t for t, _p in found | self.assigned}
        listed = read | self.source.unauthorized_topics()   # hidden by an ACL: said so instead
        absent = [t for t in self.settings.kafka_topics if t not in listed]
        self.absent_since = {t: self.absent_since.get(t, now) for t in absent}
        missing = tuple(t for t in absent if now - self.absent_since[t] >= MISSING_AFTER_S)
        for topic in missing:
            if topic not in self.missing:
                logger.warning("topic %s of KAFKA_TOPICS does not exist in Kafka: create it or "
                               "correct KAFKA_TOPICS", topic)
        for topic in self.missing:
            if topic not in missing and topic in listed:     # at the warning's level
                logger.warning("topic %s of KAFKA_TOPICS exists now%s", topic,
                               ": streaming it" if topic in read else
                               ", but the gateway's Kafka user may not read it")
        self.missing = missing

    def _recreated_topics(self) -> dict:
        """Topics whose Kafka topic id changed (deleted and created again), with the new id.
        Ids keep the old incarnation until the topic is assigned anew (`_read_anew`)."""
        recreated = {}
        for topic, topic_id in self.source.topic_ids().items():
            if INCARNATIONS.replaces(topic, topic_id):
                recreated[topic] = topic_id
            else:
                INCARNATIONS.learn(topic, topic_id)      # the first id seen, or the same
        return recreated

    def _read_anew(self, topic: str, topic_id) -> None:
        """From now on ids carry the new incarnation. A partition of it the metadata does not
        list yet starts at 0 in ids, and is read from its beginning when it comes."""
        for (t, partition) in self.assigned - self.in_metadata:
            if t == topic:
                self.frontier.advance(topic, partition, 0)
        INCARNATIONS.learn(topic, topic_id)
        self.reset_topics.add(topic)
        self.topic_notes[topic] = (f"topic {topic} was deleted and created again at "
                                   f"{time.strftime('%H:%M', time.gmtime())} UTC", self.clock())
        logger.warning("topic %s was deleted and created again (topic id %s): reading it from "
                       "its new beginning; clients resuming from before get a gap event",
                       topic, topic_id)

    def _warming(self, records, positions):
        """Hold records until the warm start has read up to the ends; then publish it."""
        stalled = set(self.source.stalled())
        self.warm_start.add(records)
        self.warm_start.reached(positions, stalled)
        if not self.warm_start.done(self.clock()):
            return []
        back = self.warm_start.read_back(self.clock(), stalled)
        if back:        # fewer events than SSE_HISTORY_SIZE: the same partitions, from earlier
            self.source.assign(self.assigned, back)
            return []
        warm_start, self.warm_start = self.warm_start, None
        behind = warm_start.behind(positions, {p: s.offset for p, s in
                                               self.source.stalled().items()})
        if behind:
            self.source.go_on(behind)
        events, covered, live = warm_start.finish(self.frontier.topics)
        for position, reason in warm_start.invalid:     # those of what the history covers
            self._log_invalid(position, reason, " (warm start)")
        # The history covers its partitions from here, not from the live starts (the ends):
        # those not announced yet must not come after this and overwrite it.
        starts, self.unannounced_starts = {**self.unannounced_starts, **covered}, {}
        self.broker.tell(Consumed(tuple(events), tuple(p.topic for p, _ in warm_start.invalid),
                                  dict(self.frontier.offsets), starts,
                                  warm=True, complete_after_ms=_complete_after(
                                      events, self.settings.sse_history_size,
                                      bool(warm_start.holes()))))
        logger.info("warm start: %d recent event(s) in the history", len(events))
        return live

    def _publish(self, records, positions=None, skips=()) -> None:
        frontier = self.frontier
        for skip in skips:              # retention or a truncated log moved the position
            frontier.advance(*skip.partition, skip.resumed)
        batch = events_from_records(records, frontier, self.settings.sse_max_event_bytes,
                                    getattr(self.settings, "auth_subject_field", None))
        for record, reason in batch.invalid:
            self._log_invalid(record, reason)
        for (topic, partition), offset in (positions or {}).items():
            if offset > frontier.offsets.get((topic, partition), offset):
                frontier.advance(topic, partition, offset)
        starts, self.unannounced_starts = self.unannounced_starts, {}
        reset, self.reset_topics = tuple(sorted(self.reset_topics)), set()
        self.broker.tell(Consumed(tuple(batch.events), tuple(r.topic for r, _ in batch.invalid),
                                  dict(frontier.offsets), starts,
                                  tombstone_topics=tuple(r.topic for r in batch.tombstones),
                                  reset_topics=reset, skips=skips))

    def _log_invalid(self, record, exc, when: str = "") -> None:
        """`record`: a Record or a Position; `when`: a note after where it was."""
        dropped = self.invalid_log.take(self.clock())
        if dropped is not None:
            logger.warning("skipped invalid record at %s:%d:%d%s: %s%s", record.topic,
                           record.partition, record.offset, when, exc, more_since(dropped))

    def _set_state(self, state: str, detail: str = "", force: bool = False) -> None:
        if (state, detail) != (self.state, self.detail) or force:
            self.state, self.detail = state, detail
            partitions = tuple(sorted(self.assigned & self.in_metadata))
            self.broker.tell(KafkaStateChanged(state, partitions, detail,
                                               tuple(p for p in partitions if p in self.unread)))

    def on_stop(self):
        self._close()

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("kafka consumer failed: %s (its traceback is above)", exception_value)
        self._close()

    def _close(self) -> None:
        """Close the source, and one a bootstrap opened that the actor has not taken yet (one
        still opening is closed by _open when it ends)."""
        self.stopped = True
        opened = self.opening[0][0] if self.opening else None
        for source in (self.source, opened):
            if source is not None:
                source.close()


def _complete_after(events, size: int, holed: bool) -> int | None:
    """When the warm start filled the history (its `size` newest events, oldest first), the
    time of its oldest: of the events stamped then, some may have been left out (None: it
    holds every event it read). One cut short before a partition's end (`holed`) may lack
    events of any time."""
    if holed:
        return MAX_TIMESTAMP_MS
    if len(events) < size:
        return None
    return events[0].timestamp_ms if events else MAX_TIMESTAMP_MS
