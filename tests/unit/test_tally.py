"""The instance's counters across the deaths and replacements of its workers (actors/tally.py):
InstanceGateway over fake peers whose workers die and are replaced, with a real counters file."""
import json
import os

import pytest

from actors.instance import InstanceGateway
from actors.replies import LimiterStats
from actors.tally import Tally, is_alive, worker_identity
from tests.fakes import FakeGateway, make_stats
from tests.unit.test_instance import FakePeers


def worker(consumed, delivered, opened, refused=0, topic_consumed=None):
    stats = make_stats(events_consumed=consumed, events_delivered=delivered,
                       connections_total=opened,
                       per_topic={"blog.posts": consumed if topic_consumed is None
                                  else topic_consumed},
                       delivered_per_topic={"blog.posts": delivered})
    return FakeGateway(stats=stats,
                       limiter=LimiterStats(True, refused={"rate_limited": refused}))


class Instance:
    """Workers by name, each asking the others; a name left out of `live` is dead."""

    def __init__(self, path):
        self.path, self.workers, self.live = str(path), {}, set()

    def set(self, name, gateway):
        self.workers[name] = gateway
        self.live.add(name)

    def kill(self, name):
        del self.workers[name]
        self.live.discard(name)

    def stats(self, asker, tally=None):
        others = {name: gw for name, gw in self.workers.items() if name != asker}
        tally = tally or self.tally(asker)
        return InstanceGateway(self.workers[asker], FakePeers(others), tally=tally).stats()

    def tally(self, asker):
        return Tally(self.path, own=lambda: asker, identify=lambda name: name,
                     alive=lambda key: key in self.live)


def counters(figures):
    broker = figures.broker
    return (broker.events_consumed, broker.per_topic["blog.posts"], broker.events_delivered,
            broker.delivered_per_topic["blog.posts"], broker.connections_total,
            figures.limiter.refused["rate_limited"])


def test_a_killed_workers_counts_stay_in_the_instances_and_a_newcomer_adds_on(tmp_path):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=100, delivered=500, opened=6, refused=2))
    fleet.set("b", worker(consumed=100, delivered=300, opened=4, refused=1))
    assert counters(fleet.stats("a")) == (100, 100, 800, 800, 10, 3)
    fleet.kill("b")                                    # SIGKILL: its counts go with it
    assert counters(fleet.stats("a")) == (100, 100, 800, 800, 10, 3)
    fleet.set("c", worker(consumed=5, delivered=7, opened=1))   # gunicorn's replacement
    fleet.set("a", worker(consumed=105, delivered=520, opened=6, refused=2))
    assert counters(fleet.stats("c")) == (105, 105, 827, 827, 11, 3)
    # the oldest worker dies too: the records read go on from the newcomer's, lined up
    fleet.kill("a")
    fleet.set("c", worker(consumed=15, delivered=17, opened=2))
    assert counters(fleet.stats("c")) == (115, 115, 837, 837, 12, 3)


def test_the_counters_of_every_answer_never_fall_whoever_asks(tmp_path):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=10, delivered=10, opened=1))
    fleet.set("b", worker(consumed=12, delivered=20, opened=2))
    seen = [counters(fleet.stats("a"))]
    fleet.set("b", worker(consumed=40, delivered=25, opened=3))
    seen.append(counters(fleet.stats("b")))
    fleet.kill("b")
    fleet.set("a", worker(consumed=41, delivered=11, opened=1))
    seen.append(counters(fleet.stats("a")))
    fleet.set("d", worker(consumed=0, delivered=0, opened=0))
    seen.append(counters(fleet.stats("d")))
    fleet.kill("a")
    seen.append(counters(fleet.stats("d")))
    for earlier, later in zip(seen, seen[1:], strict=False):
        assert all(e <= n for e, n in zip(earlier, later, strict=True)), seen
    assert seen[-1] == (41, 41, 36, 36, 4, 0)


def test_the_live_figures_are_kept_and_only_the_counters_come_from_the_tally(tmp_path):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=1, delivered=1, opened=1))
    fleet.set("b", worker(consumed=1, delivered=1, opened=1))
    fleet.stats("a")
    fleet.kill("b")
    figures = fleet.stats("a")
    assert figures.broker.clients == 2 and figures.actors == 5     # a's alone: gauges are live
    assert figures.broker.kafka_lag == {"blog.posts:0": 12}
    saved = json.loads((tmp_path / "counters.json").read_text())
    assert list(saved["workers"]) == ["a"] and saved["retired"]["connections_total"] == 1


def test_a_tally_that_cannot_be_written_leaves_the_live_figures(tmp_path, caplog):
    fleet = Instance(tmp_path / "missing" / "counters.json")
    fleet.set("a", worker(consumed=1, delivered=2, opened=3))
    figures = fleet.stats("a")
    assert counters(figures) == (1, 1, 2, 2, 3, 0)
    assert "could not be kept" in caplog.text


def test_a_tally_that_cannot_be_written_is_logged_once_until_it_can(tmp_path, caplog):
    """Every /stats answer logged an ERROR while the file could not be written: 240 lines a
    minute at 4 scrapes a second (a log audit)."""
    fleet = Instance(tmp_path / "missing" / "counters.json")
    fleet.set("a", worker(consumed=1, delivered=2, opened=3))
    tally = fleet.tally("a")
    for _ in range(5):
        fleet.stats("a", tally)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "/stats, /metrics and GetStats" in errors[0].getMessage()
    (tmp_path / "missing").mkdir()
    fleet.stats("a", tally)
    fleet.stats("a", tally)
    (kept,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "kept again" in kept and "after 5 answer(s) without them" in kept, kept


@pytest.mark.parametrize("damaged", ['{"workers": ', "[]", '{"workers": []}'])
def test_a_damaged_counters_file_is_started_afresh(tmp_path, caplog, damaged):
    """A damaged file was never rewritten: /stats lost the instance's counts, and logged an
    ERROR, for the life of the instance (a log audit); JSON of another shape too (a review)."""
    path = tmp_path / "counters.json"
    path.write_text(damaged)
    fleet = Instance(path)
    fleet.set("a", worker(consumed=1, delivered=2, opened=3))
    tally = fleet.tally("a")
    fleet.stats("a", tally)
    assert "damaged" in caplog.text and "started afresh" in caplog.text
    assert list(json.loads(path.read_text())["workers"]) == ["a"]
    caplog.clear()
    fleet.stats("a", tally)
    assert not caplog.records


def test_identities_tell_a_reused_pid_from_its_first_process():
    mine = worker_identity(f"worker {os.getpid()}")
    assert mine and mine.startswith(f"{os.getpid()}:") and is_alive(mine)
    pid, _, start = mine.partition(":")
    assert not is_alive(f"{pid}:{int(start) + 1}")
    assert worker_identity("worker 999999999") is None and not is_alive("999999999:5")
    assert worker_identity("two") is None


@pytest.mark.parametrize("count", [0, 1])
def test_one_worker_alone_counts_as_before(tmp_path, count):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=count, delivered=count, opened=count))
    assert counters(fleet.stats("a")) == (count, count, count, count, count, 0)


def test_a_worker_that_stops_leaves_its_last_counts_to_the_instance(tmp_path):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=10, delivered=10, opened=1))
    fleet.set("b", worker(consumed=10, delivered=20, opened=2))
    fleet.stats("a")
    fleet.set("b", worker(consumed=12, delivered=50, opened=5, refused=4))   # since then
    tally = Tally(fleet.path, own=lambda: "b", identify=lambda name: name,
                  alive=lambda key: key in fleet.live)
    InstanceGateway(fleet.workers["b"], FakePeers({}), tally=tally).keep_last_counts()
    fleet.kill("b")                                    # SIGTERM, SIGHUP: it exits
    assert counters(fleet.stats("a")) == (12, 12, 60, 60, 6, 4)


def test_without_a_tally_a_stopping_worker_keeps_nothing():
    local = worker(consumed=1, delivered=1, opened=1)
    InstanceGateway(local, FakePeers({})).keep_last_counts()
    assert local.calls == []


def test_a_worker_stuck_inside_the_lock_cannot_hang_the_others(tmp_path, monkeypatch, caplog):
    import fcntl
    import time

    from actors import tally as tally_module
    monkeypatch.setattr(tally_module, "LOCK_WAIT", 0.2)
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=1, delivered=2, opened=3))
    with open(f"{fleet.path}.lock", "w") as held:       # as a worker stopped inside it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        started = time.monotonic()
        figures = fleet.stats("a")
        assert time.monotonic() - started < 1.0
    assert counters(figures) == (1, 1, 2, 2, 3, 0)
    assert "held" in caplog.text and "could not be kept" in caplog.text


def test_the_uptime_is_the_instances_as_its_counters_are(tmp_path):
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", FakeGateway(stats=make_stats(uptime_seconds=100.0)))
    fleet.set("b", FakeGateway(stats=make_stats(uptime_seconds=10.0)))
    assert fleet.stats("b").broker.uptime_seconds == pytest.approx(100.0, abs=0.5)
    fleet.kill("a")                                    # the oldest worker: not the instance
    assert fleet.stats("b").broker.uptime_seconds == pytest.approx(100.0, abs=0.5)


def test_the_instances_uptime_does_not_move_with_the_wall_clock(tmp_path, monkeypatch):
    """The clock stepped forward an hour (NTP after a boot with a wrong clock) while a worker
    had run 100 s and another joined: the instance has run 105 s, not an hour more."""
    from types import SimpleNamespace

    from actors import tally
    clocks = SimpleNamespace(time=lambda: 1.0e9, monotonic=lambda: 500.0)
    monkeypatch.setattr(tally, "time", clocks)
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", FakeGateway(stats=make_stats(uptime_seconds=100.0)))
    assert fleet.stats("a").broker.uptime_seconds == pytest.approx(100.0)
    clocks.time, clocks.monotonic = (lambda: 1.0e9 + 3605), (lambda: 505.0)
    fleet.set("a", FakeGateway(stats=make_stats(uptime_seconds=105.0)))
    fleet.set("b", FakeGateway(stats=make_stats(uptime_seconds=1.0)))
    assert fleet.stats("b").broker.uptime_seconds == pytest.approx(105.0)


def test_the_instances_start_time_is_its_first_workers_through_deaths_and_clock_steps(tmp_path):
    """sse_start_time_seconds: the Unix time the oldest worker read at its start, the same in
    every answer, whichever worker answers, after it died, and when a later worker started
    after the wall clock stepped back (its own start reads as older)."""
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", FakeGateway(stats=make_stats(uptime_seconds=100.0, started_at=1.8e9)))
    fleet.set("b", FakeGateway(stats=make_stats(uptime_seconds=10.0, started_at=1.8e9 - 510)))
    assert fleet.stats("b").broker.started_at == 1.8e9
    assert fleet.stats("a").broker.started_at == 1.8e9
    fleet.kill("a")
    assert fleet.stats("b").broker.started_at == 1.8e9


def test_workers_of_an_earlier_version_keep_their_own_start_in_the_file(tmp_path):
    """After a SIGHUP to new code, the old workers drain beside the new ones on the same
    file: they keep `started` in Unix time, which the monotonic start must not replace (they
    would show an uptime of decades), nor be taken from."""
    path = tmp_path / "counters.json"
    path.write_text(json.dumps({"started": 1.0e9}))
    fleet = Instance(path)
    fleet.set("a", FakeGateway(stats=make_stats(uptime_seconds=100.0)))
    assert fleet.stats("a").broker.uptime_seconds == pytest.approx(100.0, abs=0.5)
    assert json.loads(path.read_text())["started"] == 1.0e9


def test_a_newcomers_count_of_a_topic_it_had_not_read_yet_is_lined_up_from_zero(tmp_path):
    """After a SIGHUP (every worker replaced) the newcomers are first asked before they have
    read an event of the topic: what they read of it from then on adds to the instance's."""
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=100, delivered=100, opened=1))
    fleet.set("b", worker(consumed=100, delivered=100, opened=1))
    assert counters(fleet.stats("a"))[:2] == (100, 100)
    fleet.kill("a")
    fleet.kill("b")
    for name in ("c", "d"):
        fleet.set(name, FakeGateway(stats=make_stats(events_consumed=0, per_topic={})))
    assert fleet.stats("c").broker.per_topic == {"blog.posts": 100}
    for name in ("c", "d"):
        fleet.set(name, worker(consumed=50, delivered=0, opened=0))
    figures = fleet.stats("d")
    assert (figures.broker.events_consumed, figures.broker.per_topic) == (
        150, {"blog.posts": 150})


def test_a_replacement_counts_for_the_instance_from_its_start(tmp_path):
    """WORKERS=1, or every worker replaced by a SIGHUP: nobody else reads what the newcomer
    reads before the first GetStats asks it, so it joins the tally as it starts."""
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=100, delivered=100, opened=1))
    assert counters(fleet.stats("a"))[:2] == (100, 100)
    fleet.kill("a")
    fleet.set("c", FakeGateway(stats=make_stats(events_consumed=0, per_topic={},
                                                events_delivered=0, delivered_per_topic={})))
    tally = Tally(fleet.path, own=lambda: "c", identify=lambda name: name,
                  alive=lambda key: key in fleet.live)
    InstanceGateway(fleet.workers["c"], FakePeers({}), tally=tally).join_tally()
    fleet.set("c", worker(consumed=10, delivered=10, opened=1))    # before anyone asks
    assert counters(fleet.stats("c"))[:4] == (110, 110, 110, 110)     # 100 before it


def test_a_topic_first_counted_while_the_workers_are_a_batch_apart_is_not_inflated(tmp_path):
    """Every topic is new to the tally at the instance's start, and under traffic the workers
    are never quite level: the one behind was lined up as if it had missed the difference,
    and the topic's count stayed that much too high for good (found by an audit)."""
    fleet = Instance(tmp_path / "counters.json")
    for name in ("a", "b"):
        fleet.set(name, FakeGateway(stats=make_stats(events_consumed=0, per_topic={})))
    fleet.stats("a")
    fleet.set("a", worker(consumed=200, delivered=0, opened=0))
    fleet.set("b", worker(consumed=150, delivered=0, opened=0))   # a poll behind
    assert counters(fleet.stats("a"))[:2] == (200, 200)
    for name in ("a", "b"):
        fleet.set(name, worker(consumed=1000, delivered=0, opened=0))
    assert counters(fleet.stats("b"))[:2] == (1000, 1000)


def test_a_damaged_counters_file_leaves_the_live_figures(tmp_path, caplog):
    """A counters file cut short (a full disk, an editor) is logged and /stats answers with the
    live workers' figures, as for a file that cannot be written. It made /stats fail."""
    path = tmp_path / "counters.json"
    path.write_text('{"workers": ')
    fleet = Instance(path)
    fleet.set("a", worker(consumed=1, delivered=2, opened=3))
    assert counters(fleet.stats("a")) == (1, 1, 2, 2, 3, 0)
    assert "damaged" in caplog.text


def test_the_records_read_never_fall_as_workers_behind_the_others_die(tmp_path):
    """Each worker reads every record, some behind the others. The instance's count of records
    read is the furthest any worker got; a worker that dies keeps its place in it, and one
    dying behind the others takes nothing from it. Lowered, Prometheus saw a counter reset."""
    fleet = Instance(tmp_path / "counters.json")
    fleet.set("a", worker(consumed=10, delivered=0, opened=0))
    assert counters(fleet.stats("a"))[0] == 10
    fleet.set("b", worker(consumed=5, delivered=0, opened=0))     # joins 5 records behind
    fleet.set("d", worker(consumed=10, delivered=0, opened=0))
    assert counters(fleet.stats("a"))[0] == 10
    fleet.set("b", worker(consumed=30, delivered=0, opened=0))    # b reads on, a and d lag
    assert counters(fleet.stats("d"))[:2] == (35, 35)
    fleet.kill("b")
    assert counters(fleet.stats("d"))[:2] == (35, 35)
    fleet.kill("a")                                               # dies behind: 10
    assert counters(fleet.stats("d"))[:2] == (35, 35)


def test_a_counters_file_of_an_earlier_version_gives_its_own_start_as_unix_time():
    """A file with the monotonic start of an instance and no `started_at` (written by the
    version before it): the start shown was the answering worker's, an hour later than the
    uptime said (the review). It is the file's start, in Unix time."""
    from actors import tally
    state = {tally.STARTED: 1000.0}
    tally._started(state, 4600.0, 1.8e9)        # this worker started 3,600 s after it
    assert state[tally.STARTED_AT] == 1.8e9 - 3600 and state[tally.STARTED] == 1000.0
    unknown = {tally.STARTED: 1000.0}
    tally._started(unknown, 4600.0, 0.0)        # no worker said its start
    assert tally.STARTED_AT not in unknown
