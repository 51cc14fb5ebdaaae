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

ran = [0]                      # backlog callbacks run so far

def busy():
    ran[0] += 1
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
        for round, (name, cls) in enumerate((("prompt", Prompt), ("plain", Plain)), 1):
            ref = cls.start()
            assert isinstance(ref.actor_inbox, prompt.PromptMailbox) == (name == "prompt")
            assert ref.ask("started", timeout=5) == "started"    # now waiting on its inbox
            backlog()
            t0 = time.perf_counter()
            ref.tell(name)
            deadline = t0 + 10           # a loaded machine runs the backlog slower: wait it out
            while (name not in handled or ran[0] < 3000 * round) and time.perf_counter() < deadline:
                gevent.sleep(0.05)
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


def test_a_greenlet_woken_by_another_runs_as_soon_as_that_one_parks_before_any_callback():
    _run("""
        woken, mine = prompt.PromptEvent(), prompt.PromptEvent()
        seen = []
        def waiter():
            woken.wait(5)
            seen.append(("waiter", ran[0]))
        def setter():
            backlog()
            woken.set()                 # by a greenlet, not the hub
            seen.append(("set", ran[0]))
            mine.wait(0.01)             # parks: the waiter runs now, not after the backlog
            seen.append(("setter again", ran[0]))
        w = gevent.spawn(waiter)
        gevent.sleep(0.01)
        gevent.spawn(setter).join(5)
        w.join(5)
        assert [name for name, _ in seen] == ["set", "waiter", "setter again"], seen
        assert seen[0][1] == seen[1][1], seen      # no callback of the backlog in between
        gevent.sleep(0.7)
    """)


def test_greenlets_handing_over_to_each_other_still_give_the_hub_its_turns():
    _run("""
        ping, pong = prompt.PromptEvent(), prompt.PromptEvent()
        turns, marks = [], []
        def player(mine, theirs, name):
            for i in range(100):
                if i == 5 and name == "a":      # queued while they hand over to each other
                    hub.loop.run_callback(lambda: marks.append(len(turns)))
                theirs.set()
                mine.wait(1)
                mine.clear()
                turns.append(name)
        a = gevent.spawn(player, ping, pong, "a")
        b = gevent.spawn(player, pong, ping, "b")
        gevent.joinall([a, b], timeout=5)
        assert len(turns) == 200, len(turns)
        assert marks and marks[0] <= 40, marks      # not after all 200 hand-overs
    """)


def test_a_burst_of_other_messages_does_not_keep_kafkas_batches_or_the_hub_waiting():
    """A reconnect storm in miniature: 3,000 history hand-overs (0.1 ms each) reach the broker
    at once while the consumer sends a batch every 2 ms. The consumer keeps getting its turns
    and each batch is handled within a few slices of the burst; a plain FIFO would keep the
    batches behind the whole burst (0.3 s), and the consumer from running at all."""
    _run("""
        class Batch:
            def __init__(self, i): self.i, self.sent = i, time.perf_counter()
        class Handover:
            def __init__(self, i): self.i = i
        waited, order = [], {"Batch": [], "Handover": []}
        class Broker(pykka.ThreadingActor):
            @staticmethod
            def _create_actor_inbox():
                return prompt.inbox(urgent=(Batch,))
            def on_receive(self, message):
                if isinstance(message, str):
                    return message
                order[type(message).__name__].append(message.i)
                if isinstance(message, Batch):
                    waited.append(time.perf_counter() - message.sent)
                else:
                    end = time.perf_counter() + 0.0001
                    while time.perf_counter() < end:
                        pass
        ref = Broker.start()
        assert isinstance(ref.actor_inbox, prompt.PromptMailbox)
        gaps = []                       # the consumer's own turns: 2 ms apart if it gets them
        def consumer():
            for i in range(150):
                ref.tell(Batch(i))
                t = time.perf_counter()
                gevent.sleep(0.002)
                gaps.append(time.perf_counter() - t)
        c = gevent.spawn(consumer)
        gevent.sleep(0.02)
        for i in range(3000):
            ref.tell(Handover(i))
        c.join(10)
        ref.ask("all handled", timeout=10)
        ref.stop(timeout=5)     # a timeout: the mailbox's own watcher keeps no loop running
        assert order["Batch"] == list(range(150)), order["Batch"][:20]
        assert order["Handover"] == list(range(3000))
        # a plain FIFO: 0.3 s and more; the margin is for a CPU shared with other work
        assert max(waited) < 0.15 and max(gaps) < 0.15, (max(waited), max(gaps))
    """)


def test_the_broker_reads_what_the_kafka_consumer_sends_ahead_of_other_messages():
    _run("""
        from pykka._envelope import Envelope
        from actors.broker import BrokerActor
        from actors.messages import (Consumed, GetStats, KafkaLag, KafkaStateChanged, Replayed,
                                     Unsubscribe)
        box = BrokerActor._create_actor_inbox()
        assert isinstance(box, prompt.PromptMailbox)
        sent = [Replayed("c1", (), True), Consumed(()), Unsubscribe("c2"), KafkaLag({}),
                KafkaStateChanged("connected"), GetStats()]
        for message in sent:
            box.put(Envelope(message))
        got = [type(box.get().message).__name__ for _ in sent]
        # Kafka's first (in their order), then the others within their turn, in theirs
        assert got[:3] == ["Consumed", "Replayed", "Unsubscribe"], got
        assert [g for g in got if g in ("Consumed", "KafkaLag", "KafkaStateChanged")] == [
            "Consumed", "KafkaLag", "KafkaStateChanged"], got
        assert [g for g in got if g in ("Replayed", "Unsubscribe", "GetStats")] == [
            "Replayed", "Unsubscribe", "GetStats"], got
        assert box.empty()
    """)


def test_kafkas_wakeup_pokes_the_prompt_selector_so_its_select_returns_at_once():
    _run("""
        from kafka.net.selector import NetworkSelector
        prompt.patch_kafka()
        net = NetworkSelector(selector=prompt.selector_class())
        out, mine = {}, prompt.PromptEvent()
        def io():
            out["events"] = net._selector.select(5)
            out["ran"] = ran[0]
        g = gevent.spawn(io)
        gevent.sleep(0.01)
        def caller():
            backlog()
            out["before"] = ran[0]
            net.wakeup()                # a task for the IO greenlet, from another greenlet
            mine.wait(0.01)
        gevent.spawn(caller).join(5)
        g.join(5)
        assert out["ran"] == out["before"], out     # returned before any callback of the backlog
        assert all(k.fileobj is net._wakeup_r for k, _ in out["events"]), out
        gevent.sleep(0.7)
        net.close()
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


# -- threading's contracts, kept (a review found each broken) ------------------------------
def test_a_timed_wait_lasts_its_timeout_after_the_greenlet_ran_a_while():
    """The timers start from the loop's time brought up to date: from its cached time, a
    greenlet that had run 0.3 s got its 0.1 s wait back at once."""
    out = _run("""
        def spin(seconds):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        cond, event = prompt.PromptCondition(), prompt.PromptEvent()
        for name, wait in (("condition", lambda: cond.wait(0.1)),
                           ("event", lambda: event.wait(0.1))):
            with cond:
                spin(0.3)
                t0 = time.perf_counter()
                assert wait() is False
                print(name, round(time.perf_counter() - t0, 3))
    """)
    for line in out.splitlines():
        name, took = line.split()
        assert float(took) >= 0.09, out


def test_a_waiter_killed_while_waiting_is_no_longer_notified_in_place_of_a_live_one():
    _run("""
        cond, woken = prompt.PromptCondition(), []
        def waiter(name):
            with cond:
                woken.append((name, cond.wait(2)))
        first, second = gevent.spawn(waiter, "first"), gevent.spawn(waiter, "second")
        gevent.sleep(0.05)
        first.kill()
        with cond:
            cond.notify(1)
        second.join(3)
        assert woken == [("second", True)], woken
        assert cond._waits == []
    """)


def test_a_prompt_event_wait_is_true_when_set_even_if_cleared_before_the_waiter_runs():
    _run("""
        event, got = prompt.PromptEvent(), []
        g = gevent.spawn(lambda: got.append(event.wait(2)))
        gevent.sleep(0.05)
        event.set()
        event.clear()
        g.join(3)
        assert got == [True], got
    """)


def test_a_condition_refuses_a_wait_without_its_lock_and_works_with_a_plain_lock():
    _run("""
        cond = prompt.PromptCondition()
        try:
            cond.wait(0.01)
        except RuntimeError as exc:
            assert "un-acquired" in str(exc)
        else:
            raise AssertionError("wait() without the lock returned")
        assert cond._waits == []
        plain = prompt.PromptCondition(threading.Lock())
        with plain:
            assert plain.wait(0.05) is False
            assert not plain.acquire(blocking=False)      # held again after the wait
        done = []
        def waiter():
            with plain:
                done.append(plain.wait(2))
        g = gevent.spawn(waiter)
        gevent.sleep(0.05)
        with plain:
            plain.notify()
        g.join(3)
        assert done == [True], done
    """)


def test_a_long_replay_lets_the_loop_poll_its_sockets_between_slices():
    """The replay actor works in slices and yields between them. A plain yield (time.sleep(0))
    only runs the hub's callbacks, and gevent looks at the clock every 50 of them: a replay of
    7,000 events over 344 partitions (2.3 s) kept a live stream's events waiting for up to
    2 s, the live consumer's sockets unread meanwhile. A socket that became readable is read
    within a few slices."""
    _run("""
        from actors import replay as replay_module
        from actors.messages import ContinueReplay
        from actors.outbox import Outbox
        from tests.fakes import FakeRef
        from tests.unit.test_replay import FakeReader, P0, P1, _actor, _log, _request

        replay_module.SLICE_S = 0.002
        class Slow(FakeReader):                 # a fetch costs CPU, as one over many partitions
            def fetch(self, ranges):
                end = time.perf_counter() + 0.001
                while time.perf_counter() < end:
                    pass
                return super().fetch(ranges)
        reader = Slow(_log(per_partition=2000), per_poll=1)
        actor = _actor(reader, clock=time.monotonic)
        outbox = Outbox(1 << 20)
        actor.on_receive(_request("c", {P0: 0, P1: 0}, {P0: 2000, P1: 2000}, FakeRef(), outbox))
        slices, seen = [0], []
        a, b = socket.socketpair()
        def live():
            a.recv(1)
            seen.append(slices[0])
        gevent.spawn(live)
        gevent.sleep(0.01)
        def work():
            while len(actor.queue) and slices[0] < 200:
                if slices[0] == 5:
                    b.send(b"x")                # a live record arrives
                actor.on_receive(ContinueReplay())
                outbox.take(0)
                slices[0] += 1
        gevent.spawn(work).join(30)
        assert seen and seen[0] <= 8, (seen, slices)      # 49 with a plain yield
    """)


# -- a mutation audit's findings -------------------------------------------------------------
def test_a_condition_notifies_as_many_waiters_as_threadings_does():
    """grpcio's server wakes every handler waiting on a call's condition with notify_all (the
    call ended, was cancelled): one left waiting held its greenlet until its own timeout."""
    _run("""
        cond, woken = prompt.PromptCondition(), []
        def waiter(name):
            with cond:
                woken.append((name, cond.wait(0.3)))
        for step in ("one", "all"):
            woken.clear()
            group = [gevent.spawn(waiter, n) for n in range(3)]
            gevent.sleep(0.02)
            with cond:
                cond.notify(1) if step == "one" else cond.notify_all()
            gevent.sleep(0.05)
            notified = sorted(n for n, got in woken if got)
            assert notified == ([0] if step == "one" else [0, 1, 2]), (step, woken)
            gevent.joinall(group, timeout=2)
        assert cond._waits == []
    """)


def test_hand_overs_cost_no_turn_of_the_loop_however_many_came_before():
    """The relay lets the hub in after RUN hand-overs in a row, then starts counting again: a
    worker's thousandth poll of Kafka is as prompt as its first (had it stopped relaying, each
    hand-over would wait behind the storm's callbacks, 70-150 ms a poll)."""
    _run("""
        mine = prompt.PromptEvent()
        for round in range(3 * prompt._Relay.RUN):
            woken, seen = prompt.PromptEvent(), []
            def waiter():
                woken.wait(5)
                seen.append(("waiter", ran[0]))
            def setter():
                backlog(50)
                woken.set()             # by a greenlet, not the hub
                seen.append(("set", ran[0]))
                mine.wait(0.001)        # parks: the waiter runs now
            w = gevent.spawn(waiter)
            gevent.sleep(0.001)
            gevent.spawn(setter).join(5)
            w.join(5)
            assert seen[0][1] == seen[1][1], (round, seen)
            gevent.sleep(0.02)
    """)


def test_a_message_told_by_a_greenlet_is_read_as_soon_as_that_greenlet_parks():
    """The consumer hands the broker its batch and waits for Kafka again: the broker reads the
    batch then, before the storm's queued callbacks, not a turn of the loop later."""
    _run("""
        handled = []
        class Broker(pykka.ThreadingActor):
            _create_actor_inbox = staticmethod(prompt.inbox)
            def on_receive(self, message):
                handled.append((message, ran[0]))
                return message
        ref = Broker.start()
        assert ref.ask("started", timeout=5) == "started"     # now waiting on its inbox
        told = []
        def consumer():
            backlog()
            ref.tell("batch")           # from a greenlet, not the hub
            told.append(ran[0])
            prompt.PromptEvent().wait(0.01)
        gevent.spawn(consumer).join(5)
        gevent.sleep(0.7)
        assert handled[-1] == ("batch", told[0]), (handled, told)
        ref.stop(timeout=5)     # a timeout: the mailbox's own watcher keeps no loop running
    """)


def test_a_wait_woken_before_its_timeout_leaves_no_timer_running():
    """kafka-python's IO greenlet and grpcio's handlers wait with timeouts and are mostly woken
    sooner: each wait's timer is closed then, not left in the loop until it would have fired
    (thousands a second, each holding its greenlet)."""
    _run("""
        event, cond = prompt.PromptEvent(), prompt.PromptCondition()
        def cond_wait():
            with cond:
                cond.wait(60)
        for wait, wake in ((lambda: event.wait(60), event.set), (cond_wait, cond.notify_all)):
            g = gevent.spawn(wait)
            gevent.sleep(0.01)
            before = hub.loop.activecnt
            with cond:
                wake()
            g.join(1)
            gevent.sleep(0.01)
            assert hub.loop.activecnt < before, (before, hub.loop.activecnt)
    """)

