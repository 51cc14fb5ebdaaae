"""Pykka's waiting on the gevent hub, for the actors asked on every stream open and close.

Under gevent's patching pykka's ThreadingFuture is a Condition over patched locks (pure
Python): an ask of the limiter cost ~140 µs with it and ~20 µs with gevent's AsyncResult
(py-spy, issue 15). Outside a patched process (the unit tests) pykka's own are used.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, NamedTuple

import pykka


class Gevent(NamedTuple):
    AsyncResult: Callable[[], Any]
    Queue: Callable[[], Any]
    spawn_raw: Callable[..., Any]
    get_hub: Callable[[], Any]


_gevent: Gevent | None | bool = False     # False: not looked up yet


def patched() -> Gevent | None:
    """gevent's parts when the process is patched (looked up once), else None."""
    global _gevent
    if _gevent is False:
        try:
            from gevent import get_hub, monkey, spawn_raw
            from gevent.event import AsyncResult
            from gevent.queue import Queue
            _gevent = (Gevent(AsyncResult, Queue, spawn_raw, get_hub)
                       if monkey.is_module_patched("threading") else None)
        except ImportError:
            _gevent = None
    return _gevent   # type: ignore[return-value]


class HubFuture(pykka.Future):
    """An answer on the gevent hub: gevent's AsyncResult instead of a Condition."""

    def __init__(self):
        super().__init__()
        gevent = patched()
        assert gevent is not None, "a HubFuture needs gevent's patching"
        self._result = gevent.AsyncResult()

    def get(self, *, timeout: float | None = None):
        try:
            return super().get(timeout=timeout)        # a get hook, if one was set
        except NotImplementedError:
            pass
        result = self._result
        if not result.ready():
            result.wait(timeout)       # returns at the timeout: only its own timer is caught
            if not result.ready():
                raise pykka.Timeout(f"{timeout} seconds")
        return result.get(block=False)

    def set(self, value=None) -> None:
        self._result.set(value)

    def set_exception(self, exc_info=None) -> None:
        exc_info = exc_info or sys.exc_info()
        self._result.set_exception(exc_info[1], exc_info=exc_info)


def create_future() -> pykka.Future:
    """For an actor's `_create_future`: a HubFuture under gevent, else pykka's own."""
    return HubFuture() if patched() else pykka.ThreadingFuture()
