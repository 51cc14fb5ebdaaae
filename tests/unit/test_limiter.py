"""RateLimiterActor with a fake clock: refill, burst, stream caps, expiry, bounded memory."""
import tracemalloc

import pytest

from actors.client import every_actor
from actors.limiter import RateLimiterActor, TokenBuckets
from actors.messages import Admission, Admit, GetLimiterStats, Release
from actors.settings import Settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def _limiter(clock=None, max_buckets=10_000, **overrides):
    settings = Settings.defaults(**{"rate_limit_requests_per_min": 60, "rate_limit_burst_size": 10,
                                    **overrides})
    return RateLimiterActor(settings=settings, clock=clock or Clock(), max_buckets=max_buckets)


def _admit(limiter, address="10.0.0.1", stream=False) -> Admission:
    return limiter.on_receive(Admit(address, stream))


def test_a_burst_is_allowed_then_refused_with_the_wait():
    clock = Clock()
    limiter = _limiter(clock)
    assert all(_admit(limiter).allowed for _ in range(10))
    refused = _admit(limiter)
    assert refused == Admission(False, "rate_limited", 1)
    assert _admit(limiter, "10.0.0.2").allowed          # other addresses are unaffected


def test_tokens_refill_continuously_at_the_configured_rate():
    clock = Clock()
    limiter = _limiter(clock, rate_limit_requests_per_min=6)   # one token per 10 s
    for _ in range(10):
        _admit(limiter)
    refused = _admit(limiter)
    assert not refused.allowed and refused.retry_after == 10
    clock.advance(5)
    assert _admit(limiter).retry_after == 5
    clock.advance(5)
    assert _admit(limiter).allowed
    assert not _admit(limiter).allowed
    clock.advance(25)                                   # 2.5 tokens: two requests, not three
    assert [_admit(limiter).allowed for _ in range(3)] == [True, True, False]


def test_refill_never_exceeds_the_burst():
    clock = Clock()
    limiter = _limiter(clock)
    _admit(limiter)
    clock.advance(3600)
    assert [_admit(limiter).allowed for _ in range(11)] == [True] * 10 + [False]


def test_refused_requests_do_not_spend_tokens():
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(10):
        _admit(limiter)
    for _ in range(50):
        _admit(limiter)
    clock.advance(1)
    assert _admit(limiter).allowed


def test_disabled_limiting_admits_everything_but_still_caps_streams():
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients_per_ip=3)
    assert all(_admit(limiter).allowed for _ in range(1000))
    assert [_admit(limiter, stream=True).allowed for _ in range(4)] == [True] * 3 + [False]
    assert len(limiter.buckets) == 0


def test_per_address_stream_cap_and_release():
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients_per_ip=2)
    assert _admit(limiter, "a", stream=True).allowed
    assert _admit(limiter, "a", stream=True).allowed
    assert _admit(limiter, "a", stream=True) == Admission(False, "too_many_streams_per_ip", 5)
    assert _admit(limiter, "b", stream=True).allowed
    limiter.on_receive(Release("a"))
    assert _admit(limiter, "a", stream=True).allowed
    assert _admit(limiter, "a") .allowed                # a plain request needs no slot


def test_a_full_instance_is_said_once_a_minute_naming_sse_max_clients(caplog):
    """Refusals for SSE_MAX_CLIENTS were counted and logged nowhere: the instance was full and
    its log silent (an operations audit). Those of the per-address caps stay silent (the
    client's doing)."""
    clock = Clock()
    limiter = _limiter(clock, rate_limit_enabled=False, sse_max_clients=2,
                       sse_max_clients_per_ip=1)
    with caplog.at_level("WARNING", logger="actors.limiter"):
        assert _admit(limiter, "a", stream=True).allowed
        assert _admit(limiter, "b", stream=True).allowed
        assert not _admit(limiter, "a", stream=True).allowed        # per address: not said
        for n in range(3):
            assert _admit(limiter, f"c{n}", stream=True).reason == "too_many_streams"
        clock.advance(61)
        assert _admit(limiter, "d", stream=True).reason == "too_many_streams"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "SSE_MAX_CLIENTS=2" in said[0], said
    assert said[0].startswith("1 stream(s) refused") and said[1].startswith("3 stream(s) refused")


def test_instance_stream_cap():
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients=3)
    assert all(_admit(limiter, f"10.0.0.{n}", stream=True).allowed for n in range(3))
    assert _admit(limiter, "10.0.0.9", stream=True) == Admission(False, "too_many_streams", 5)
    limiter.on_receive(Release("10.0.0.0"))
    assert _admit(limiter, "10.0.0.9", stream=True).allowed


def test_counts_return_to_zero_and_stray_releases_change_nothing():
    limiter = _limiter(rate_limit_enabled=False)
    for n in range(20):
        _admit(limiter, f"10.0.0.{n % 4}", stream=True)
    for n in range(20):
        limiter.on_receive(Release(f"10.0.0.{n % 4}"))
    limiter.on_receive(Release("10.0.0.1"))            # never admitted: logged, ignored
    stats = limiter.on_receive(GetLimiterStats())
    assert stats.streams == 0 and stats.addresses_streaming == 0
    assert limiter.per_ip == {}


def test_a_rate_limited_stream_takes_no_slot():
    limiter = _limiter(rate_limit_burst_size=1)
    assert _admit(limiter, stream=True).allowed
    assert _admit(limiter, stream=True).reason == "rate_limited"
    assert limiter.streams == 1
    stats = limiter.on_receive(GetLimiterStats())
    assert stats.refused == {"rate_limited": 1}


def test_idle_buckets_expire_once_they_would_be_full_again():
    clock = Clock()
    limiter = _limiter(clock)                           # full again after 10 s
    for n in range(100):
        _admit(limiter, f"10.0.{n}.1")
    assert len(limiter.buckets) == 100
    clock.advance(9.9)
    _admit(limiter, "10.9.9.9")
    assert len(limiter.buckets) == 101
    clock.advance(0.2)
    _admit(limiter, "10.9.9.8")
    assert set(limiter.buckets.buckets) == {"10.9.9.9", "10.9.9.8"}


def test_a_forgotten_bucket_behaves_like_the_one_it_replaces():
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(10):
        _admit(limiter)
    clock.advance(10)                                   # full again: may be forgotten
    _admit(limiter, "someone else")
    assert "10.0.0.1" not in limiter.buckets.buckets
    assert [_admit(limiter).allowed for _ in range(11)] == [True] * 10 + [False]


def test_a_bucket_refills_to_its_burst_and_no_further():
    """A client that keeps its bucket alive gets RATE_LIMIT_BURST_SIZE in a row at most."""
    clock = Clock()
    buckets = TokenBuckets(60, 3, clock=clock)
    assert buckets.take("a") == 0.0
    clock.advance(2.9)              # 2 left + 2.9 refilled, but a bucket holds 3
    assert [buckets.take("a") == 0.0 for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_the_wait_rounded_up():
    """Told 1 s when the next token is 1.5 s away, an obedient client is refused again."""
    limiter = _limiter(rate_limit_requests_per_min=40, rate_limit_burst_size=1)
    assert _admit(limiter).allowed
    assert _admit(limiter).retry_after == 2


def test_recent_use_keeps_a_bucket():
    clock = Clock()
    buckets = TokenBuckets(60, 10, clock=clock)
    buckets.take("old")
    buckets.take("busy")
    clock.advance(6)
    buckets.take("old")                                 # touched: moves to the back
    clock.advance(6)
    buckets.take("new")
    assert list(buckets.buckets) == ["old", "new"]


def test_a_flood_of_100k_addresses_stays_bounded():
    clock = Clock()
    limiter = _limiter(clock, max_buckets=10_000)
    tracemalloc.start()
    try:
        for n in range(100_000):
            address = f"198.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            assert _admit(limiter, address).allowed
            clock.advance(0.00001)                      # all within one refill period
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limiter.buckets) == 10_000
    assert limiter.buckets.evicted == 90_000
    assert peak < 5_000_000, f"{peak} bytes for 10,000 buckets"
    # Within the last 10,000 addresses, limiting still works.
    for _ in range(9):
        _admit(limiter, "198.1.134.159")
    assert not _admit(limiter, "198.1.134.159").allowed


def test_a_flood_spread_over_time_expires_by_itself():
    clock = Clock()
    limiter = _limiter(clock)
    for n in range(100_000):
        _admit(limiter, f"2001:db8::{n:x}")
        clock.advance(0.002)                            # 500 new addresses a second
    assert 4_990 <= len(limiter.buckets) <= 5_001 and limiter.buckets.evicted == 0


def test_as_a_started_actor_asked_with_a_timeout():
    ref = RateLimiterActor.start(settings=Settings.defaults(sse_max_clients_per_ip=1))
    try:
        assert ref.ask(Admit("10.0.0.1", True), timeout=2).allowed
        assert ref.ask(Admit("10.0.0.1", True), timeout=2).reason == "too_many_streams_per_ip"
        ref.tell(Release("10.0.0.1"))
        ref.tell(Release("10.0.0.1"))                   # a stray release must not kill it
        assert ref.ask(GetLimiterStats(), timeout=2).streams == 0
        assert ref.is_alive()
    finally:
        ref.stop()


@pytest.fixture(autouse=True)
def _no_actor_left():
    yield
    assert every_actor() == []


# -- per subject (SSE_MAX_CLIENTS_PER_SUBJECT) -----------------------------------------------
def _stream(limiter, address, subject):
    return limiter.on_receive(Admit(address, True, subject))


def test_a_subject_past_its_stream_cap_is_refused_from_any_address_until_one_is_released():
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients_per_subject=2)
    assert _stream(limiter, "10.0.0.1", "alice").allowed
    assert _stream(limiter, "10.0.0.2", "alice").allowed
    assert _stream(limiter, "10.0.0.3", "alice") == Admission(
        False, "too_many_streams_per_subject", 5)
    assert _stream(limiter, "10.0.0.3", "bob").allowed           # other subjects unaffected
    assert _stream(limiter, "10.0.0.3", None).allowed            # anonymous: no subject cap
    stats = limiter.on_receive(GetLimiterStats())
    assert stats.streams == 4 and stats.subjects_streaming == 2   # the refusal took no slot
    assert stats.refused == {"too_many_streams_per_subject": 1}
    limiter.on_receive(Release("10.0.0.1", "alice"))
    assert _stream(limiter, "10.0.0.3", "alice").allowed


def test_without_a_subject_cap_subjects_are_neither_counted_nor_refused():
    """Nothing reads the counts then: an authenticated open costs no more admission work."""
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients_per_ip=1000)
    assert all(_stream(limiter, "10.0.0.1", "alice").allowed for _ in range(50))
    assert limiter.per_subject == {} and limiter.streams == 50
    assert limiter.on_receive(GetLimiterStats()).subjects_streaming == 0
    for _ in range(50):
        limiter.on_receive(Release("10.0.0.1", "alice"))
    assert limiter.per_ip == {} and limiter.streams == 0


def test_subject_counts_exist_only_while_held():
    limiter = _limiter(rate_limit_enabled=False, sse_max_clients_per_subject=3)
    for n in range(300):
        _stream(limiter, f"10.0.0.{n % 7}", f"user{n % 40}")
    for n in range(300):
        limiter.on_receive(Release(f"10.0.0.{n % 7}", f"user{n % 40}"))
    assert limiter.per_subject == {} and limiter.per_ip == {} and limiter.streams == 0
    assert limiter.on_receive(GetLimiterStats()).subjects_streaming == 0


UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import gevent, pykka
from actors.hub import HubFuture as _HubFuture
from actors.limiter import RateLimiterActor
from actors.messages import Admit, GetLimiterStats, Release
from actors.settings import Settings
limiter = RateLimiterActor.start(settings=Settings.defaults(sse_max_clients=1))
assert type(limiter.actor_inbox).__module__.startswith("gevent")
assert limiter.ask(Admit("10.0.0.1", True), timeout=2).allowed
assert limiter.ask(Admit("10.0.0.2", True), timeout=2).reason == "too_many_streams"
limiter.tell(Release("10.0.0.1"))
assert limiter.ask(GetLimiterStats(), timeout=2).streams == 0
failed = _HubFuture()
try:
    raise ValueError("from the actor")
except ValueError:
    failed.set_exception()
try:
    failed.get(timeout=1)
except ValueError as exc:       # the actor's error, raised to the asker
    print(exc.args[0].split()[0])
future = _HubFuture()
outer = gevent.Timeout(5)       # a caller's own deadline is never swallowed
outer.start()
try:
    future.get(timeout=0.05)
except pykka.Timeout:
    print("pykka timeout")
outer.cancel()
late = _HubFuture()
gevent.spawn_later(0.01, late.set, 42)
assert late.get(timeout=2) == 42
pykka.ActorRegistry.stop_all()
print("ok")
'''


def test_under_gevent_the_limiter_answers_on_the_hub_and_times_out_as_pykka_does():
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["from", "pykka", "timeout", "ok"]


STOPPING_UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
from actors.gateway import Gateway, Unavailable
from actors.hub import HubFuture
from actors.limiter import RateLimiterActor
from actors.settings import Settings
from tests.fakes import FakeRef
assert isinstance(RateLimiterActor._create_future(), HubFuture)     # gevent's, not a Condition
settings = Settings.defaults()
limiter = RateLimiterActor.start(settings=settings)
door = Gateway(settings, broker=FakeRef(), history=FakeRef(), limiter=limiter,
               count_actors=lambda: 1)
limiter.stop(block=False)
try:
    door.admit("198.51.100.7", stream=True)     # queued behind the stop
except Unavailable as exc:
    print(exc)
'''


def test_under_gevent_an_admission_queued_behind_the_limiters_stop_is_a_503_that_says_retry():
    """A stream opened while the worker stops: pykka answers the questions left in a stopped
    actor's mailbox with ActorDeadError (outside any `except`); the gateway makes it 'the
    service is stopping; retry shortly', not an error the request dies of (a 500)."""
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", STOPPING_UNDER_GEVENT], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "the service is stopping; retry shortly"
