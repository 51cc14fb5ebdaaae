"""web/slow_writes.py: one checker, started and stopped by its owner; one bad body never ends it."""
import threading
from types import SimpleNamespace

from web.slow_writes import WriteChecker


class Body:
    def __init__(self, fail=False):
        self.info = SimpleNamespace(id="c1")
        self.fail, self.checked = fail, threading.Event()

    def check(self, now):
        self.checked.set()
        if self.fail:
            raise OSError("odd socket")


def test_check_reaches_every_tracked_body_even_after_one_fails(caplog):
    checker, bad, good = WriteChecker(), Body(fail=True), Body()
    checker.track(bad)
    checker.track(good)
    checker.check(0.0)
    assert bad.checked.is_set() and good.checked.is_set()
    assert "checking stream c1 failed" in caplog.text
    checker.forget(good)
    assert checker.serving == {bad}


def test_the_loop_runs_between_start_and_stop():
    checker, body = WriteChecker(interval=0.01), Body()
    checker.track(body)
    assert not checker.running and not body.checked.wait(0.05)
    checker.start()
    assert checker.running and body.checked.wait(5)
    checker.stop()
    assert not checker.running
    body.checked.clear()
    assert not body.checked.wait(0.05)
