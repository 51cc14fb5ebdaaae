"""Ending every stream on shutdown, spread over SSE_DRAIN_SECONDS."""
from actors import system as actor_system
from actors.messages import CloseAll
from tests.fakes import FakeRef


class _Broker(FakeRef):
    def is_alive(self):
        return True


def test_streams_are_closed_in_even_shares_over_the_window():
    broker, slept = _Broker(), []
    system = type("S", (), {"broker": broker})()
    actor_system.close_streams(system, "bye", over=1, sleep=slept.append)
    shares = [m.share for m in broker.of(CloseAll)]
    assert len(shares) == actor_system.DRAIN_STEPS_PER_SECOND and shares[-1] == 1.0
    assert shares == sorted(shares)                       # 1/10, 1/9, ... of those still open
    assert abs(sum(slept) - 0.9) < 1e-9                    # no wait after the last share


def test_no_window_closes_everything_at_once():
    broker = _Broker()
    actor_system.close_streams(type("S", (), {"broker": broker})(), "bye", over=0)
    assert [m.share for m in broker.of(CloseAll)] == [1.0]


def test_a_few_streams_end_spread_over_the_whole_window_not_one_per_step_from_its_start():
    """30 streams and SSE_DRAIN_SECONDS=8 (80 steps): each step closed at least one, so all
    ended in the first 3 s and their reconnects came back together."""
    from actors.broker import BrokerActor
    from actors.messages import ClientInfo, Subscribe
    from actors.filters import Filter
    from actors.outbox import Outbox
    broker = BrokerActor(history=FakeRef())
    for n in range(30):
        info = ClientInfo(id=f"c{n}", remote_addr="a", user_agent="t",
                          filter=Filter.parse(None, None), named=True, connected_at=float(n))
        broker.on_receive(Subscribe(info, Outbox(10), FakeRef(), None, with_history=False))
    steps, ended_at = 80, []
    for step in range(steps):
        before = len(broker.subscribers)
        broker.on_receive(CloseAll("bye", 1.0 / (steps - step)))
        ended_at += [step] * (before - len(broker.subscribers))
    assert len(ended_at) == 30 and not broker.subscribers
    assert ended_at[0] <= 4 and ended_at[-1] >= 70, ended_at     # from the start to the end
    assert max(ended_at.count(step) for step in set(ended_at)) == 1


def test_a_stream_subscribed_after_the_drain_ended_is_closed_at_once():
    """A request admitted during the drain (it waited for admission, up to 10 s in a storm)
    but subscribed after its last share stayed open: nothing closed it, so gunicorn kept the
    worker SSE_DRAIN_SECONDS + 10 s and then cut it without a final comment."""
    from actors.broker import BrokerActor
    from actors.messages import ClientInfo, Close, Subscribe
    from actors.filters import Filter
    from actors.outbox import Outbox
    broker = BrokerActor(history=FakeRef())

    def subscribe(client_id):
        info = ClientInfo(id=client_id, remote_addr="a", user_agent="t",
                          filter=Filter.parse(None, None), named=True, connected_at=0.0)
        client = FakeRef()
        broker.on_receive(Subscribe(info, Outbox(10), client, None, with_history=False))
        return client

    first = subscribe("c0")
    broker.on_receive(CloseAll("server shutting down", 0.5))
    during = subscribe("c1")
    broker.on_receive(CloseAll("server shutting down", 1.0))       # the last share
    late = subscribe("c2")
    assert [m.reason for m in first.of(Close) + during.of(Close)] == ["server shutting down"] * 2
    assert [m.reason for m in late.of(Close)] == ["server shutting down"]
    assert not broker.subscribers
