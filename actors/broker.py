"""BrokerActor: registers clients, fans Kafka batches out to them, hands replays over to live.

A client's phase (held, replaying, behind, live) and what it has seen are its Subscription
(actors/subscription.py); the broker files it where its phase says: live ones in `live` (a
LiveStreams, actors/fan_out.py: their groups by filter and their subjects, and a batch's
delivery to them), the others in `waiting[phase]`. Where Kafka's log moved under the streams'
places (cuts, ends) is actors/log_edges.py. The counters are `figures` (actors/figures.py).
"""
from __future__ import annotations

import bisect
import heapq
import logging
import time
from itertools import groupby

import pykka

from actors import framing, prompt, resume
from actors.auth.subjects import MAX_SUBJECT_LENGTH, NOBODY
from actors.blocks import Blocks
from actors.client import summary
from actors.events import frames_of
from actors.fan_out import LiveStreams
from actors.figures import Figures
from actors.log_edges import Cuts, PastTheEnd, resumed_in_cut
from actors.logs import LogBudget
from actors.messages import (
    CancelReplay, Close, CloseAll, Consumed, DisconnectClient, DisconnectSubject, ExpireStreams,
    GetClients, GetHealth, GetStats, KafkaLag, KafkaStateChanged, ReadRange, Remember, Replay,
    Replayed, SendHeartbeats, Subscribe, Unsubscribe,
)
from actors.refs import QuietRef
from actors.replies import ClientPage, Health, KafkaStatus, Stats, client_order
from actors.resume import Frontier
from actors.subscription import HeldGap, Phase, Subscription

logger = logging.getLogger(__name__)

SLOW_CLIENT = "slow client: buffer full"
AUTH_EXPIRED = "auth-expired"
INVALID_SUBJECT = f"invalid subject: text of at most {MAX_SUBJECT_LENGTH} characters"
EXPIRED_FRAME = framing.auth_expired("token expired")
STREAM_FAILED = "internal error: this stream could not go on; retry"
READABLE_AGAIN = "{}:{} is read again; retry to receive what this stream missed there"


def _listing_order(sub) -> tuple[float, str]:
    """A stream's place in GetClients' order."""
    return client_order(sub.info)


class _Subscriber:
    """A client as the broker sees it: who it is, where its bytes go, its actor, its phase."""
    __slots__ = ("info", "outbox", "client", "key", "subscription", "unverified", "shown",
                 "gap_due")

    def __init__(self, message: Subscribe):
        self.info = message.info
        self.outbox = message.outbox       # owned by the client's actor (ClientActor.outbox)
        self.client = message.client
        self.key = (message.info.filter, message.info.named)
        self.subscription = Subscription(message.info.filter, message.known,
                                         with_history=message.with_history,
                                         since_ms=message.since_ms, subject=message.info.subject)
        self.unverified = message.unverified    # checked when the warm start is done
        self.shown: str | None = None      # the live position last sent as its id, if any
        self.gap_due = message.topics_changed  # its opening is a gap (topics_changed)

    def opening(self, block: bytes) -> bytes:
        """Its opening id-only block (`block`), as a topics_changed gap the first time when its
        id came from a gateway with other KAFKA_TOPICS."""
        if not self.gap_due:
            return block
        self.gap_due = False
        return framing.topics_changed(block)


class BrokerActor(pykka.ThreadingActor):
    @staticmethod
    def _create_actor_inbox():              # woken ahead of the hub's callbacks, Kafka's first
        return prompt.inbox(urgent=(Consumed, KafkaLag, KafkaStateChanged))

    def __init__(self, *, history, kafka_reader=None, clock=time.time, warm_start=True,
                 topics=(), monotonic=time.monotonic):
        super().__init__()
        self.history = history
        self.kafka_reader = kafka_reader    # the replay actor: reads a client's gap from Kafka
        self.replies = QuietRef(self.actor_ref)     # reply_to of the history's and replay's
        self.topics = tuple(topics)     # KAFKA_TOPICS, for the id a stream opens with
        self.monotonic = monotonic
        self.frontier: dict = {}
        self._frontier_id: tuple[tuple, str | None] | None = None  # ((registry, generation), id)
        # Until the consumer's first (warm) batch, clients are held: the history is filling.
        self.warming = warm_start
        self.subscribers: dict[str, _Subscriber] = {}
        self.figures = Figures(monotonic, wall=clock)
        self.live = LiveStreams(self.figures)
        self.waiting: dict[Phase, dict[str, _Subscriber]] = {
            Phase.HELD: {}, Phase.REPLAYING: {}, Phase.BEHIND: {}}
        self.expiries: list[tuple[float, str]] = []     # heap of (expires_at, client id)
        self.clock = clock
        self.drain_carry = 0.0            # streams owed by earlier CloseAll shares (a fraction)
        self.closed_all: str | None = None   # the last share's reason: later streams end at once
        self.blocks = Blocks()              # history replays' frames, shared by new streams
        self.kafka = KafkaStateChanged("connecting")
        self.kafka_lost_at: float | None = None   # when a connection to Kafka was lost, until back
        self.reasons_said: set[str] = set()       # the Kafka details logged in this state
        self.listed: set[str] = set()       # our topics Kafka listed when last connected
        self.past_end = PastTheEnd()        # streams placed past Kafka's end: since when
        self.cuts = Cuts()                  # logs cut under the live position
        self.unowned_log = LogBudget(1, 60.0)
        self.unowned_unsaid = 0             # unowned events since the last line about them

    def on_receive(self, message):
        match message:
            case Consumed():
                self._consumed(message)
            case Subscribe():
                self._for_one(message.info.id, self._subscribe, message)
            case Replayed():
                self._for_one(message.client_id, self._replayed, message)
            case Unsubscribe(client_id=client_id):
                self._remove(client_id)
            case SendHeartbeats():
                self._heartbeat()
            case KafkaStateChanged():
                self._kafka_changed(message)
            case KafkaLag(lag=lag, ends=ends):
                self.figures.lag = lag
                self._past_the_end(ends)
            case DisconnectClient(client_id=client_id, reason=reason):
                return self._disconnect(client_id, reason)
            case DisconnectSubject(subject=subject, reason=reason):
                return self._disconnect_subject(subject, reason)
            case ExpireStreams():
                self._expire()
            case CloseAll(reason=reason, share=share):
                self._close_share(reason, share)
            case GetStats():
                return self._stats()
            case GetHealth():
                return self._health()
            case GetClients(limit=limit, offset=offset, after=after):
                return self._clients(limit, offset, after)
            case _:
                return super().on_receive(message)

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("broker failed: %s (its traceback is above)", exception_value)

    def _for_one(self, client_id: str, handle, message) -> None:
        """Handle a message about one stream. A failure there (a bug its filter, id or replay
        meets) ends that stream alone, logged once: told, it would stop the broker (pykka),
        ending every stream of the worker, and the client reconnecting with the same id would
        take the next worker down the same way."""
        try:
            handle(message)
        except Exception:
            logger.exception("stream %s: %s failed; ending that stream alone (a bug: please "
                             "report it)", client_id, type(message).__name__)
            if not self._disconnect(client_id, STREAM_FAILED) and isinstance(message, Subscribe):
                message.client.tell(Close(STREAM_FAILED))

    # -- the fan-out path ---------------------------------------------------------------
    def _consumed(self, message: Consumed) -> None:
        events = message.events
        self.figures.count_skipped(message.invalid_topics, message.tombstone_topics)
        if message.frontier:
            self.frontier.update(message.frontier)
            self._frontier_id = None
        if message.reset_topics:
            self._topics_recreated(set(message.reset_topics))
        if events or message.starts or message.reset_topics or message.skips:
            self.history.tell(Remember(events, message.starts, message.reset_topics,
                                       message.skips))
        if message.skips:
            self._skipped(message.skips)
            self._cut(message.skips)
        if message.warm:
            self._warmed(message.complete_after_ms)
            return
        if message.starts:
            self._end_streams_before_starts(message.starts)
        if not events:
            return
        self.figures.count_consumed(events)
        overflowed: list[_Subscriber] = []
        for sub in self.waiting[Phase.REPLAYING].values():     # its replay paused by its reader
            if sub.subscription.hold(events, sub.info.named) > sub.outbox.max_bytes:
                overflowed.append(sub)
        behind = list(self.waiting[Phase.BEHIND].values())
        now = self.monotonic()
        if any(e.owner is not None for e in events):
            self._count_unowned(events)
            self.live.owned(events, now, overflowed, self.subscribers)
        else:
            self.live.public(events, now, overflowed)
        for sub in overflowed:
            self._disconnect(sub.info.id, SLOW_CLIENT)
        for sub in behind:             # after the groups: a sub that catches up joins one
            self._catch_up(sub, events, now)

    def _count_unowned(self, events) -> None:
        """Events whose owner field is there but names no subject reach no stream: counted,
        and said at most once a minute (a producer's new schema can turn every private event
        into one)."""
        unowned = [e.position for e in events if e.owner == NOBODY]
        if not unowned:
            return
        self.figures.unowned += len(unowned)
        self.unowned_unsaid += len(unowned)
        if self.unowned_log.take(self.monotonic()) is None:
            return
        count, self.unowned_unsaid = self.unowned_unsaid, 0
        logger.warning("%d event(s) reached no stream, the latest at %s:%d:%d: the owner that "
                       "AUTH_SUBJECT_FIELD reads is there but names no subject (a number with "
                       "a fraction, a boolean, a list or object, empty text, text over 1,024 "
                       "characters, or headers of that name that disagree); at most one such "
                       "line a minute", count, *unowned[-1])

    def _skipped(self, skips) -> None:
        """Kafka lost records before the live side read them (retention, a truncated log):
        every live stream gets one `gap` event, whose id is its place after the gap. (Every
        stream reads every partition: a filter selects event types and sources, not topics.)"""
        at = dict(self.frontier)
        sse_id = Frontier(self.topics, at).token()
        gaps = tuple((s.reason, s.partition, s.requested, s.resumed) for s in skips)
        frame = framing.gap(sse_id, gaps)
        for sub in self.live:
            sub.outbox.offer(frame, 0, sse_id, force=True)
        held = HeldGap(frame, sse_id, gaps, at)
        for sub in self.waiting[Phase.REPLAYING].values():     # told after its replay
            sub.subscription.hold_gap(held)
        for sub in self.waiting[Phase.BEHIND].values():        # unless it had seen past it
            if sub.subscription.missed(held):
                own_frame, own_id = self._own_gap(sub, held)
                sub.outbox.offer(own_frame, 0, own_id, force=True)

    def _cut(self, skips) -> None:
        """A log cut under the live position (an unclean leader election) takes the position
        back. What a stream still waiting to go live was read or sent assumes positions only go
        on: it ends, and its reconnect starts from its id again. The cut is kept: an id between
        it and the old position names records that are gone (`_resumed_in_cut`)."""
        reason = self.cuts.add(skips)
        if reason is None:
            return
        for phase in (Phase.HELD, Phase.REPLAYING, Phase.BEHIND):
            for client_id in list(self.waiting[phase]):
                self._disconnect(client_id, reason)

    def _resumed_in_cut(self, message: Subscribe) -> bool:
        """A resume whose id lies where a log was cut (between the cut and the position it was
        cut under): it is sent its place with the cut there, in a `gap` event, and ended; its
        reconnect reads on from the cut. (Ids carry no leader epoch: one this instance issued
        after the cut, for the new leader's records there, is sent back too: its client sees
        them again rather than miss any.)"""
        known = message.known or {}
        inside = self.cuts.under(known)
        if not inside:
            return False
        reason, place, gaps = resumed_in_cut(known, inside)
        message.client.tell(Close(reason, self._last_gap(place, gaps, reason)))
        return True

    def _own_gap(self, sub: _Subscriber, gap: HeldGap) -> tuple[bytes, str]:
        """`gap` as a resumed stream is told it: under its own id (Subscription.gap_id),
        naming the partitions where it had not seen all that was lost, from what it had."""
        subscription = sub.subscription
        sse_id = subscription.gap_id(gap, self.topics)
        if not subscription.known:
            return gap.frame, sse_id
        return framing.gap(sse_id, subscription.missed(gap)), sse_id

    def _topics_recreated(self, topics: set) -> None:
        for sub in self.subscribers.values():
            sub.subscription.forget_topics(topics)

    # -- subscription and the hand-over from history to live ------------------------------
    def _subscribe(self, message: Subscribe) -> None:
        """Register a client; its stream opens with its starting position as an id-only block
        (a new client with history gets the history's from the history; a `since` client none
        until its replay: its URL is its position), so a cut at any moment resumes exactly."""
        if self.closed_all is not None:        # the drain is over: it reconnects elsewhere
            message.client.tell(Close(self.closed_all))
            return
        subject = message.info.subject
        if subject is not None and not (isinstance(subject, str)
                                        and len(subject) <= MAX_SUBJECT_LENGTH):
            message.client.tell(Close(INVALID_SUBJECT))      # the edge refuses these first
            return
        if self.cuts and self._resumed_in_cut(message):
            return
        sub = _Subscriber(message)
        self.subscribers[sub.info.id] = sub
        self.figures.connections += 1
        if sub.info.expires_at is not None:
            heapq.heappush(self.expiries, (sub.info.expires_at, sub.info.id))
        if not self.warming:
            self._verify(sub)
        if message.recreated:
            sub.outbox.push_control(self._recreated_notice(message.known or {}, message.recreated))
        if message.known is not None:       # its own position: a heartbeat need not repeat it
            sub.shown = self._token(sub.subscription.known or {}, sub.unverified)
            sub.outbox.push_control(framing.position(sub.shown) if sub.shown else b"")
        if sub.gap_due and message.since_ms is not None:    # its place is its URL: no id
            sub.outbox.push_control(sub.opening(b""))
        sub.subscription.begin(self.frontier, self.warming)
        self._file(sub, Phase.NEW)

    def _warmed(self, complete_after_ms: int | None = None) -> None:
        """The history is full: the held clients replay up to here. What was produced after a
        new one came was read as the warm start's, not live: those that want no history, and
        all when the history may have left some of that out (it holds every event stamped
        after `complete_after_ms`; None: every one), read Kafka from when the first came."""
        self.warming = False
        held = list(self.waiting[Phase.HELD].values())
        new = [sub for sub in held
               if sub.subscription.known is None and sub.subscription.since_ms is None]
        if new and self.kafka_reader is not None:
            since_ms = int(min(sub.info.connected_at for sub in new) * 1000)
            short = complete_after_ms is not None and since_ms <= complete_after_ms
            for sub in new:
                if short or not sub.subscription.replays:
                    sub.subscription.since_ms = since_ms
        for sub in held:
            self._verify(sub)
            sub.subscription.warmed(self.frontier)
            self._file(sub, Phase.HELD)

    def _verify(self, sub: _Subscriber) -> None:
        """An id read before the consumer knew the topics' incarnations (the gateway had just
        started): the topics re-created since it was issued resume from their beginning."""
        stale = resume.stale(sub.unverified) if sub.unverified else set()
        if stale:
            known = sub.subscription.known or {}
            recreated = {k: o for k, o in known.items() if k[0] in stale}
            sub.subscription.forget_topics(stale)
            sub.outbox.push_control(
                self._recreated_notice(sub.subscription.known or {}, recreated))

    def _file(self, sub: _Subscriber, was: Phase) -> None:
        """File a subscriber where its new phase says (it left `was`), and start what that phase
        needs: its replay; or, placed without one, the live frontier as its opening id."""
        phase = sub.subscription.phase
        self._unfile(sub, was)
        if phase is Phase.LIVE:
            self.live.add(sub)
        else:
            self.waiting[phase][sub.info.id] = sub
        if phase is Phase.REPLAYING:            # entered only from NEW or HELD
            self._start_replay(sub)
        elif was in (Phase.NEW, Phase.HELD) and phase is not Phase.HELD:
            sub.shown = self._frontier_token()
            sub.outbox.push_control(sub.opening(framing.position(sub.shown) if sub.shown
                                                else b""))

    def _unfile(self, sub: _Subscriber, phase: Phase) -> None:
        if phase is Phase.LIVE:
            self.live.remove(sub)
        elif phase in self.waiting:
            self.waiting[phase].pop(sub.info.id, None)

    def _start_replay(self, sub: _Subscriber) -> None:
        subscription = sub.subscription
        if subscription.since_ms is not None:     # from that time, less what it has seen
            self._read_kafka(sub, subscription.known, subscription.since_ms)
        else:
            self.history.tell(Replay(sub.info.id, subscription.filter, subscription.known,
                                     self.replies, subscription.subject))

    def _read_kafka(self, sub: _Subscriber, start, since_ms=None) -> None:
        self.figures.kafka_replays += 1
        until = sub.subscription.until
        self.kafka_reader.tell(ReadRange(sub.info.id, sub.info.filter, start,
                                         until, self.replies, since_ms,
                                         sub.info.remote_addr, sub.info.named, sub.outbox,
                                         sub.subscription.subject, self._deleted(until)))

    def _deleted(self, until: dict) -> frozenset:
        """The partitions of `until` whose topic Kafka lists no more (deleted, not created
        again): asking Kafka about them fails, so a replay reads none of them. Only while
        connected and Kafka lists some topic of ours (else what it lists says nothing)."""
        listed = {t for t, _p in self.kafka.partitions}
        if self.kafka.state != "connected" or not listed:
            return frozenset()
        return frozenset(p for p in until if p[0] not in listed)

    def _replayed(self, message: Replayed) -> None:
        sub = self.waiting[Phase.REPLAYING].get(message.client_id)
        if sub is None:
            return
        if not message.found:          # the history cannot serve it: read Kafka
            self._read_kafka(sub, sub.subscription.resume_from)
            return
        self.figures.count_streamed(message.streamed)
        replay, held = sub.subscription.replayed(message.events, self.frontier, message.short,
                                                 message.public)
        if self._end_if_stranded(sub, [e for e in held if not isinstance(e, HeldGap)]):
            return
        replay = sub.subscription.own_ids(replay, self.topics)     # ids of its own, if need be
        live, held_frames, last = self._held(sub, held)
        named = sub.info.named
        block, per_topic = self.blocks.of(replay, named)
        frames = sub.opening(message.notice) + block + held_frames
        if frames:
            if last is None and replay:
                last = replay[-1].sse_id
            elif last is None:
                self._shown_if_live(sub, message.notice)
            sub.outbox.offer(frames, len(replay) + len(live), last, force=True)
            self.figures.count_streamed(per_topic)
            if live:
                self.figures.count_delivery(live, 1, 0)
        self._file(sub, Phase.REPLAYING)

    def _shown_if_live(self, sub: _Subscriber, opening: bytes) -> None:
        """A stream given no event, only its opening id: when that is the live position (an
        idle ring), a heartbeat has nothing new to show it."""
        token = self._frontier_token()
        if token and opening == framing.position(token):
            sub.shown = token

    def _held(self, sub: _Subscriber, held: list) -> tuple[list, bytes, str | None]:
        """The held live events (under the stream's ids) and gap events, in their order:
        (the events, their frames, the last id)."""
        named, events, parts, last = sub.info.named, [], [], None
        for gaps, run in groupby(held, key=lambda item: isinstance(item, HeldGap)):
            if gaps:
                for gap in run:
                    frame, last = self._own_gap(sub, gap)
                    parts.append(frame)
            else:           # the usual case: one run, every held event
                items = list(sub.subscription.own_ids(list(run), self.topics))
                events += items
                parts.append(frames_of(items, named))
                last = items[-1].sse_id
        return events, b"".join(parts), last

    def _recreated_notice(self, known: dict, recreated: dict) -> bytes:
        """A `gap` event for the partitions of topics re-created since the client's id: they
        resume from their new beginning (what the id held there means nothing any more)."""
        gaps = [("topic_recreated", p, offset, 0) for p, offset in sorted(recreated.items())]
        return framing.gap(Frontier(self.topics, known).token(), gaps)

    def _heartbeat(self) -> None:
        """A heartbeat comment to every stream. A live stream whose filter passed over records
        since the last id it was sent also gets the live position, as an id-only block: else
        it would resume from its last event, read back what it was never to be shown, and
        past SSE_REPLAY_MAX_EVENTS (or retention) be told with a `gap` that it lost some.
        Not while its socket takes nothing: a later heartbeat brings the position then."""
        self._end_streams_readable_again()
        token = self._frontier_token()
        moved = framing.HEARTBEAT + framing.position(token) if token else b""
        for sub in self.subscribers.values():
            outbox = sub.outbox
            if (token is None or token == sub.shown or token == outbox.offered_id
                    or outbox.waiting or sub.subscription.phase is not Phase.LIVE):
                outbox.push_control(framing.HEARTBEAT)
            else:
                sub.shown = token
                outbox.push_control(moved)

    def _token(self, offsets: dict, unknown_tags: dict | None = None) -> str | None:
        """`unknown_tags` as Frontier.token takes them (a resume's own)."""
        return Frontier(self.topics, offsets).token(unknown_tags) if self.topics else None

    def _frontier_token(self) -> str | None:
        """The live frontier's id, made again only when the frontier or a topic's incarnation
        has changed (a storm of opens between two batches shares one)."""
        registry = resume.INCARNATIONS
        generation = (id(registry), registry.generation)
        made = self._frontier_id
        if made is None or made[0] != generation:
            made = self._frontier_id = (generation, self._token(self.frontier))
        return made[1]

    def _end_streams_before_starts(self, starts: dict) -> None:
        """Partitions this instance starts reading: a stream that waits for it or replays, and
        had its place there before where reading starts, ends; its reconnect reads the rest."""
        for sub in [*self.waiting[Phase.BEHIND].values(), *self.waiting[Phase.REPLAYING].values()]:
            p = sub.subscription.started_past(starts)
            if p is not None:
                self._disconnect(sub.info.id, READABLE_AGAIN.format(*p))

    def _end_streams_readable_again(self) -> None:
        """Streams whose replay left a partition out (`short`) that Kafka's state says the live
        side reads: they end, and their reconnects read what they missed there. Not only when
        a record of it comes (`_end_if_stranded`): on an idle partition none may come for
        hours. Asked when that state changes and at each heartbeat (the live side may never
        have noticed what the replay met: its state says nothing new then)."""
        kafka = self.kafka
        if kafka.state != "connected" or not self.waiting[Phase.BEHIND]:
            return
        read = set(kafka.partitions).difference(kafka.unread)
        for sub in list(self.waiting[Phase.BEHIND].values()):
            p = next((p for p in sorted(sub.subscription.short) if p in read), None)
            if p is not None:
                self._disconnect(sub.info.id, READABLE_AGAIN.format(*p))

    def _end_if_stranded(self, sub: _Subscriber, events) -> bool:
        """Live events of a partition its replay could not read: the stream cannot show them
        before what it missed there, so it ends, and its reconnect reads that from Kafka."""
        p = sub.subscription.stranded(events)
        if p is not None:
            self._disconnect(sub.info.id, READABLE_AGAIN.format(*p))
        return p is not None

    def _catch_up(self, sub: _Subscriber, events, now: float) -> None:
        if self._end_if_stranded(sub, events):
            return
        fresh = sub.subscription.own_ids(sub.subscription.fresh(events), self.topics)
        if fresh:
            frames = frames_of(fresh, sub.info.named)
            if not sub.outbox.offer(frames, len(fresh), fresh[-1].sse_id,
                                    oldest_ms=fresh[0].timestamp_ms, now=now):
                self.figures.count_delivery(fresh, 0, 1)
                self._disconnect(sub.info.id, SLOW_CLIENT)
                return
            self.figures.count_delivery(fresh, 1, 0)
        sub.subscription.caught_up(self.frontier)
        self._file(sub, Phase.BEHIND)

    def _remove(self, client_id: str) -> _Subscriber | None:
        sub = self.subscribers.pop(client_id, None)
        if sub is None:
            return None
        phase = sub.subscription.phase
        self._unfile(sub, phase)
        if phase is Phase.REPLAYING and self.kafka_reader is not None:
            self.kafka_reader.tell(CancelReplay(client_id))     # its replay may be under way
        return sub

    def _close_share(self, reason: str, share: float) -> None:
        """End `share` of the open streams, oldest first. What a step leaves over (a third of
        a stream) is carried to the next, so a drain of few streams spreads over the window
        rather than closing one per step from its start. After the last share (1), a stream
        that subscribes still (its admission waited) is ended at once with the same reason."""
        open_ids = list(self.subscribers)
        self.drain_carry += len(open_ids) * share
        count = len(open_ids) if share >= 1 else min(len(open_ids), int(self.drain_carry + 1e-9))
        self.drain_carry = 0.0 if share >= 1 else self.drain_carry - count
        if share >= 1:
            self.closed_all = reason
        for client_id in open_ids[:count]:
            self._disconnect(client_id, reason)

    def _disconnect(self, client_id: str, reason: str, final: bytes = b"") -> bool:
        sub = self._remove(client_id)
        if sub is None:
            return False
        if reason == SLOW_CLIENT:
            self.figures.slow_disconnects += 1
        sub.client.tell(Close(reason, final))
        return True

    def _past_the_end(self, ends: dict) -> None:
        """A stream waiting behind this instance whose place in a partition stays beyond
        Kafka's end (log_edges.PastTheEnd) is sent its place with Kafka's end there (or where
        this instance stood when it came), and closed: its reconnect reads on from there."""
        behind, kafka = self.waiting[Phase.BEHIND], self.kafka
        if kafka.state != "connected" or not behind:
            self.past_end.clear()
            return
        unread = set(kafka.unread)
        for client_id in self.past_end.due(behind, ends, unread, self.monotonic()):
            sub = behind[client_id]
            reason, place, gaps, told = self.past_end.closing(sub.subscription, ends, unread)
            # a `gap` event, not an id-only block: clients that adopt ids only from events
            # (npm's eventsource, a page that reads e.lastEventId) reconnect from its id too
            self._disconnect(client_id, reason, self._last_gap(place, gaps, reason))
            (logger.info if told else logger.warning)(
                "client %s %s: Kafka's log was truncated (an unclean leader election), or the "
                "id was forged or issued for another cluster", client_id, reason)

    def _last_gap(self, place: dict, gaps: tuple, reason: str) -> bytes:
        """A closing stream's last frames: a `gap` event whose id is its place after the gap,
        then `closing: reason`."""
        return framing.gap(self._token(place) or "", gaps) + framing.comment(f"closing: {reason}")

    def _disconnect_subject(self, subject: str, reason: str) -> int:
        """End every stream of `subject`, whatever its phase; how many ended (an operator's
        rare act: one pass over the clients)."""
        if not subject:
            return 0
        ids = [client_id for client_id, sub in self.subscribers.items()
               if sub.subscription.subject == subject]
        for client_id in ids:
            self._disconnect(client_id, reason)
        if ids:
            logger.info("disconnected %d stream(s) of subject %r: %r", len(ids), subject, reason)
        return len(ids)

    def _expire(self) -> None:
        """End the streams whose credential has expired with an `auth-expired` event. Entries of
        streams gone already are dropped as they come up, or all at once when they pile up."""
        now, heap, ended = self.clock(), self.expiries, 0
        while heap and heap[0][0] <= now:
            _at, client_id = heapq.heappop(heap)
            sub = self.subscribers.get(client_id)
            if (sub is not None and sub.info.expires_at is not None
                    and sub.info.expires_at <= now):
                ended += self._disconnect(client_id, AUTH_EXPIRED, EXPIRED_FRAME)
        if len(heap) > 2 * len(self.subscribers) + 64:
            self.expiries = [(s.info.expires_at, s.info.id) for s in self.subscribers.values()
                             if s.info.expires_at is not None]
            heapq.heapify(self.expiries)
        if ended:
            logger.info("%d stream(s) ended: their credential expired", ended)

    # -- Kafka's state ----------------------------------------------------------------------
    def _kafka_changed(self, message: KafkaStateChanged) -> None:
        if message.state != self.kafka.state:
            # the end of an outage, or of a start that warned, at its level: LOG_LEVEL=WARNING
            # sees both
            log = (logger.info if message.state == "connected" and self.kafka_lost_at is None
                   and self.kafka.state not in ("unreachable", "unauthorized")
                   else logger.warning)
            effect = ""
            if self.kafka.state == "connected":
                self.kafka_lost_at = self.monotonic()
                effect = ("; open streams stay open and get the events produced meanwhile once "
                          "it is back")
            elif message.state == "connected" and self.kafka_lost_at is not None:
                effect = f" ({self.monotonic() - self.kafka_lost_at:.0f} s after it was lost)"
                self.kafka_lost_at = None
            log("kafka %s -> %s%s%s", self.kafka.state, message.state,
                f": {message.detail}" if message.detail else "", effect)
            self.reasons_said = {message.detail}
        elif (message.state in ("unreachable", "unauthorized")     # a new reason, one outage
              and message.detail not in self.reasons_said and len(self.reasons_said) < 16):
            logger.warning("kafka still %s: %s", message.state, message.detail)
            self.reasons_said.add(message.detail)
        self.kafka = message
        listed = {t for t, _p in message.partitions}
        if message.state == "connected" and listed:
            self._forget_deleted(self.listed - listed)
            self.listed = listed
        self._end_streams_readable_again()

    def _forget_deleted(self, topics: set) -> None:
        """Topics Kafka listed and lists no more were deleted: their events leave the history
        (new streams would get them until newer ones pushed them out); it covers them from
        the live position, so a resume from before reads Kafka, which says what was lost."""
        if topics:
            self.history.tell(Remember((), {p: o for p, o in self.frontier.items()
                                            if p[0] in topics}, tuple(sorted(topics))))

    # -- the answers ----------------------------------------------------------------------
    def _health(self) -> Health:
        kafka = self.kafka
        return Health(
            status="ok" if kafka.state == "connected" else "degraded",
            kafka=KafkaStatus(kafka.state, kafka.detail,
                              tuple(f"{t}:{p}" for t, p in kafka.partitions)),
            clients=len(self.subscribers),
            warm=not self.warming,      # the warm start is done (readiness needs it)
        )

    def _stats(self) -> Stats:
        return self.figures.stats(clients=len(self.subscribers),
                                  filter_groups=len(self.live.groups),
                                  kafka_state=self.kafka.state)

    def _clients(self, limit: int, offset: int, after: tuple[float, str] | None) -> ClientPage:
        """Page `[offset, offset + limit)` in client_order, counted from the first client after
        `after` when given (a place, so clients leaving before it move nobody)."""
        subs = sorted(self.subscribers.values(), key=_listing_order)
        start = offset if after is None else offset + bisect.bisect_right(subs, after,
                                                                           key=_listing_order)
        page = subs[start:start + limit]
        return ClientPage(len(subs), tuple(summary(s.info, s.outbox) for s in page))
