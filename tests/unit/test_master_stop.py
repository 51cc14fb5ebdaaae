"""The master's stop (SIGTERM) against a step of the wall clock (a clock-step audit)."""
import queue
import signal
import time
from types import SimpleNamespace

from gunicorn.arbiter import Arbiter

from web import serve


def _arbiter(exits_after: float) -> SimpleNamespace:
    """What Arbiter.stop reads of its arbiter: one worker, which exits `exits_after` seconds
    after it is told to (by the monotonic clock)."""
    told: list[float] = []
    kills: list[tuple[int, int]] = []      # (signal, workers still running then)
    fake = SimpleNamespace(LISTENERS=[], reexec_pid=0, master_pid=0, systemd=False,
                           cfg=SimpleNamespace(reuse_port=False, graceful_timeout=5),
                           dirty_arbiter_pid=0, WORKERS={4242: object()},
                           SIG_QUEUE=queue.Queue(), kills=kills,
                           log=SimpleNamespace(info=lambda *args: None),
                           reap_dirty_arbiter=lambda: None)

    def kill_workers(sig):
        kills.append((sig, len(fake.WORKERS)))
        told.append(time.monotonic())

    def reap_workers():
        if told and time.monotonic() - told[0] >= exits_after:
            fake.WORKERS.clear()

    fake.kill_workers, fake.reap_workers = kill_workers, reap_workers
    return fake


def test_a_step_of_the_wall_clock_during_the_drain_does_not_kill_the_workers(monkeypatch):
    """gunicorn's stop() gave the workers graceful_timeout by the wall clock: stepped 10
    minutes forward during a drain, every worker was SIGKILLed at once (no stream got its
    closing comment, the drain's spread was lost); stepped back, a hung worker held the
    instance for the step's length."""
    fake = _arbiter(exits_after=0.3)
    real = time.time
    calls = []

    def stepping():                 # the wall clock steps 10 minutes once stop() has begun
        calls.append(1)
        return real() + (600 if len(calls) > 1 else 0)

    monkeypatch.setattr(time, "time", stepping)
    serve.stop_on_monotonic(lambda graceful=True: Arbiter.stop(fake, graceful))
    assert fake.kills[0] == (signal.SIGTERM, 1)
    assert fake.kills[-1] == (signal.SIGKILL, 0), "workers killed while draining"


def test_the_master_stops_on_the_monotonic_clock_and_puts_the_wall_clock_back():
    import gunicorn.arbiter
    fake = _arbiter(exits_after=0.1)
    seen = []
    serve.stop_on_monotonic(lambda graceful=True: seen.append(gunicorn.arbiter.time.time()))
    assert abs(seen[0] - time.monotonic()) < 1 and gunicorn.arbiter.time is time
    assert fake.WORKERS      # untouched: only the clock was looked at


def test_a_workers_drain_is_timed_by_the_monotonic_clock(monkeypatch):
    """gunicorn's gevent worker timed its drain after SIGTERM with time.time() too
    (GeventWorker.run: `while time.time() - ts <= graceful_timeout`): a step forward cut every
    stream still draining at once, without its closing comment (the review). The worker reads
    the monotonic clock there."""
    from gunicorn.workers import ggevent

    from web import worker
    monkeypatch.setattr(ggevent, "time", time)          # restored after
    monkeypatch.setattr(time, "time", lambda: 1.8e9 + 600)
    worker.drain_on_monotonic()
    assert abs(ggevent.time.time() - time.monotonic()) < 1
    assert ggevent.time.sleep is time.sleep
