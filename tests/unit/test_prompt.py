"""actors/prompt.py: live delivery's waits end at the loop's next turn, however many greenlets
the hub has scheduled before them (a reconnect storm: thousands of opening streams).

Each test runs a script in a gevent-patched interpreter: a backlog of 3,000 scheduled callbacks
of 0.2 ms each (0.6 s of work) is queued just before the wake-up. gevent's own primitives wake
behind it; the prompt ones within gevent's switch interval and a little work."""
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
from gevent import monkey; monkey.patch_all()
import socket, threading, time
import gevent, pykka
from gevent import get_hub
from actors import prompt

hub = get_hub()

def busy():
    end = time.perf_counter() + 0.0002
    while time.perf_counter() < end:
        pass

def backlog(n=3000):
    for _ in range(n):
        hub.loop.run_callback(busy)

def waited(wait, wake):
    '''Seconds from wake() (with the backlog queued just before it) to the end of wait().'''
    out = {}
    def waiter():
        wait()
        out["t"] = time.perf_counter()
    g = gevent.spawn(waiter)
    gevent.sleep(0.01)
    backlog()
    t0 = time.perf_counter()
    wake()
    g.join(5)
    gevent.sleep(0.7)          # the backlog runs out before the next measure
    return out["t"] - t0
"""


def _run(body: str) -> str:
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_prompt_event_wakes_its_waiter_ahead_of_the_backlog_where_gevents_does_not():
    out = _run("""
        ev = prompt.PromptEvent()
        theirs = threading.Event()      # gevent's, by the patching
        mine = waited(ev.wait, ev.set)
        slow = waited(theirs.wait, theirs.set)
        print(f"{mine:.3f} {slow:.3f}")
        assert mine < 0.15 and slow > 0.4, (mine, slow)
    """)
    assert out.strip()


def test_a_prompt_event_keeps_threading_events_rules():
    _run("""
        ev = prompt.PromptEvent()
        assert ev.wait(0.05) is False and not ev.is_set()      # a timeout: False
        ev.set()
        assert ev.wait() is True and ev.wait(0) is True        # set: no wait at all
        ev.clear()
        woken = []
        for i in range(3):
            gevent.spawn(lambda i=i: woken.append((i, ev.wait(2))))
        gevent.sleep(0.01)
        ev.set()
        gevent.sleep(0.05)
        assert sorted(woken) == [(0, True), (1, True), (2, True)], woken
        # a waiter that timed out is not woken later by a set() (no stray switch)
        ev.clear()
        late = []
        def other():
            ev.wait(0.01)
            gevent.sleep(0.1)            # parked on something else when set() comes
            late.append("slept")
        g = gevent.spawn(other)
        gevent.sleep(0.05)
        ev.set()
        g.join(1)
        assert late == ["slept"], late
    """)


def test_the_broker_mailbox_reader_is_woken_ahead_of_the_backlog():
    _run("""
        handled = {}
        class Plain(pykka.ThreadingActor):
            def on_receive(self, message):
                handled[message] = time.perf_counter()
                return message
        class Prompt(Plain):
            _create_actor_inbox = staticmethod(prompt.inbox)
        seen = {}
        for name, cls in (("prompt", Prompt), ("plain", Plain)):
            ref = cls.start()
            assert isinstance(ref.actor_inbox, prompt.PromptMailbox) == (name == "prompt")
            assert ref.ask("started", timeout=5) == "started"    # now waiting on its inbox
            backlog()
            t0 = time.perf_counter()
            ref.tell(name)
            gevent.sleep(0.8)
            seen[name] = handled[name] - t0
            assert ref.ask("again", timeout=5) == "again"       # and it goes on answering
            ref.stop()
        print(seen)
        assert seen["prompt"] < 0.15 and seen["plain"] > 0.4, seen
    """)


def test_the_prompt_selector_returns_ready_sockets_ahead_of_the_backlog_and_keeps_select_rules():
    _run("""
        import selectors
        Selector = prompt.selector_class()
        sel = Selector()
        a, b = socket.socketpair()
        key = sel.register(a, selectors.EVENT_READ, "data")
        assert sel.select(0.05) == []                          # nothing: the timeout
        result = {}
        def wait():
            result["events"] = sel.select(5)
        took = waited(wait, lambda: b.send(b"x"))
        assert [(k.fileobj, k.data, ev) for k, ev in result["events"]] == [
            (a, "data", selectors.EVENT_READ)], result
        assert took < 0.15, took
        assert a.recv(10) == b"x"
        # ready before select: answered after one turn of the loop, without waiting for more
        b.send(b"y")
        gevent.sleep(0.01)
        t0 = time.perf_counter()
        assert [k.fileobj for k, _ in sel.select(5)] == [a]
        assert time.perf_counter() - t0 < 0.1
        a.recv(10)
        sel.unregister(a)
        assert sel.select(0.01) == []
        sel.close()
    """)


def test_kafka_pythons_selector_module_gets_a_threading_whose_event_is_prompt():
    _run("""
        from kafka.net import selector
        import threading as real
        prompt.patch_kafka()
        prompt.patch_kafka()                                    # once is enough
        assert selector.threading.Event is prompt.PromptEvent
        assert selector.threading.Lock is real.Lock and selector.threading.Thread is real.Thread
        assert selector.threading.current_thread is real.current_thread
        assert real.Event is not prompt.PromptEvent             # nobody else's changes
    """)


def test_without_gevent_nothing_is_changed():
    from actors import prompt
    if prompt.gevent_hub.patched() is not None:
        pytest.skip("this interpreter is patched")
    assert prompt.selector_class() is None
    import pykka
    assert not isinstance(prompt.inbox(), prompt.PromptMailbox)
    assert type(prompt.inbox()) is type(pykka.ThreadingActor._create_actor_inbox())
    prompt.patch_kafka()
    from kafka.net import selector
    assert selector.threading.Event is not prompt.PromptEvent
