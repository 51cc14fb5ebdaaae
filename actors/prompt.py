"""Live delivery's waits, woken ahead of the gevent hub's callback queue.

gevent wakes a greenlet parked on an Event, a lock or a queue with a callback, and its hub
runs callbacks in order. In a reconnect storm that queue holds thousands of opening streams
(7,600-8,400 measured), and the Kafka consumer, whose every poll ends with such a wake-up,
got its turn 0.5-2 s late: live delivery stalled (bench: the storm's p99 per 250 ms). Here
the greenlets of live delivery are woken by libev watchers of the highest priority instead,
which the loop runs at its next turn, within gevent's switch interval (~5 ms) of callbacks:
- the broker's mailbox (PromptMailbox, an async watcher);
- the wait of kafka-python's selector on its sockets (PromptSelector, its io watchers);
- the Event through which kafka-python's IO greenlet hands each result to the consumer
  (PromptEvent, a zero timer).
A hand-over between two of these greenlets costs no turn at all (_Relay): one poll of the
consumer is four of them, and at one turn each it took 70-150 ms in a storm (traced).
The broker reads the consumer's messages first and yields the hub after a slice of work
(PromptMailbox): the history hand-overs of 5,000 reconnecting streams (~0.1 ms each) kept it
from the consumer for 0.3-0.5 s at the end of a storm (traced).
Everything here runs on one hub thread (the gunicorn worker's); without gevent's patching
none of it is used.
"""
from __future__ import annotations

import threading
import time
import types
from collections import deque
from time import monotonic

import pykka
from greenlet import getcurrent

from actors import hub as gevent_hub


def _soon(hub, callback, *args) -> None:
    """Run `callback(*args)` on the hub at the loop's next turn, among its first watchers."""
    timer = hub.loop.timer(0.0)
    timer.priority = hub.loop.MAXPRI

    def fire():
        timer.close()
        callback(*args)
    timer.start(fire)


class _Wait:
    """One greenlet parked on the hub until resume() (once; later calls do nothing)."""
    __slots__ = ("greenlet", "waiting")

    def __init__(self):
        self.greenlet = getcurrent()
        self.waiting = True

    def resume(self) -> None:
        if self.waiting:
            self.waiting = False
            self.greenlet.switch()

    def park(self, hub, timeout: float | None) -> None:
        timer = None
        if timeout is not None:
            hub.loop.update_now()       # the cached time lags by as long as this greenlet ran
            timer = hub.loop.timer(max(0.0, timeout))
            timer.priority = hub.loop.MAXPRI
            timer.start(self.resume)
        try:
            _relay(hub).park()
        finally:
            self.waiting = False
            if timer is not None:
                timer.close()


class _Relay:
    """The greenlets of one hub that another greenlet (not the hub) woke: the next greenlet to
    park switches straight to the latest of them instead of to the hub, so a hand-over between
    two greenlets (kafka-python's IO greenlet and the consumer, the consumer and the broker)
    costs no turn of the loop. At most RUN switches in a row; then the hub has its turn. Each
    of them is also woken by a watcher (`_soon`, the mailbox's), whichever comes first."""
    RUN = 8
    __slots__ = ("hub", "woken", "run")

    def __init__(self, hub):
        self.hub = hub
        self.woken: deque[_Wait] = deque(maxlen=64)
        self.run = 0

    def add(self, wait: _Wait) -> None:
        self.woken.append(wait)

    def park(self) -> None:
        woken, me = self.woken, getcurrent()
        while woken and self.run < self.RUN:
            wait = woken.pop()
            if wait.waiting and wait.greenlet is not me:
                self.run += 1
                wait.resume()
                return
        self.run = 0
        self.hub.switch()


_relays: dict = {}


def _relay(hub) -> _Relay:
    relay = _relays.get(hub)
    if relay is None:
        relay = _relays[hub] = _Relay(hub)
    return relay


def turn() -> None:
    """Let the loop take a turn (its sockets and timers too) before going on. A plain yield,
    time.sleep(0), is a callback: the hub runs callbacks until none is left, looking at the
    clock only every 50 of them, so a greenlet that works in slices and yields so kept
    the loop from its sockets for 50 slices (a replay of 20 ms slices held live delivery 1 s).
    Without gevent's patching, a plain yield."""
    gevent = gevent_hub.patched()
    if gevent is None:
        time.sleep(0)
    else:
        _Wait().park(gevent.get_hub(), 0)


class PromptMailbox:
    """An actor's inbox whose reader (one greenlet, the actor's) is woken by an async watcher.
    The writers run on the same hub: no lock.

    Messages of the `urgent` types (one sender's: their order is kept) are read ahead of the
    others, which get OTHERS_S after each urgent one: the broker delivers a Kafka batch before
    the thousands of history hand-overs of a reconnect storm, and still handed over 2,200-3,100
    a second while the batches took most of its time (traced)."""
    OTHERS_S = 0.01
    SLICE_S = 0.01
    __slots__ = ("_items", "_urgent", "_urgent_types", "_others_until", "_lent", "_since",
                 "_reader", "_hub", "_relay", "_watcher")

    def __init__(self, hub, urgent: tuple[type, ...] = ()):
        self._items: deque = deque()
        self._urgent: deque = deque()
        self._urgent_types = urgent
        self._others_until = 0.0
        self._lent = False              # the last message read was urgent
        self._since = 0.0               # when the reader last waited
        self._reader: _Wait | None = None
        self._hub = hub
        self._relay = _relay(hub)
        self._watcher = hub.loop.async_()
        self._watcher.priority = hub.loop.MAXPRI
        self._watcher.start(self._wake)
        self._watcher.ref = False       # a waiting mailbox does not keep the loop running

    def put(self, envelope, /) -> None:
        if self._urgent_types and isinstance(envelope.message, self._urgent_types):
            self._urgent.append(envelope)
        else:
            self._items.append(envelope)
        reader = self._reader
        if reader is not None:
            self._watcher.send()
            if getcurrent() is not self._hub:
                self._relay.add(reader)

    def _wake(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.resume()

    def get(self):
        if self._items or self._urgent:
            now = monotonic()
            if now - self._since >= self.SLICE_S:
                _Wait().park(self._hub, 0)      # busy for a slice: a turn of the loop for others
                now = self._since = monotonic()
        else:
            while not (self._items or self._urgent):
                self._reader = _Wait()
                self._reader.park(self._hub, None)
                self._reader = None
            now = self._since = monotonic()
        return self._next(now)

    def _next(self, now: float):
        if not self._urgent:
            return self._items.popleft()
        if self._lent:                  # an urgent one was handled: the others' turn
            self._lent = False
            self._others_until = now + self.OTHERS_S
        if self._items and now < self._others_until:
            return self._items.popleft()
        self._lent = True
        return self._urgent.popleft()

    def empty(self) -> bool:
        return not (self._items or self._urgent)


def inbox(urgent: tuple[type, ...] = ()):
    """For an actor's `_create_actor_inbox`: a PromptMailbox under gevent, else pykka's own."""
    gevent = gevent_hub.patched()
    if gevent is None:
        return pykka.ThreadingActor._create_actor_inbox()
    return PromptMailbox(gevent.get_hub(), urgent)


class PromptEvent:
    """threading.Event for greenlets of one hub; its waiters wake ahead of the hub's callbacks."""

    def __init__(self):
        gevent = gevent_hub.patched()
        assert gevent is not None, "a PromptEvent needs gevent's patching"
        self._hub = gevent.get_hub()
        self._relay = _relay(self._hub)
        self._flag = False
        self._waits: list[_Wait] = []

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        """Its waiters resume at once when set on the hub (an io watcher's callback), else when
        the setting greenlet parks (_Relay) or at the loop's next turn, whichever is first."""
        self._flag = True
        waits, self._waits = self._waits, []
        on_hub = getcurrent() is self._hub
        for wait in waits:
            if on_hub:
                wait.resume()
            else:
                self._relay.add(wait)
                _soon(self._hub, wait.resume)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """True when set (if cleared since), False at the timeout."""
        if self._flag:
            return True
        wait = _Wait()
        self._waits.append(wait)
        try:
            wait.park(self._hub, timeout)
        finally:
            timed_out = wait in self._waits         # set() takes its waiters off the list
            if timed_out:
                self._waits.remove(wait)
        return not timed_out or self._flag


class PromptCondition:
    """threading.Condition for greenlets of one hub; a notified waiter wakes ahead of the hub's
    callbacks, once the notifier parks or at the loop's next turn (never inside the notifier's
    hold of the lock). grpcio's server has each call's handler wait on one for its request."""

    def __init__(self, lock=None):
        gevent = gevent_hub.patched()
        assert gevent is not None, "a PromptCondition needs gevent's patching"
        self._hub = gevent.get_hub()
        self._relay = _relay(self._hub)
        self._lock = lock if lock is not None else threading.RLock()
        self._waits: list[_Wait] = []
        self.acquire, self.release = self._lock.acquire, self._lock.release
        lock = self._lock               # threading.Condition's ways, for any lock
        self._release_save = getattr(lock, "_release_save", self._release_plain)
        self._acquire_restore = getattr(lock, "_acquire_restore", self._acquire_plain)
        self._is_owned = getattr(lock, "_is_owned", self._is_owned_plain)

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def wait(self, timeout: float | None = None) -> bool:
        """True when notified, False at the timeout; the lock is held again either way."""
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        wait = _Wait()
        self._waits.append(wait)
        saved = self._release_save()
        try:
            wait.park(self._hub, timeout)
        finally:
            self._acquire_restore(saved)
            timed_out = wait in self._waits         # notify() takes its waiters off the list
            if timed_out:
                self._waits.remove(wait)
        return not timed_out

    # with a lock that is not an RLock (threading.Condition's fallbacks)
    def _release_plain(self) -> None:
        self._lock.release()

    def _acquire_plain(self, _saved) -> None:
        self._lock.acquire()

    def _is_owned_plain(self) -> bool:
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def notify(self, n: int = 1) -> None:
        waits, self._waits = self._waits[:n], self._waits[n:]
        for wait in waits:
            self._relay.add(wait)
            _soon(self._hub, wait.resume)

    def notify_all(self) -> None:
        self.notify(len(self._waits))

    notifyAll = notify_all


def selector_class():
    """kafka-python's `selector` under gevent: gevent's GeventSelector whose select() waits on a
    PromptEvent (its io watchers already run at the highest priority); None unpatched."""
    if gevent_hub.patched() is None:
        return None
    from gevent.selectors import GeventSelector

    class PromptSelector(GeventSelector):
        def __init__(self, hub=None):
            super().__init__(hub)
            self._ready = PromptEvent()     # set by the io watchers' callback, on the hub

        def select(self, timeout=None):
            """GeventSelector.select, with the same watchers' life cycle."""
            for fd, watcher in self._inactive_watchers.items():
                watcher.start(self._GeventSelector__callback, fd, pass_events=True)
            self._active_watchers.update(self._inactive_watchers)
            self._inactive_watchers.clear()
            if self._ready.is_set():    # events are in: still one turn of the loop for the
                _Wait().park(self.hub, 0)   # others, as gevent's select gives them
            else:
                self._ready.wait(timeout)
            self._ready.clear()
            result = []
            for fd, event in self._accumulated_events.items():
                key = self._key_from_fd(fd)
                watcher = self._active_watchers.pop(fd)
                watcher.stop()
                if key:
                    result.append((key, event & key.events))
                    self._inactive_watchers[fd] = watcher
                else:
                    watcher.close()
            self._accumulated_events.clear()
            return result

        def poke(self) -> None:
            """A task was queued from another greenlet: select() returns at once."""
            self._ready.set()
    return PromptSelector


def patch_kafka() -> None:
    """kafka-python's IO greenlet hands each result to its caller through threading.Event:
    under gevent, its module sees a `threading` whose Event is a PromptEvent. A caller hands a
    task to the IO greenlet with a byte on a socket pair (`wakeup`): it also pokes the
    PromptSelector, so the IO greenlet need not wait for the loop to see the byte. Once."""
    if gevent_hub.patched() is None:
        return
    from kafka.net import selector          # ImportError, AttributeError: kafka_client says so
    wakeup = selector.NetworkSelector.wakeup
    if getattr(selector.threading, "Event", None) is PromptEvent:
        return
    shim = types.SimpleNamespace(**{name: getattr(threading, name) for name in dir(threading)
                                    if not name.startswith("__")})
    shim.Event = PromptEvent
    selector.threading = shim

    def wakeup_promptly(self) -> None:
        wakeup(self)
        poke = getattr(self._selector, "poke", None)
        if poke is not None:
            poke()
    selector.NetworkSelector.wakeup = wakeup_promptly
