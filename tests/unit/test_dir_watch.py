"""DirWatch: a worker tells its master (SIGHUP) once the instance directory is gone, in its
turn, and not when it has no master any more."""
import signal

from service.dir_watch import CHECK_SECONDS, TURN_SECONDS, DirWatch
from web import instance_dir


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def _watch(tmp_path, age=0, parent=100):
    clock, kills = Clock(), []
    watch = DirWatch(str(tmp_path / "gone"), 100, age, clock=clock,
                     kill=lambda pid, sig: kills.append((pid, sig)), parent=lambda: parent)
    return watch, clock, kills


def test_the_master_is_told_in_the_workers_turn_once_the_directory_is_gone(tmp_path):
    watch, clock, kills = _watch(tmp_path, age=2)
    assert not watch.check()                        # not looked at before CHECK_SECONDS
    clock.now = CHECK_SECONDS
    assert not watch.check() and kills == []        # gone: it waits its turn (2 x TURN)
    clock.now = CHECK_SECONDS + 2 * TURN_SECONDS
    assert watch.check() and kills == [(100, signal.SIGHUP)]
    clock.now += CHECK_SECONDS - 0.1
    assert not watch.check() and len(kills) == 1


def test_a_directory_made_again_in_the_meantime_is_left_alone(tmp_path, monkeypatch):
    watch, clock, kills = _watch(tmp_path, age=3)
    clock.now = CHECK_SECONDS
    watch.check()
    monkeypatch.setattr(instance_dir, "missing", lambda path: None)   # the master remade it
    clock.now = CHECK_SECONDS + 3 * TURN_SECONDS
    assert not watch.check() and kills == []


def test_an_orphaned_worker_tells_nobody(tmp_path):
    watch, clock, kills = _watch(tmp_path, parent=1)
    clock.now = CHECK_SECONDS
    assert not watch.check() and kills == []
