"""The one door into the core: what web/ and rpc/ may ask of the actors, with typed answers.

    gateway = Gateway.of(system)                 # actors/system.py started the actors
    gateway.stats() -> ServiceStats              gateway.health() -> Health
    gateway.clients(limit, offset) -> ClientPage gateway.disconnect(client_id, reason) -> bool
    gateway.admit(address, stream, subject, peek) -> Lease   (raises Refused)
    gateway.open_stream(..., lease, identity) -> Stream (the client's actor and outbox, hidden)
    gateway.disconnect_subject(subject, reason) -> int  (streams ended)
    gateway.auth -> Authenticator, or None when AUTH_MODE=off
    gateway.local -> this worker's gateway (itself; see actors/instance.py for several workers)

Every question is one ask with ASK_TIMEOUT (or the caller's sooner deadline); a core that is
stopping, gone or too slow to answer raises `Unavailable`, whose message says what to do.
Admission waits longer (ADMIT_TIMEOUT): in a reconnect storm it queues behind thousands of
others, and a 503 would end a browser's EventSource for good.
The adapters never see pykka, an actor class, a message or an Outbox.
"""
from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import pykka

from actors.auth.authenticator import Authenticator
from actors.auth.identity import Identity
from actors.broker import SLOW_CLIENT
from actors.client import ClientActor, every_actor
from actors.logs import LogBudget, more_since
from actors.messages import (
    Admit, ClientInfo, DisconnectClient, DisconnectSubject, GetClients, GetHealth,
    GetHistorySize, GetLimiterStats, GetStats, Release, Subscribe, Waiting,
)
from actors.outbox import LATENCY_SAMPLE as LATENCY_SAMPLE, Outbox  # the first for web/
from actors.replies import ClientPage, Health, ServiceStats, with_stopped

logger = logging.getLogger(__name__)
# An overloaded core fails every request of a storm alike: one line a minute, then the count.
SLOW_LOG = LogBudget(1, 60.0)

ASK_TIMEOUT = 2.0
ADMIT_TIMEOUT = 10.0
STOPPING = "the service is stopping; retry shortly"
OVERLOADED = "the service is overloaded and did not answer in time; retry shortly"


class Unavailable(Exception):
    """The core is starting, stopping or did not answer in time: retry shortly."""


class Refused(Exception):
    """The rate limiter refused: `reason` is rate_limited, too_many_streams_per_ip,
    too_many_streams_per_subject or too_many_streams; `retry_after` in seconds."""

    def __init__(self, reason: str, retry_after: int):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class Lease:
    """An admitted stream's slot, given back exactly once.

    Used as `with lease:` around the view, it is released on the way out unless the stream
    took it over (`hand_over()`); the stream then releases it when it ends.
    """

    __slots__ = ("limiter", "address", "subject", "handed_over")

    def __init__(self, limiter, address: str, subject: str | None = None):
        self.limiter, self.address, self.subject = limiter, address, subject
        self.handed_over = False

    def hand_over(self) -> "Lease":
        self.handed_over = True
        return self

    def release(self) -> None:
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            try:
                limiter.tell(Release(self.address, subject=self.subject))
            except pykka.ActorDeadError:
                pass    # shutting down: the counts go with the limiter

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.handed_over or exc_info[0] is not None:
            self.release()


class Stream:
    """One client's stream as the response body sees it.

    The outbox is shared by the broker (which offers frames) and the response greenlet (which
    takes them); both run on the worker's one gevent hub, so it needs no lock. This object is
    the response side's only handle on it; `end()` stops the client's actor and gives the
    admission slot back, once.
    """

    def __init__(self, info: ClientInfo, outbox: Outbox, client, broker, lease: Lease):
        self.info, self._outbox, self._client, self._broker = info, outbox, client, broker
        self._lease = lease
        self._ended = False
        # The per-write path, bound once (no extra call per write):
        # take(timeout=None) -> (bytes, events, last id): waits, then what is queued, in one
        # write (Outbox.take); written(count, last_id): the bytes taken reached the socket.
        self.take: Callable[..., tuple[bytes | memoryview, int, str | None]] = outbox.take
        self.written: Callable[[int, str | None], None] = outbox.written
        self.go_direct = outbox.go_direct     # after the headers: the broker writes itself

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def taken_oldest_ms(self) -> int:
        """Kafka timestamp of the oldest live event in the last take() (0: none)."""
        return self._outbox.taken_oldest_ms

    @property
    def finished(self) -> bool:
        return self._outbox.finished

    @property
    def closed_reason(self) -> str | None:
        return self._outbox.closed_reason

    @property
    def sent(self) -> int:
        return self._outbox.sent

    @property
    def dropped(self) -> int:
        return self._outbox.dropped

    def close(self, reason: str) -> None:
        """End the stream after what is queued (the client went away, for example)."""
        self._outbox.close(reason)

    def lagging(self, now: float) -> bool:
        return self._outbox.lagging(now)

    def report_slow(self) -> None:
        """Its socket stopped taking events: the broker disconnects it as a slow client."""
        self._broker.tell(DisconnectClient(self.info.id, SLOW_CLIENT))

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            self._client.stop(block=False)
        except pykka.ActorDeadError:
            pass
        self._lease.release()


class Gateway:
    def __init__(self, settings, *, broker, history, limiter, stopping=None, core=None,
                 ask_timeout: float = ASK_TIMEOUT, admit_timeout: float = ADMIT_TIMEOUT,
                 count_actors=None, auth: Authenticator | None = None):
        self.settings = settings
        self.auth = auth                    # who may read what; None when AUTH_MODE=off
        self.broker, self.history, self.limiter = broker, history, limiter
        self.stopping = stopping            # a threading.Event, set while the system stops
        self.core = core or {}              # name -> ref, for stopped_actors()
        self.ask_timeout = ask_timeout
        self.admit_timeout = admit_timeout
        self._count_actors = count_actors or (lambda: len(every_actor()))

    @classmethod
    def of(cls, system) -> "Gateway":
        settings = system.settings
        auth = Authenticator.from_settings(settings) if settings.auth_mode != "off" else None
        return cls(settings, broker=system.broker, history=system.history,
                   limiter=system.limiter, stopping=system.stopping, core=system.core, auth=auth)

    @property
    def local(self) -> "Gateway":
        """This worker's own gateway (actors/instance.py's InstanceGateway has one too)."""
        return self

    # -- questions --------------------------------------------------------------------------
    def stats(self, timeout: float | None = None) -> ServiceStats:
        """Everything GET /stats shows: the three actors are asked at once (under load each
        answer waits for the hub's queued wake-ups; one after the other, three times)."""
        broker, history_size, limiter = self._ask_all(
            [(self.broker, GetStats()), (self.history, GetHistorySize()),
             (self.limiter, GetLimiterStats())], timeout)
        return ServiceStats(broker, history_size, limiter, self._count_actors())

    def health(self, timeout: float | None = None) -> Health:
        report = self._ask(self.broker, GetHealth(), timeout)
        pending = self.auth.keys_pending() if self.auth is not None else ""
        if pending:
            report = replace(report, keys_pending=pending)
        dead = self.stopped_actors()
        return with_stopped(report, dead) if dead else report

    def clients(self, limit: int, offset: int = 0, after: Sequence | None = None,
                timeout: float | None = None) -> ClientPage:
        """`after`: a place (opened, id) in client_order: the page is counted from the
        client after it (a list too: as a peer's question carries it)."""
        place = None if after is None else (float(after[0]), str(after[1]))
        return self._ask(self.broker, GetClients(limit, offset, place), timeout)

    def disconnect(self, client_id: str, reason: str, timeout: float | None = None) -> bool:
        """True when the client was connected (it is told to close)."""
        return self._ask(self.broker, DisconnectClient(client_id, reason), timeout)

    def disconnect_subject(self, subject: str, reason: str, timeout: float | None = None) -> int:
        """End every stream of `subject` (each gets `reason`); the number of streams ended."""
        return self._ask(self.broker, DisconnectSubject(subject, reason), timeout)

    def stopped_actors(self) -> list[str]:
        """The core actors that are not running (a bug: the worker retires)."""
        return sorted(name for name, ref in self.core.items() if not ref.is_alive())

    # -- streams ----------------------------------------------------------------------------
    def admit(self, address: str, *, stream: bool, subject: str | None = None,
              peek: bool = False) -> Lease:
        """Ask the rate limiter; raise Refused, or return the lease (a slot when `stream`,
        counted for `subject` too when one is given). `peek`: refused as a stream would be,
        without a slot (HEAD /events)."""
        decision = self._ask_or_give_up(self.limiter, Admit(address, stream, subject=subject,
                                                            peek=peek, waiting=Waiting()))
        if not decision.allowed:
            raise Refused(decision.reason, decision.retry_after)
        return Lease(self.limiter if stream else None, address, subject)

    def open_stream(self, *, lease: Lease, remote_addr: str, user_agent: str, filter,
                    named: bool = True, with_history: bool = True, since_ms: int | None = None,
                    resume=None, identity: Identity | None = None, scope: str = "",
                    spend: Callable[[], object] | None = None,
                    topics_changed: bool = False) -> Stream:
        """Start the client's actor and subscribe it; `resume` is the position decoded from a
        Last-Event-ID (actors.resume.Resume) or None; `identity` the authenticated subject
        (None: anonymous) and `scope` its description. The stream owns `lease` from now on.
        `spend`: called once the stream is sure to open (its ticket is redeemed), not when a
        worker told to stop meanwhile, or with its broker dead, refuses it (503: the retry
        may still use the ticket). `topics_changed`: its Last-Event-ID came from a gateway with
        other KAFKA_TOPICS (it starts over, told by a gap event)."""
        self._check()
        if spend is not None:
            if not self.broker.is_alive():      # refused below: the ticket stays unspent
                raise Unavailable(STOPPING)
            spend()
        settings = self.settings
        info = ClientInfo(id=secrets.token_hex(6), remote_addr=remote_addr,
                          user_agent=user_agent, filter=filter, named=named,
                          connected_at=time.time(), opened=time.monotonic(),
                          subject=identity.subject if identity is not None else None,
                          scope=scope,
                          expires_at=self._ends_at(identity))
        outbox = Outbox(settings.sse_event_buffer_size,
                        settings.sse_event_buffer_size * settings.sse_max_event_bytes)
        client = ClientActor.start(info=info, outbox=outbox, broker=self.broker)
        # Told here, not from the actor's on_start: before the client reads its id, so a
        # GetStats or DisconnectClient asked after that finds it.
        subscribe = Subscribe(info, outbox, client,
                              resume.offsets if resume is not None else None, with_history,
                              since_ms, resume.recreated if resume is not None else {},
                              resume.unverified if resume is not None else {},
                              topics_changed)
        try:
            self.broker.tell(subscribe)
        except pykka.ActorDeadError:
            client.stop(block=False)
            raise Unavailable(STOPPING) from None
        return Stream(info, outbox, client, self.broker, lease.hand_over())

    def _ends_at(self, identity: Identity | None) -> float | None:
        if identity is None:
            return None
        return identity.expires_at if self.auth is None else self.auth.ends_at(identity)

    # -- the one ask --------------------------------------------------------------------------
    def _check(self) -> None:
        if self.stopping is not None and self.stopping.is_set():
            raise Unavailable(STOPPING)

    def _wait(self, timeout: float | None) -> float:
        self._check()
        return self.ask_timeout if timeout is None else max(0.01, min(self.ask_timeout, timeout))

    def _ask(self, ref, message, timeout: float | None):
        wait = self._wait(timeout)
        try:
            return ref.ask(message, timeout=wait)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise _unavailable(exc, message, wait) from None

    def _ask_or_give_up(self, ref, message):
        """`_ask` of a message with `waiting`: past the deadline the asker gives up on it, so
        the actor, coming to it late, does nothing (a slot taken then would never be given
        back). When the actor took it up first, its answer is about to come: it is read."""
        self._check()
        wait = self.admit_timeout
        try:
            future = ref.ask(message, block=False)
            try:
                return future.get(timeout=wait)
            except pykka.Timeout:
                if message.waiting.give_up():
                    raise
                return future.get(timeout=self.ask_timeout)     # it is answering now
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise _unavailable(exc, message, wait) from None

    def _ask_all(self, questions, timeout: float | None) -> list:
        """Every (ref, message) asked at once; the answers in order, all within one deadline."""
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        asked, answers = [], []
        waiting_for = None
        try:
            for ref, message in questions:
                asked.append((ref.ask(message, block=False), message))
            for future, message in asked:
                waiting_for = message          # named if it does not answer
                answers.append(future.get(timeout=max(0.0, deadline - time.monotonic())))
            return answers
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise _unavailable(exc, waiting_for, wait) from None


def _unavailable(exc: Exception, message, wait: float) -> Unavailable:
    """What a failed ask means to the adapters: the actor is gone (stopping) or too slow."""
    if isinstance(exc, pykka.ActorDeadError):
        return Unavailable(STOPPING)
    dropped = SLOW_LOG.take(time.monotonic())
    if dropped is not None:
        logger.warning("no answer to %s within %.2f s: the request is answered 503 (the worker "
                       "is overloaded, or stuck if /livez fails)%s", type(message).__name__,
                       wait, more_since(dropped))
    return Unavailable(OVERLOADED)
