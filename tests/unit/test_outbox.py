from actors.outbox import Outbox


def test_a_batch_of_any_size_is_accepted_while_the_socket_keeps_up():
    box = Outbox(3, max_bytes=10_000, patience=5.0)
    assert box.offer(b"a" * 200, 200, "200", now=0.0)     # far more events than the capacity
    assert box.offer(b"b" * 200, 200, "400", now=4.9)     # waiting, but not for long
    assert box.take(0) == (b"a" * 200 + b"b" * 200, 400, "400")
    assert box.offer(b"c", 1, "401", now=100.0)           # taken: the clock starts again
    assert box.dropped == 0 and box.queued == 1


def test_events_that_wait_too_long_for_the_socket_make_the_client_slow():
    box = Outbox(3, max_bytes=10_000, patience=5.0)
    assert box.offer(b"ab", 2, "2", now=0.0)
    assert box.offer(b"cd", 2, "4", now=1.0)              # over the capacity, but only 1 s old
    assert not box.lagging(4.9) and box.lagging(5.0)
    assert not box.offer(b"e", 1, "5", now=5.0)
    assert box.dropped == 1 and box.queued == 4


def test_few_events_may_wait_as_long_as_they_like():
    box = Outbox(3, max_bytes=10_000, patience=5.0)
    assert box.offer(b"ab", 2, "2", now=0.0)
    assert box.offer(b"c", 1, "3", now=60.0) and not box.lagging(60.0)


def test_bytes_beyond_the_budget_make_the_client_slow_at_once():
    box = Outbox(100, max_bytes=1000, patience=5.0)
    assert box.offer(b"x" * 5000, 1, "1", now=0.0)        # nothing waits: a write is possible
    assert not box.offer(b"y" * 10, 1, "2", now=0.0)
    assert box.lagging(0.0, 10, 1) and not box.lagging(0.0)      # only an offer is judged
    box.take(0)
    assert box.offer(b"y" * 900, 1, "2", now=0.0) and not box.offer(b"z" * 101, 1, "3", now=0.0)


def test_heartbeats_do_not_count_and_close_drains_first():
    box = Outbox(1)
    box.offer(b"x", 1, "1")
    box.push_control(b": hb\n")
    box.close("bye", b": closing\n")
    assert not box.finished
    assert box.take(0) == (b"x: hb\n: closing\n", 1, "1")
    assert box.finished and box.closed_reason == "bye"
    assert not box.offer(b"y", 1, "2")


def test_forced_offers_are_never_refused():
    box = Outbox(1, max_bytes=10, patience=0.0)
    assert box.offer(b"a" * 20, 5, "5", now=0.0)
    assert box.offer(b"b" * 20, 5, "10", force=True, now=9.0)
    assert box.queued == 10


def test_written_tracks_sent_and_last_id():
    box = Outbox(5)
    box.written(3, "c")
    box.written(0, None)
    assert (box.sent, box.last_id) == (3, "c")


UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import time
import gevent
from gevent.monkey import get_original
from actors.outbox import HubSignal, Outbox

box = Outbox(10)
assert type(box._wake) is HubSignal
got = []
reader = gevent.spawn(lambda: got.append(box.take()))
gevent.sleep(0.01)
assert not got                                      # it waits for data
box.offer(b"a", 1, "1")
box.push_control(b": hb\n")                         # one wake-up for both
reader.join(2)
assert got == [(b"a: hb\n", 1, "1")]

closing = gevent.spawn(box.take)
gevent.sleep(0.01)
box.close("bye")                                    # a close wakes the stream too
assert closing.get(timeout=2) == (b"", 0, None) and box.finished

started = time.monotonic()
assert Outbox(10).take(0.05) == (b"", 0, None) and time.monotonic() - started >= 0.04

# A wait ended by its timer, then a wake-up from a greenlet the same loop turn runs next: it
# must not resume the waiter where it waits for something else by then (here: a sleep).
late = Outbox(10)
slept = []
def waits_then_sleeps():
    late.take(0.01)
    started = time.monotonic()
    gevent.sleep(0.1)
    slept.append(time.monotonic() - started)
def offers_later():
    gevent.sleep(0.01)                              # its timer expires just after the wait's
    late.offer(b"x", 1, "1")
sleeper = gevent.spawn(waits_then_sleeps)
gevent.sleep(0)
offerer = gevent.spawn(offers_later)
gevent.sleep(0)
get_original("time", "sleep")(0.03)                 # the hub is blocked past both timers
gevent.joinall([sleeper, offerer], timeout=2)
assert slept and slept[0] >= 0.09, slept
print("ok")
'''


def test_under_gevent_the_stream_parks_on_the_hub_and_wakes_once_per_reason():
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]
