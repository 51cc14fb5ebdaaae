"""ClientActor: one per connected stream; it holds the client's state and its control.

The client's bytes do not pass through the actor's mailbox: the broker offers each batch's
frames straight to the client's Outbox and the response greenlet takes them from it (when it
was measured, one tell per client per batch delivered 45-50k events/s, this 56-63k/s).
Everything else about the client goes through here: the broker knows it by its ref (the
gateway subscribes it), it is told to close (an operator's DisconnectClient, a slow client,
shutdown), it unsubscribes when it stops, and its `summary` is what GetClients lists.

Under gevent's patching (the gunicorn worker) the actor runs on a raw greenlet with a slim
mailbox and futures on the hub: pykka's thread object, gevent queue (three deques) and the
deeper stack they park with cost ~7 KB per idle stream and over 100 µs of CPU per open
(measured with 2,000 streams: tracemalloc and RSS, process CPU time). Its messages, their
order and pykka's rules on errors are the same.

Client actors are kept out of pykka's registry, a list: each stop looked for its ref in it
and removed it, a scan of every open stream (an open and close cost 296 µs with none open
and 761 µs with 10,000, in-process; 312 and 368 since). They are kept in a dict of their own
instead, oldest first, which `running()` lists; `every_actor()` is both.
"""
from __future__ import annotations

import logging
import sys
import threading

import pykka
from greenlet import getcurrent

from actors import framing, hub
from actors.auth.redact import mask_credentials
from actors.messages import ClientInfo, Close, Unsubscribe
from actors.outbox import Outbox
from actors.replies import ClientSummary

logger = logging.getLogger(__name__)


class Mailbox:
    """A client actor's inbox on the gevent hub: a list, and its reader greenlet while it
    waits (~120 bytes; gevent's Queue holds three deques, 2.5 KB). One reader, the actor's
    greenlet; the writers run on the same hub, so no lock: no method yields between looking
    and changing. The reader parks on the hub itself (no Event): a parked greenlet keeps its
    C stack, and every call level on the way down to the switch is bytes per stream."""
    __slots__ = ("_items", "_reader", "_hub")

    def __init__(self, hub):
        self._items: list = []
        self._reader = None
        self._hub = hub

    def put(self, envelope, /) -> None:
        self._items.append(envelope)
        reader = self._reader
        if reader is not None:
            self._reader = None
            self._hub.loop.run_callback(reader.switch)

    def get(self):
        items = self._items
        while not items:
            self._reader = getcurrent()
            self._hub.switch()
        return items.pop(0)

    def empty(self) -> bool:
        return not self._items


_RUNNING: dict = {}       # the refs of this process's running client actors (keys), in order


def running() -> list[pykka.ActorRef]:
    """The refs of the client actors running now, the oldest first."""
    return list(_RUNNING)


def every_actor() -> list[pykka.ActorRef]:
    """Every running actor: pykka's registry (the core actors) and the clients."""
    return [*pykka.ActorRegistry.get_all(), *_RUNNING]


class ClientRef(pykka.ActorRef):
    """A client actor's ref: a message told to a client that has stopped is dropped. The broker
    learns that a stream ended only from the Unsubscribe its actor tells as it stops; until it
    reads it, it may still tell the client Close (a slow client reported, a drain share, an
    expiry), and pykka stops an actor that raises on a told message: the broker, and with it
    every stream of the worker. A Close to a stream that has ended has nothing left to do."""

    def tell(self, message) -> None:
        try:
            super().tell(message)
        except pykka.ActorDeadError:
            pass


class ClientActor(pykka.ThreadingActor):
    """One stream's state: `info` (id, address, filter, framing), `outbox` (its buffer, and the
    counters `sent`, `dropped`, `last_id`), `close_reason`; and its control: Close, stop."""

    @staticmethod
    def _create_actor_inbox():
        gevent = hub.patched()
        return Mailbox(gevent.get_hub()) if gevent else pykka.ThreadingActor._create_actor_inbox()

    @staticmethod
    def _create_future():
        return hub.create_future()

    @classmethod
    def start(cls, **kwargs) -> pykka.ActorRef:
        """pykka's start, with the ref kept in this module's dict instead of its registry."""
        actor = cls(**kwargs)
        _RUNNING[actor.actor_ref] = None
        actor._start_actor_loop()
        return actor.actor_ref

    def _stop(self) -> None:
        """pykka's _stop, without its registry."""
        self._forget()
        try:
            self.on_stop()
        except Exception:  # noqa: BLE001 - as pykka's: the failure is handled, not raised
            self._handle_failure(*sys.exc_info())

    def _handle_failure(self, exception_type, exception_value, traceback) -> None:
        """pykka's, without its registry: a handler's error is logged and stops the actor."""
        logger.error("client actor %s failed", self.info.id,
                     exc_info=(exception_type, exception_value, traceback))
        self._forget()

    def _forget(self) -> None:
        _RUNNING.pop(self.actor_ref, None)
        self.actor_stopped.set()

    def _start_actor_loop(self) -> None:
        gevent = hub.patched()
        if gevent:
            gevent.spawn_raw(self._run)
        else:
            super()._start_actor_loop()

    def _run(self) -> None:
        """The actor's loop on its raw greenlet. pykka's loop catches every error of a
        handler; whatever still escapes ends this actor only (a raw greenlet's error would
        reach the hub)."""
        try:
            self._actor_loop()
        except BaseException:  # noqa: BLE001
            self._handle_failure(*sys.exc_info())

    def __init__(self, *, info: ClientInfo, outbox: Outbox, broker):
        # pykka's Actor.__init__, but named by the client's id (not a new uuid4) and with one ref
        self.actor_urn = f"urn:sse-client:{info.id}"
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = threading.Event()
        self._actor_ref = ClientRef(self)
        self.info = info
        self.outbox = outbox
        """Owned by this actor, which closes it. Three more greenlets use it without locks: the
        broker offers events and pushes control frames into it, the replay actor offers a
        resume's events (replay_queue.Job.flush), the stream's response takes them out and
        counts them written. That is safe because all four run on the worker's one gevent hub
        and no Outbox method yields: each call runs to its end before another greenlet runs."""
        self.broker = broker            # subscribed by the gateway (Gateway.open_stream)
        self.close_reason: str | None = None

    def on_receive(self, message):
        match message:
            case Close(reason=reason, final=final):
                self.close_reason = reason
                self.outbox.close(reason, final or framing.comment(f"closing: {reason}"))
            case _:
                return super().on_receive(message)

    def on_failure(self, exception_type, exception_value, traceback):
        """A handler's error (pykka logged it) stops the actor without on_stop: end the
        stream as a stop would. Else it went on receiving events and nothing could end it any
        more (each Close to a dead actor is dropped), nor would the broker learn it was gone."""
        self.on_stop()

    def on_stop(self):
        try:
            self.broker.tell(Unsubscribe(self.info.id))
        except pykka.ActorDeadError:
            pass  # shutting down: the broker is gone already
        self.outbox.close(self.close_reason or "stream ended")


def summary(info: ClientInfo, outbox: Outbox) -> ClientSummary:
    """A client as GetClients lists it, from the state its ClientActor holds."""
    flt = info.filter
    return ClientSummary(
        id=info.id,
        remote_addr=info.remote_addr,
        user_agent=info.user_agent,
        filter=flt.describe(),
        event_types=tuple(map(mask_credentials, flt.event_types)),     # as describe() does
        sources=tuple(map(mask_credentials, flt.sources)),
        connected_at=info.connected_at,
        events_sent=outbox.sent,
        events_dropped=outbox.dropped,
        last_event_id=outbox.last_id or "",
        subject=info.subject or "",
        scope=info.scope,
        opened=info.opened,
    )
