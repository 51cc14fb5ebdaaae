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
