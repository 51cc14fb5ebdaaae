"""Starting and stopping the actor system, in order, plus the one timer that drives it.

start(settings) -> System; stop(system). A core actor that dies is a bug: the watchdog
logs it and calls `on_fatal`, which under gunicorn retires the worker so it is replaced.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import pykka

from actors.broker import BrokerActor
from actors.client import ClientActor
from actors.consumer import KafkaConsumerActor
from actors.history import HistoryActor
from actors.limiter import RateLimiterActor
from actors.replay import ReplayActor
from actors.settings import Settings
from actors.messages import Beat, CloseAll

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0


@dataclass
class System:
    settings: Settings
    history: pykka.ActorRef
    broker: pykka.ActorRef
    consumer: pykka.ActorRef
    replay: pykka.ActorRef
    limiter: pykka.ActorRef
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def core(self):
        return {"history": self.history, "broker": self.broker, "consumer": self.consumer,
                "replay": self.replay, "limiter": self.limiter}


def start(settings, *, on_fatal=None) -> System:
    limiter = RateLimiterActor.start(settings=settings)
    history = HistoryActor.start(size=settings.sse_history_size, topics=settings.kafka_topics)
    replay = ReplayActor.start(settings=settings)
    broker = BrokerActor.start(history=history, replay=replay, topics=settings.kafka_topics)
    consumer = KafkaConsumerActor.start(settings=settings, broker=broker)
    system = System(settings, history, broker, consumer, replay, limiter)
    ticker = threading.Thread(target=_tick, args=(system, on_fatal), name="ticker", daemon=True)
    ticker.start()
    logger.info("actor system started: topics %s, brokers %s", ",".join(settings.kafka_topics),
                ",".join(settings.kafka_brokers))
    return system


def _tick(system: System, on_fatal) -> None:
    """Heartbeats to every client, and a watchdog over the core actors."""
    interval = system.settings.sse_heartbeat_seconds
    next_beat = time.monotonic() + interval
    while not system.stopping.wait(0.5):
        dead = [name for name, ref in system.core.items() if not ref.is_alive()]
        if dead:
            logger.critical("core actor(s) %s stopped unexpectedly; giving up this worker",
                            ", ".join(dead))
            if on_fatal is not None:
                on_fatal(f"actor {', '.join(dead)} died")
            return
        if time.monotonic() >= next_beat:
            next_beat += interval
            system.broker.tell(Beat())


def close_streams(system: System, reason: str = "server shutting down") -> None:
    """End every open stream (each gets a final comment); the actors keep running."""
    if system.broker.is_alive():
        system.broker.tell(CloseAll(reason))


def stop(system: System, timeout: float = 5.0) -> None:
    """Stop in order: streams and clients, consumer, replay, broker, history, limiter; then
    sweep whatever is left."""
    system.stopping.set()
    close_streams(system)
    for ref in pykka.ActorRegistry.get_by_class(ClientActor):
        ref.stop(block=False)
    for ref in (system.consumer, system.replay, system.broker, system.history, system.limiter):
        try:
            ref.stop(timeout=timeout)
        except pykka.ActorDeadError:
            pass
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            logger.error("stopping %s: %s", ref, exc)
    leftovers = pykka.ActorRegistry.get_all()
    if leftovers:
        logger.info("stopping %d remaining client actor(s)", len(leftovers))
        pykka.ActorRegistry.stop_all(timeout=timeout)
    logger.info("actor system stopped")
