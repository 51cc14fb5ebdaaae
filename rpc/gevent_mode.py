"""grpcio's gevent mode, with its wake-ups taken ahead of the hub's callback queue.

    init_gevent() -> bool       once, in a gevent-patched process (else False: gRPC keeps its
                                own threads, as in the unit tests)
    executor(max_workers)       the server's executor for that mode

In gevent mode grpcio waits on each completion queue in gevent's native thread pool, and its
server hands each call to an executor whose (patched) threads wait on a gevent queue. Both
wake their greenlet with a callback in the hub's queue: under load, behind every greenlet the
streams scheduled, and a call takes two such turns before its handler runs and another per
completion after. Here the greenlet waiting on the thread pool (PromptPool) and a handler's
start (PromptExecutor) and its wait for the request (a PromptCondition in grpcio's server
module) are woken by libev watchers of the highest priority instead, which the loop runs at
its next turn, as actors/prompt.py does for live delivery. Behind a 0.6 s backlog a call took
45 ms instead of 0.6 s (tests/unit/test_gevent_mode.py). In reconnect storms of 5,000 streams
(one worker, 2 runs each) 10 of 12 GetStats were answered, p50 0.7-1.3 s, against 3 of 6;
under steady load (3 interleaved runs) no change beyond the noise.
"""
from __future__ import annotations

import logging
import types
from collections import deque
from concurrent import futures

from greenlet import getcurrent, greenlet

from actors.prompt import PromptCondition, PromptEvent

logger = logging.getLogger(__name__)

_hub = None         # the hub grpcio's gevent mode was set up on, once it is


def init_gevent() -> bool:
    """grpcio's gevent mode with the prompt thread pool, once; True when it is on."""
    global _hub
    if _hub is None:
        try:
            from gevent import get_hub, monkey
        except ImportError:
            return False
        if not monkey.is_module_patched("threading"):
            return False
        import grpc.experimental.gevent as grpc_gevent
        grpc_gevent.init_gevent()
        hub = get_hub()
        _quicken(hub)
        _hub = hub
    return True


def _quicken(hub) -> None:
    """The prompt pool and Conditions, where this grpcio has what they replace (grpcio 1.85
    has); else grpcio's own gevent mode, said once."""
    import grpc
    from grpc import _server
    from grpc._cython import cygrpc
    pool = getattr(cygrpc, "g_gevent_threadpool", None)
    if not hasattr(pool, "apply") or not hasattr(_server, "threading"):
        logger.warning("grpcio %s lacks the parts rpc/gevent_mode.py replaces: management "
                       "calls to a busy worker wait behind its streams", grpc.__version__)
        return
    cygrpc.g_gevent_threadpool = PromptPool(pool, hub)
    _server.threading = _with_prompt_conditions(_server.threading)


def _with_prompt_conditions(threading_module):
    """The `threading` grpcio's server module sees: its Condition a PromptCondition."""
    shim = types.SimpleNamespace(**{name: getattr(threading_module, name)
                                    for name in dir(threading_module)
                                    if not name.startswith("__")})
    shim.Condition = PromptCondition
    return shim


def executor(max_workers: int) -> futures.Executor:
    """A PromptExecutor in gevent mode, else a thread pool."""
    if init_gevent():
        return PromptExecutor(_hub, max_workers)
    return futures.ThreadPoolExecutor(max_workers, thread_name_prefix="grpc")


class PromptPool:
    """What grpcio asks of gevent's thread pool: `apply(func, args)` in a native thread, the
    calling greenlet parked until the result is in."""

    def __init__(self, pool, hub):
        self._pool, self._hub = pool, hub

    def apply(self, func, args=(), kwds=None):
        hub, me = self._hub, getcurrent()
        outcome: list = []
        parked = [True]
        watcher = hub.loop.async_()
        watcher.priority = hub.loop.MAXPRI

        def woken():                    # on the hub, once the native thread is done
            watcher.close()
            if parked[0]:
                parked[0] = False
                me.switch()

        def run():                      # in the native thread
            try:
                outcome.append((True, func(*args, **(kwds or {}))))
            except BaseException as exc:  # noqa: BLE001 - carried to the caller
                outcome.append((False, exc))
            finally:
                watcher.send()

        watcher.start(woken)
        try:
            self._pool.spawn(run)
            while not outcome:
                hub.switch()
        finally:
            parked[0] = False
        ok, value = outcome[0]
        if ok:
            return value
        raise value


class PromptExecutor(futures.Executor):
    """grpcio's server executor: each call's handler a greenlet started at the loop's next
    turn; at most `max_workers` at once, the others started as those end."""

    def __init__(self, hub, max_workers: int):
        self._hub, self._max = hub, max_workers
        self._running = 0
        self._waiting: deque = deque()
        self._shut = False
        self._idle = PromptEvent()          # set when nothing runs or waits to

    def submit(self, fn, /, *args, **kwargs):
        if self._shut:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self._idle.clear()
        future: futures.Future = futures.Future()
        self._waiting.append((future, fn, args, kwargs))
        self._start_next()
        return future

    def _start_next(self) -> None:
        while self._waiting and self._running < self._max:
            future, fn, args, kwargs = self._waiting.popleft()
            self._running += 1
            handler = greenlet(self._runner(future, fn, args, kwargs), parent=self._hub)
            timer = self._hub.loop.timer(0.0)
            timer.priority = self._hub.loop.MAXPRI

            def start(timer=timer, handler=handler):
                timer.close()
                handler.switch()
            timer.start(start)

    def _runner(self, future, fn, args, kwargs):
        def run():
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # noqa: BLE001 - the future carries it
                        future.set_exception(exc)
            finally:
                self._running -= 1
                self._start_next()
                if not (self._running or self._waiting):
                    self._idle.set()
        return run

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._shut = True
        if cancel_futures:
            while self._waiting:
                self._waiting.popleft()[0].cancel()
        if wait:
            while self._running or self._waiting:
                self._idle.wait()
