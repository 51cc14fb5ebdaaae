"""Starting and stopping the actor system, in order, plus the one timer that drives it.

start(settings) -> System; stop(system). Start-up is all-or-nothing: when an actor fails to
start, the ones already started are stopped (in reverse) and the error goes on. The system
owns its ticker thread (heartbeats and the watchdog): start() starts it, stop() ends it. A
core actor that dies is a bug: the watchdog logs it and calls `on_fatal`, which under
gunicorn retires the worker so it is replaced.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field

import pykka

from actors.broker import BrokerActor
from actors.client import every_actor, running as client_actors
from actors.consumer import KafkaConsumerActor
from actors.history import HistoryActor
from actors.limiter import RateLimiterActor
from actors.shared_limits import LIMITS_FILE, SharedLimits
from actors.refs import QuietRef
from actors.replay import ReplayActor
from actors.settings import Settings
from actors.messages import Close, CloseAll, ExpireStreams, GetHealth, SendHeartbeats

logger = logging.getLogger(__name__)

EXPIRY_INTERVAL_S = 1.0      # how often streams are checked for an expired credential


@dataclass
class System:
    settings: Settings
    history: pykka.ActorRef
    broker: pykka.ActorRef
    consumer: pykka.ActorRef
    replay: pykka.ActorRef
    limiter: pykka.ActorRef
    stopping: threading.Event = field(default_factory=threading.Event)
    ticker: threading.Thread | None = None

    @property
    def core(self):
        return {"history": self.history, "broker": self.broker, "consumer": self.consumer,
                "replay": self.replay, "limiter": self.limiter}


def start(settings, *, on_fatal=None) -> System:
    started: list[pykka.ActorRef] = []

    def run(actor_class, **kwargs):
        ref = actor_class.start(**kwargs)
        started.append(ref)
        return ref

    shared = None
    try:
        shared = _shared_limits(settings)
        limiter = run(RateLimiterActor, settings=settings, shared=shared)
        history = run(HistoryActor, size=settings.sse_history_size, topics=settings.kafka_topics)
        replay = run(ReplayActor, settings=settings)
        broker = run(BrokerActor, history=QuietRef(history), kafka_reader=QuietRef(replay),
                     topics=settings.kafka_topics)
        consumer = run(KafkaConsumerActor, settings=settings, broker=QuietRef(broker))
    except BaseException:
        logger.error("the actor system did not start; stopping the %d actor(s) started",
                     len(started))
        for ref in reversed(started):
            _stop_actor(ref, timeout=5.0)
        if shared is not None:
            shared.close()
        raise
    system = System(settings, history, broker, consumer, replay, limiter)
    system.ticker = threading.Thread(target=_tick, args=(system, on_fatal), name="ticker",
                                     daemon=True)
    system.ticker.start()
    logger.info("actor system started: topics %s, brokers %s", ",".join(settings.kafka_topics),
                ",".join(settings.kafka_brokers))
    return system


def _shared_limits(settings) -> SharedLimits | None:
    """The instance's shared limits when the workers of a gunicorn master make one instance
    (an instance dir, however many workers), else None: the limiter keeps its counts to itself."""
    directory = getattr(settings, "sse_instance_dir", "")
    if not directory:
        return None
    return SharedLimits.attach(os.path.join(directory, LIMITS_FILE), settings)


def _tick(system: System, on_fatal) -> None:
    """Heartbeats to every client, expiry of streams whose credential ran out (every second
    while auth is on), and a watchdog over the core actors."""
    interval = system.settings.sse_heartbeat_seconds
    next_beat = time.monotonic() + interval
    expiring = getattr(system.settings, "auth_mode", "off") != "off"
    next_expiry = time.monotonic() + EXPIRY_INTERVAL_S
    while not system.stopping.wait(0.5):
        dead = [name for name, ref in system.core.items() if not ref.is_alive()]
        if dead:
            logger.critical("core actor(s) %s stopped unexpectedly (a bug: please report it "
                            "with the traceback logged before); giving up this worker, whose "
                            "streams resume on the one that replaces it", ", ".join(dead))
            if on_fatal is not None:
                on_fatal(f"actor {', '.join(dead)} died")
            return
        if time.monotonic() >= next_beat:
            next_beat += interval
            system.broker.tell(SendHeartbeats())
        if expiring and time.monotonic() >= next_expiry:
            next_expiry = time.monotonic() + EXPIRY_INTERVAL_S
            system.broker.tell(ExpireStreams())


DRAIN_STEPS_PER_SECOND = 10


def close_streams(system: System, reason: str = "server shutting down", over: float = 0.0,
                  sleep=time.sleep) -> None:
    """End every open stream (each gets a final comment), spread evenly over `over` seconds
    (SSE_DRAIN_SECONDS) so their clients do not all reconnect at once; the actors keep running.
    A broker that died (a bug: the worker retires) cannot do it: each client's actor is told
    instead. Else the streams stayed open, receiving nothing, until gunicorn's graceful
    timeout cut them."""
    steps = max(1, int(over * DRAIN_STEPS_PER_SECOND))
    clients = None       # the broker's stand-in: the client actors still to close
    for step in range(steps):
        share = 1.0 / (steps - step)
        if clients is None:
            try:
                system.broker.tell(CloseAll(reason, share))
            except pykka.ActorDeadError:
                clients = client_actors()
        if clients is not None:
            count = math.ceil(len(clients) * share)
            for ref in clients[:count]:
                ref.tell(Close(reason))          # a client stopped meanwhile: dropped
            del clients[:count]
        if step < steps - 1:
            sleep(over / steps)


def stop(system: System, timeout: float = 5.0) -> None:
    """Stop in order: streams and clients, consumer, replay, broker, history, limiter; then
    sweep whatever is left."""
    system.stopping.set()
    ticker, system.ticker = system.ticker, None
    if ticker is not None and ticker is not threading.current_thread():
        ticker.join(timeout)
    close_streams(system)
    _wait_for(system.broker, timeout)     # each client is told to close before it is stopped
    for ref in client_actors():
        ref.stop(block=False)
    for ref in (system.consumer, system.replay, system.broker, system.history, system.limiter):
        _stop_actor(ref, timeout)
    leftovers = every_actor()
    if leftovers:
        logger.info("stopping %d remaining actor(s)", len(leftovers))
        for ref in leftovers:
            _stop_actor(ref, timeout)
    logger.info("actor system stopped")


def _wait_for(ref, timeout: float) -> None:
    """Until `ref` has handled what it was told so far (one question through its mailbox)."""
    try:
        ref.ask(GetHealth(), timeout=timeout)
    except (pykka.ActorDeadError, pykka.Timeout):
        pass


def _stop_actor(ref, timeout: float) -> None:
    try:
        ref.stop(timeout=timeout)
    except pykka.ActorDeadError:
        pass
    except Exception as exc:  # noqa: BLE001 - keep stopping the rest
        logger.error("stopping %s: %s", ref, exc)
