"""actors/shared_limits.py: one instance's stream caps and token buckets, shared by workers.

Unit tests of the tables, then real processes (os.fork) admitting at once, a SIGKILLed worker's
counts freed, the token bucket spent across processes, full tables, and the actor system
attaching when an instance dir is set.
"""
import os
import random
import signal
import struct
import time

import pykka
import pytest

from actors import processes, shared_tables as tables
from actors import shared_limits as sl
from actors import system as actor_system
from actors.client import every_actor
from actors.limiter import RateLimiterActor
from actors.messages import Admission, Admit, GetLimiterStats, Release
from actors.settings import Settings


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _settings(**overrides):
    return Settings.defaults(**{"rate_limit_enabled": False, **overrides})


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / sl.LIMITS_FILE)


def _made(path, settings, **sizes):
    sl.create(path, settings, **sizes)
    return settings


def _limiter(path, settings, clock=None):
    """A worker's limiter over the shared file (the actor, called directly)."""
    shared = sl.SharedLimits.attach(path, settings, clock=clock or Clock())
    return RateLimiterActor(settings=settings, shared=shared)


def _stream(limiter, address, subject=None) -> Admission:
    return limiter.on_receive(Admit(address, True, subject))


@pytest.fixture(autouse=True)
def _no_actor_left():
    yield
    assert every_actor() == []


# -- the count table ----------------------------------------------------------------------------
def _key(home: int, n: int) -> bytes:
    """A key whose home cell (in a table of <= 2**16 cells) is `home`."""
    return home.to_bytes(8, "little") + n.to_bytes(8, "little")


def test_the_count_table_matches_a_dict_through_collisions_and_wraparound():
    cells = 32
    table = tables.Counts(bytearray(cells * tables.CELL.size), 0, cells)
    model: dict[tuple[bytes, int], int] = {}
    rng = random.Random(15)
    keys = [_key(rng.choice([0, 1, 30, 31]), n) for n in range(8)]     # crowded homes, wrapping
    for _ in range(5000):
        key, slot = rng.choice(keys), rng.randrange(3)
        total, entries, own, own_count, free = table.scan(key, slot)
        if rng.random() < 0.55 and len(model) < 20:
            if own >= 0:
                table.set_count(own, own_count + 1)
            else:
                table.put(free, key, slot)
            model[key, slot] = model.get((key, slot), 0) + 1
        elif own >= 0:
            if own_count > 1:
                table.set_count(own, own_count - 1)
            else:
                table.remove(own)
            model[key, slot] -= 1
            if not model[key, slot]:
                del model[key, slot]
        for probe in keys:
            expected = {s: c for (k, s), c in model.items() if k == probe}
            total, entries, _, _, _ = table.scan(probe, -1)
            assert (total, entries) == (sum(expected.values()), len(expected))
    assert sorted(table.used_cells()) == sorted((k, c, s) for (k, s), c in model.items())


def test_dropping_a_slot_removes_exactly_its_cells():
    cells = 16
    table = tables.Counts(bytearray(cells * tables.CELL.size), 0, cells)
    for n in range(6):                                   # 12 cells of 16, runs wrapping
        key = _key(14 + n % 3, n)
        for slot in (n % 2, 2):
            found = table.scan(key, slot)
            if found[2] >= 0:
                table.set_count(found[2], found[3] + 1)
            else:
                table.put(found[4], key, slot)
    before = table.used_cells()
    dropped = table.drop(lambda key, slot: slot != 1)
    after = table.used_cells()
    assert sorted(dropped) == sorted(k for k, _, s in before if s == 1) and dropped
    assert sorted(after) == sorted(cell for cell in before if cell[2] != 1)
    for key, count, slot in after:                      # every cell still reachable
        assert table.scan(key, slot)[3] == count


# -- the token buckets --------------------------------------------------------------------------
def _buckets():
    buf = bytearray(tables.SET.size)
    return tables.Buckets(buf, 0, 1, rate=1.0, burst=2.0)       # one set; full again after 2 s


def test_a_full_bucket_set_forgets_idle_buckets_first_then_evicts_the_least_recently_used():
    buckets = _buckets()
    for n in range(1, 9):                                # keys 1..8 used at 100.0 .. 100.7
        assert buckets.take(_key(0, n), 100.0 + (n - 1) * 0.1) == (0.0, 1, 0)
    assert buckets.take(_key(0, 3), 100.9) == (0.0, 0, 0)   # touched: no longer among the oldest
    assert buckets.take(_key(0, 99), 101.0) == (0.0, 0, 1)  # full: key 1 (oldest) evicted
    assert buckets.take(_key(0, 1), 101.0) == (0.0, 0, 1)   # back as new; key 2 evicted
    # at 102.75 keys 4..8 (last used 100.3 .. 100.7) are full again: forgotten, not evicted
    assert buckets.take(_key(0, 100), 102.75) == (0.0, -4, 0)
    assert buckets.count() == 4


def test_a_bucket_refills_continuously_and_never_beyond_the_burst():
    buckets = _buckets()
    key = _key(0, 1)
    assert [buckets.take(key, 10.0)[0] for _ in range(3)] == [0.0, 0.0, 1.0]
    assert buckets.take(key, 10.5)[0] == pytest.approx(0.5)
    assert buckets.take(key, 11.0)[0] == 0.0
    assert [buckets.take(key, 500.0)[0] for _ in range(3)] == [0.0, 0.0, 1.0]


# -- one process, several workers' handles ------------------------------------------------------
def test_caps_hold_over_two_workers_handles_and_release_gives_back(path):
    settings = _made(path, _settings(sse_max_clients=5, sse_max_clients_per_ip=3,
                                     sse_max_clients_per_subject=2))
    one, two = _limiter(path, settings), _limiter(path, settings)
    assert _stream(one, "10.0.0.1", "alice").allowed
    assert _stream(two, "10.0.0.1", "alice").allowed
    assert _stream(one, "10.0.0.2", "alice") == Admission(False, "too_many_streams_per_subject", 5)
    assert _stream(two, "10.0.0.1").allowed
    assert _stream(one, "10.0.0.1") == Admission(False, "too_many_streams_per_ip", 5)
    assert _stream(two, "10.0.0.3").allowed and _stream(one, "10.0.0.4").allowed
    assert _stream(two, "10.0.0.5") == Admission(False, "too_many_streams", 5)
    stats = one.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.subjects_streaming) == (5, 3, 1)
    assert stats.refused == {"too_many_streams_per_subject": 1, "too_many_streams_per_ip": 1}
    assert two.on_receive(GetLimiterStats()).refused == {"too_many_streams": 1}   # its own
    two.on_receive(Release("10.0.0.1", "alice"))
    assert _stream(one, "10.0.0.6", "alice").allowed
    one.on_stop()
    two.on_stop()


def test_without_a_subject_cap_no_subject_is_written_to_the_shared_file(path):
    settings = _made(path, _settings(sse_max_clients_per_ip=100))
    one, two = _limiter(path, settings), _limiter(path, settings)
    assert all(_stream(limiter, "10.0.0.1", f"user{n}").allowed
               for n in range(20) for limiter in (one, two))
    assert not one.shared.subjects.used_cells()
    stats = two.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.subjects_streaming) == (40, 1, 0)
    for n in range(20):
        one.on_receive(Release("10.0.0.1", f"user{n}"))
    assert two.on_receive(GetLimiterStats()).streams == 20
    one.on_stop()
    two.on_stop()


def test_a_release_from_another_worker_or_never_admitted_changes_nothing(path, caplog):
    settings = _made(path, _settings(sse_max_clients_per_subject=5))
    one, two = _limiter(path, settings), _limiter(path, settings)
    assert _stream(one, "10.0.0.1", "alice").allowed
    two.on_receive(Release("10.0.0.1", "alice"))         # not its stream
    one.on_receive(Release("10.0.0.2"))
    assert one.on_receive(GetLimiterStats()).streams == 1
    assert caplog.text.count("release of a stream never admitted") == 2
    one.on_receive(Release("10.0.0.1", "alice"))
    stats = two.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.subjects_streaming) == (0, 0, 0)
    one.on_stop()
    two.on_stop()


def test_closing_a_worker_gives_back_every_stream_it_held(path):
    settings = _made(path, _settings(sse_max_clients=4, sse_max_clients_per_subject=5))
    one, two = _limiter(path, settings), _limiter(path, settings)
    for n in range(3):
        assert _stream(one, f"10.0.0.{n}", "alice").allowed
    assert _stream(two, "10.0.0.9").allowed
    one.on_stop()
    stats = two.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.subjects_streaming) == (1, 1, 0)
    two.on_stop()


def test_the_shared_limiter_answers_like_the_in_process_one(path):
    """One worker: the same answers as today's limiter for a random mix of calls."""
    settings = _made(path, Settings.defaults(
        sse_max_clients=12, sse_max_clients_per_ip=3, sse_max_clients_per_subject=4,
        rate_limit_requests_per_min=120, rate_limit_burst_size=6))
    clock = Clock()
    local = RateLimiterActor(settings=settings, clock=clock)
    shared = _limiter(path, settings, clock)
    rng = random.Random(7)
    held: list[tuple[str, str | None]] = []
    for _ in range(3000):
        clock.now += rng.choice([0.0, 0.01, 0.1, 0.5, 3.0])
        address = f"10.0.0.{rng.randrange(6)}"
        subject = rng.choice([None, "alice", "bob", "carol"])
        if held and rng.random() < 0.4:
            address, subject = held.pop(rng.randrange(len(held)))
            local.on_receive(Release(address, subject))
            shared.on_receive(Release(address, subject))
            continue
        message = Admit(address, rng.random() < 0.7, subject)
        answer = local.on_receive(message)
        assert shared.on_receive(message) == answer
        if answer.allowed and message.stream:
            held.append((address, subject))
    mine, theirs = local.on_receive(GetLimiterStats()), shared.on_receive(GetLimiterStats())
    assert (theirs.streams, theirs.addresses_streaming, theirs.subjects_streaming,
            theirs.refused) == (mine.streams, mine.addresses_streaming, mine.subjects_streaming,
                                mine.refused)
    shared.on_stop()


def test_keys_are_stored_as_digests_not_text(path):
    settings = _made(path, _settings())
    limiter = _limiter(path, settings)
    assert _stream(limiter, "203.0.113.77", "alice@example.com").allowed
    with open(path, "rb") as stored:
        data = stored.read()
    assert b"203.0.113.77" not in data and b"alice@example.com" not in data
    assert b"203.0.113.77".decode().encode("utf-16-le") not in data
    limiter.on_stop()


# -- full tables --------------------------------------------------------------------------------
def test_a_full_count_table_refuses_new_keys_but_keeps_every_held_count(path):
    settings = _made(path, _settings(sse_max_clients=100, sse_max_clients_per_ip=5),
                     count_cells=16)                     # room for 12 (key, worker) cells
    limiter = _limiter(path, settings)
    assert all(_stream(limiter, f"10.0.0.{n}").allowed for n in range(12))
    assert _stream(limiter, "10.0.0.99") == Admission(False, "too_many_streams", 5)
    assert _stream(limiter, "10.0.0.3").allowed          # a key already held still counts up
    stats = limiter.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming) == (13, 12)
    limiter.on_receive(Release("10.0.0.0"))
    assert _stream(limiter, "10.0.0.99").allowed
    for n in list(range(1, 12)) + [3, 99]:
        limiter.on_receive(Release(f"10.0.0.{n}"))
    stats = limiter.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming) == (0, 0)
    limiter.on_stop()


def test_a_flood_of_addresses_keeps_the_bucket_table_bounded(path):
    settings = _made(path, Settings.defaults(rate_limit_requests_per_min=60,
                                             rate_limit_burst_size=10), buckets=1024)
    clock = Clock()
    limiter = _limiter(path, settings, clock)
    size = os.path.getsize(path)
    for n in range(20_000):
        assert limiter.on_receive(Admit(f"2001:db8::{n:x}")).allowed
        clock.now += 0.00001
    stats = limiter.on_receive(GetLimiterStats())
    assert stats.buckets == 1024 and stats.buckets_evicted == 20_000 - 1024
    assert os.path.getsize(path) == size
    for _ in range(9):                                   # recent addresses still limited
        limiter.on_receive(Admit("2001:db8::4e1f"))
    assert not limiter.on_receive(Admit("2001:db8::4e1f")).allowed
    limiter.on_stop()


# -- several processes --------------------------------------------------------------------------
def _in_child(work):
    """Run work() in a forked child; its result comes back through a pipe (a repr)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                         # pragma: no cover - the child
        code = 0
        try:
            os.close(read)
            os.write(write, repr(work()).encode())
        except BaseException as exc:                     # noqa: BLE001
            os.write(write, repr(("error", str(exc))).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _result(pid, read):
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks)
    return eval(b"".join(chunks).decode())               # noqa: S307 - our own repr


def _start_together(path, settings, work, processes=4):
    """Fork `processes` children that each attach, wait for a common start, run work(limiter)."""
    go = os.path.join(os.path.dirname(path), "go")

    def child():
        limiter = _limiter(path, settings, Clock())
        while not os.path.exists(go):
            time.sleep(0.001)
        try:
            return work(limiter)
        finally:
            limiter.on_stop()
    children = [_in_child(child) for _ in range(processes)]
    time.sleep(0.3)
    open(go, "w").close()
    return [_result(pid, read) for pid, read in children]


def test_four_processes_admitting_at_once_never_pass_the_caps(path):
    settings = _made(path, _settings(sse_max_clients=50, sse_max_clients_per_ip=7,
                                     sse_max_clients_per_subject=9))

    def work(limiter):
        answers = [(n % 10, _stream(limiter, f"10.0.0.{n % 10}", f"u{n % 4}"))
                   for n in range(60)]
        time.sleep(0.5)                                  # hold them while the others try
        return [(ip, a.allowed, a.reason) for ip, a in answers]
    results = [answer for answers in _start_together(path, settings, work) for answer in answers]
    admitted = [ip for ip, allowed, _ in results if allowed]
    assert max(admitted.count(ip) for ip in range(10)) <= 7
    # the subject caps (9 for each of 4 subjects) bind first: exactly 36 admitted
    assert len(admitted) == 36, len(admitted)
    reader = _limiter(path, settings)
    assert reader.on_receive(GetLimiterStats()).streams == 0       # all given back on close
    reader.on_stop()


def test_the_instance_cap_is_exact_across_processes(path):
    settings = _made(path, _settings(sse_max_clients=40, sse_max_clients_per_ip=1000))

    def work(limiter):
        allowed = sum(_stream(limiter, f"10.0.{n % 3}.1").allowed for n in range(100))
        time.sleep(0.5)
        return allowed
    admitted = sum(_start_together(path, settings, work))
    assert admitted == 40, admitted


def test_the_token_bucket_is_spent_across_processes(path):
    settings = _made(path, Settings.defaults(rate_limit_requests_per_min=60,
                                             rate_limit_burst_size=10))

    def work(limiter):
        return sum(limiter.on_receive(Admit("198.51.100.7")).allowed for _ in range(8))
    allowed = sum(_start_together(path, settings, work, processes=3))
    assert allowed == 10, allowed


def _holder(path, settings, streams, go_on):
    """A child that admits `streams` streams, says so, then waits to be killed."""
    def child():
        limiter = _limiter(path, settings)
        for n in range(streams):
            assert _stream(limiter, f"10.1.0.{n % 2}", "alice").allowed
        open(go_on, "w").close()
        time.sleep(60)
    return _in_child(child)


def _wait_for(file):
    deadline = time.monotonic() + 20
    while not os.path.exists(file):
        assert time.monotonic() < deadline, "the child never got going"
        time.sleep(0.01)


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_sigkilled_workers_streams_are_given_back(path, reaped):
    settings = _made(path, _settings(sse_max_clients=6, sse_max_clients_per_ip=10,
                                     sse_max_clients_per_subject=10))
    go_on = os.path.join(os.path.dirname(path), "held")
    pid, read = _holder(path, settings, 5, go_on)
    try:
        _wait_for(go_on)
        survivor = _limiter(path, settings)
        assert survivor.on_receive(GetLimiterStats()).streams == 5
        assert _stream(survivor, "10.2.0.1").allowed
        os.kill(pid, signal.SIGKILL)
        if reaped:
            os.waitpid(pid, 0)
        else:
            time.sleep(0.2)                              # killed, not yet waited for
        if reaped:      # a replacement worker attaching finds only the survivor's stream
            replacement = _limiter(path, settings)
            assert replacement.on_receive(GetLimiterStats()).streams == 1
            replacement.on_stop()
        # the 7th stream would be refused while the dead worker's 5 count: they are freed
        assert all(_stream(survivor, f"10.3.0.{n}", "alice").allowed for n in range(5))
        stats = survivor.on_receive(GetLimiterStats())
        assert (stats.streams, stats.subjects_streaming) == (6, 1)
        assert stats.refused == {}
        survivor.on_stop()
    finally:
        if not reaped:
            os.waitpid(pid, 0)
        os.close(read)


def test_workers_killed_at_random_moments_leave_exactly_the_survivors_counts(path):
    """Children admit and release as fast as they can over the keys the survivor holds too
    (their cells move the survivor's around) and are SIGKILLed at random moments, some inside
    the lock; afterwards the tables hold exactly the survivor's streams."""
    settings = _made(path, _settings(sse_max_clients=500, sse_max_clients_per_ip=500,
                                     sse_max_clients_per_subject=500),
                     count_cells=64)
    survivor = _limiter(path, settings)
    mine = [("10.0.0.1", "alice"), ("10.0.0.1", None), ("10.0.0.2", "bob")]
    for address, subject in mine:
        assert _stream(survivor, address, subject).allowed
    rng = random.Random(15)

    def churn():
        limiter = _limiter(path, settings)
        held, n = [], 0
        while True:
            n += 1
            if held and n % 3 == 0:
                limiter.on_receive(Release(*held.pop(n % len(held))))
            else:
                call = (f"10.0.0.{n % 7}", [None, "alice", "bob", "carol"][n % 4])
                if _stream(limiter, *call).allowed:
                    held.append(call)
    for _ in range(8):
        children = [_in_child(churn) for _ in range(3)]
        time.sleep(rng.uniform(0.05, 0.25))
        for pid, read in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
    shared = survivor.shared
    with shared._locked():
        shared._sweep(now=True)                          # as the next sweep would
    stats = survivor.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.subjects_streaming) == (3, 2, 2)
    for address, expected in (("10.0.0.1", 2), ("10.0.0.2", 1)):
        assert shared.ips.scan(shared.key(address), -1)[:2] == (expected, 1)
    for subject in ("alice", "bob"):
        assert shared.subjects.scan(shared.key(subject), -1)[:2] == (1, 1)
    assert len(shared.ips.used_cells()) == 2
    assert len(shared.subjects.used_cells()) == 2
    survivor.on_stop()


def test_a_slot_whose_pid_was_reused_is_freed(path):
    """A slot names pid + start time: the same pid with another start time is a new process."""
    settings = _made(path, _settings(sse_max_clients=3))
    limiter = _limiter(path, settings)
    for n in range(3):
        assert _stream(limiter, f"10.0.0.{n}").allowed
    shared = limiter.shared
    at = shared.layout.slots_at + shared.slot * sl._SLOT.size
    with open(path, "r+b") as stored:                    # as if this pid were a dead worker's
        stored.seek(at)
        stored.write(struct.pack("<IIQ", os.getpid(), 3, shared.start + 1))
    shared.slot = -1                                     # that worker is "dead": no close
    shared.close()
    fresh = _limiter(path, settings)
    assert all(_stream(fresh, f"10.1.0.{n}").allowed for n in range(3))
    assert fresh.on_receive(GetLimiterStats()).streams == 3
    fresh.on_stop()


def test_a_dead_workers_addresses_are_all_freed_even_where_its_cells_collided(path, caplog):
    """A worker dies holding one stream from each of 12 addresses (SSE_MAX_CLIENTS_PER_IP=1)
    in a table of 16 cells, so their cells collide and removing one moves the next back: when
    its slot is freed, every address may stream again (its leftovers refused them as
    too_many_streams_per_ip, for as long as the instance ran)."""
    settings = _made(path, _settings(sse_max_clients=12, sse_max_clients_per_ip=1),
                     count_cells=16)
    with open(path, "r+b") as stored:       # a fixed hash key: the same collisions every run
        stored.seek(sl._CONFIG.size - 16)
        stored.write(bytes(range(16)))
    dead = _limiter(path, settings)
    addresses = [f"10.0.0.{n}" for n in range(12)]
    assert all(_stream(dead, address).allowed for address in addresses)
    shared = dead.shared
    at = shared.layout.slots_at + shared.slot * sl._SLOT.size
    with open(path, "r+b") as stored:                    # its process is gone
        stored.seek(at)
        stored.write(struct.pack("<IIQ", os.getpid(), 12, shared.start + 1))
    shared.slot = -1
    shared.close()
    with caplog.at_level("WARNING", logger="actors.shared_limits"):
        survivor = _limiter(path, settings)              # attaching sweeps the dead slot
    # what it means for clients, not only for the tables (a log audit)
    (line,) = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert f"worker {os.getpid()} is gone" in line and "its 12 stream(s) were cut" in line
    assert "reconnect" in line and "Last-Event-ID" in line, line
    assert [a for a in addresses if not _stream(survivor, a).allowed] == []
    stats = survivor.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming, stats.refused) == (12, 12, {})
    survivor.on_stop()


def test_sse_max_clients_streams_from_as_many_addresses_are_all_admitted(path):
    """SSE_MAX_CLIENTS=1000 with the tables sized by default: each of 1,000 clients on its own
    address gets its stream (a table sized at SSE_MAX_CLIENTS, 3/4 usable, refused the 769th
    as too_many_streams, far below the cap the operator set)."""
    settings = _made(path, _settings(sse_max_clients=1000, sse_max_clients_per_ip=5))
    limiter = _limiter(path, settings)
    answers = [_stream(limiter, f"10.{n // 250}.{n % 250}.1") for n in range(1000)]
    assert [a for a in answers if not a.allowed] == []
    assert _stream(limiter, "10.9.9.9") == Admission(False, "too_many_streams", 5)
    stats = limiter.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming) == (1000, 1000)
    limiter.on_stop()


def test_a_writer_killed_inside_the_lock_leaves_tables_that_are_checked(path, caplog):
    """A copy cut short by SIGKILL in a backward shift leaves a duplicate cell and the dead
    writer's pid in the header: the next holder removes the duplicate and recounts."""
    settings = _made(path, _settings(sse_max_clients=10, sse_max_clients_per_ip=2))
    limiter = _limiter(path, settings)
    assert _stream(limiter, "10.0.0.1").allowed
    shared = limiter.shared
    table = shared.ips
    key = shared.key("10.0.0.1")
    index = table.scan(key, shared.slot)[2]
    duplicate = (index + 1) & table.mask
    assert not table.cell(duplicate)[3]
    table.put(duplicate, key, shared.slot)              # the stray copy
    sl._U32.pack_into(shared.buf, sl.COUNTERS_AT, 999_999)   # "writer" pid, dead
    assert _stream(limiter, "10.0.0.1").allowed          # 1 held, not 2: still room
    assert "died while changing the shared limits" in caplog.text
    assert table.scan(key, shared.slot)[:2] == (2, 1)
    stats = limiter.on_receive(GetLimiterStats())
    assert (stats.streams, stats.addresses_streaming) == (2, 1)
    limiter.on_stop()


def test_using_a_handle_after_fork_is_refused(path):
    settings = _made(path, _settings())
    limiter = _limiter(path, settings)

    def child():
        try:
            limiter.shared.admit("10.0.0.1", True)
        except RuntimeError as exc:
            return str(exc)
        return "admitted"
    assert "attach in each process" in _result(*_in_child(child))
    limiter.on_stop()


def test_attaching_without_the_file_says_who_makes_it_and_how_to_start(path):
    with pytest.raises(FileNotFoundError, match="gunicorn master creates it") as raised:
        sl.SharedLimits.attach(path, _settings())
    said = str(raised.value)      # it said `python -m web.serve`, which starts nothing
    assert "kafka-sse-gateway" in said and "gunicorn -c gunicorn.conf.py" in said
    assert "python -m" not in said


# -- the actor system ---------------------------------------------------------------------------
class Quiet(pykka.ThreadingActor):
    def __init__(self, **kwargs):
        super().__init__()


class WithInstanceDir:
    """Settings plus sse_instance_dir (whether or not Settings has the field yet)."""

    def __init__(self, settings, directory):
        self._settings, self.sse_instance_dir = settings, directory

    def __getattr__(self, name):
        return getattr(self._settings, name)


def test_the_system_attaches_its_limiter_to_the_instance_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    settings = _settings(sse_max_clients=2)
    sl.create(str(tmp_path / sl.LIMITS_FILE), settings)
    other = _limiter(str(tmp_path / sl.LIMITS_FILE), settings)
    assert _stream(other, "10.0.0.1").allowed
    system = actor_system.start(WithInstanceDir(settings, str(tmp_path)))
    try:
        assert system.limiter.ask(Admit("10.0.0.2", True), timeout=5).allowed
        assert system.limiter.ask(Admit("10.0.0.3", True), timeout=5).reason == "too_many_streams"
        assert system.limiter.ask(GetLimiterStats(), timeout=5).streams == 2
    finally:
        actor_system.stop(system, timeout=5)
    assert other.on_receive(GetLimiterStats()).streams == 1      # its stream given back
    other.on_stop()


def test_without_an_instance_dir_the_limiter_keeps_its_counts_to_itself(monkeypatch):
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    system = actor_system.start(WithInstanceDir(_settings(), ""))
    try:
        assert system.limiter.proxy().shared.get(timeout=5) is None
    finally:
        actor_system.stop(system, timeout=5)


def test_a_failing_shared_release_is_logged_and_the_limiter_goes_on(caplog):
    class Broken:
        def release(self, address, subject):
            raise OSError("the limits file is gone")

        def close(self):
            pass
    limiter = RateLimiterActor(settings=_settings(), shared=Broken())
    limiter.on_receive(Release("10.0.0.1"))              # told: an exception would stop it
    assert "in the shared limits failed: the limits file is gone" in caplog.text


# -- is a worker alive? where /proc says less than usual -------------------------------------
@pytest.fixture
def sleeper():
    import subprocess
    child = subprocess.Popen(["sleep", "30"])
    yield child.pid
    try:
        child.kill()
        child.wait()
    except (ProcessLookupError, ChildProcessError):
        pass                                    # the test ended it


def test_without_proc_a_live_process_is_alive_and_a_gone_one_is_not(sleeper, monkeypatch):
    """No /proc at all (macOS, a container without it): liveness by signal 0, start unknown.
    It used to take every other worker for dead, freeing its streams past the caps."""
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setattr(processes.os.path, "exists",
                        lambda path: False if str(path).startswith("/proc") else os.path.lexists(path))
    assert processes.process_start(sleeper) == 0
    os.kill(sleeper, signal.SIGKILL)
    os.waitpid(sleeper, 0)
    assert processes.process_start(sleeper) is None


def test_a_process_of_another_user_is_no_worker_of_ours(sleeper, monkeypatch):
    """/proc mounted hidepid=1: another user's process (a dead worker's pid, reused) can be
    neither read nor signalled. Workers share one user, so it is not one: the dead worker's
    streams are freed (they stayed counted while that process ran)."""
    real_open = open

    def hidden(path, *args, **kwargs):
        if str(path) == f"/proc/{sleeper}/stat":
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    real_kill = os.kill

    def kill(pid, sig):
        if pid == sleeper:
            raise PermissionError(1, "Operation not permitted")
        return real_kill(pid, sig)
    monkeypatch.setattr("builtins.open", hidden)
    monkeypatch.setattr(processes.os, "kill", kill)
    assert processes.process_start(sleeper) is None


def test_a_peek_is_refused_as_a_stream_would_be_and_takes_nothing(path):
    """Admit(peek=True) (HEAD /events): the caps' answer, here as in the in-process limiter."""
    settings = _made(path, Settings.defaults(sse_max_clients=2, sse_max_clients_per_ip=1,
                                             sse_max_clients_per_subject=1))
    local = RateLimiterActor(settings=settings, clock=Clock())
    shared = _limiter(path, settings)
    for limiter in (local, shared):
        assert limiter.on_receive(Admit("10.0.0.1", True, "alice")).allowed
        peeks = [limiter.on_receive(Admit(address, False, subject, peek=True))
                 for address, subject in (("10.0.0.1", None), ("10.0.0.2", "alice"),
                                          ("10.0.0.2", None))]
        assert [p.reason for p in peeks] == ["too_many_streams_per_ip",
                                            "too_many_streams_per_subject", ""]
        assert limiter.on_receive(Admit("10.0.0.3", True)).allowed
        assert limiter.on_receive(Admit("10.0.0.4", False, peek=True)).reason == \
            "too_many_streams"
        assert limiter.on_receive(GetLimiterStats()).streams == 2
    shared.on_stop()


def test_the_limits_file_is_allocated_not_sparse(tmp_path):
    """Sparse, a limits file on a full /dev/shm was made without error and every worker died
    of SIGBUS at its first write into the mapping; allocated, a full disk fails in `create`."""
    path = str(tmp_path / "limits")
    settings = Settings.defaults()
    sl.create(path, settings)
    assert os.stat(path).st_size == sl.size(settings)
    assert os.stat(path).st_blocks * 512 >= sl.size(settings)
