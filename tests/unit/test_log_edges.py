"""Cuts and places past Kafka's end, as the broker keeps them (actors/log_edges.py)."""
from types import SimpleNamespace

from actors.log_edges import PAST_END_SECONDS, Cuts, PastTheEnd, resumed_in_cut
from actors.messages import Skip

P, Q = ("t", 0), ("t", 1)


def test_only_truncations_that_took_a_position_back_are_cuts():
    cuts = Cuts()
    assert cuts.add([Skip("retention", P, 5, 9), Skip("truncated", P, 9, 9)]) is None
    assert not cuts
    reason = cuts.add([Skip("truncated", Q, 20, 12), Skip("truncated", P, 15, 5)])
    assert reason.startswith("Kafka's log of t:0 was cut at offset 5,")
    assert cuts.under({P: 5, Q: 12}) == {}          # at the cut itself: nothing is gone
    assert cuts.under({P: 6, Q: 20}) == {P: 5, Q: 12}
    assert cuts.under({P: 16}) == {}                # past the old position: not inside


def test_an_id_inside_several_cuts_goes_back_to_the_lowest():
    cuts = Cuts()
    cuts.add([Skip("truncated", P, 15, 5)])
    cuts.add([Skip("truncated", P, 12, 8)])
    assert cuts.under({P: 10}) == {P: 5}
    assert cuts.under({P: 14}) == {P: 5}
    assert cuts.under({P: 7}) == {P: 5}


def test_a_resume_inside_a_cut_is_placed_at_it_with_a_gap():
    reason, place, gaps = resumed_in_cut({P: 10, Q: 3}, {P: 5})
    assert reason.startswith("resumed inside what Kafka cut from t:0 (its id says offset 10, "
                             "the log was cut at 5)")
    assert place == {P: 5, Q: 3}
    assert gaps == (("truncated", P, 10, 5),)


def _behind(past: dict):
    subscription = SimpleNamespace(past_the_end=lambda ends, unread: past)
    return SimpleNamespace(subscription=subscription)


def test_a_stream_is_due_after_staying_past_the_end_and_is_forgotten_once_due():
    edge = PastTheEnd()
    past, back = _behind({P: 9}), _behind({})
    behind = {"a": past, "b": back}
    assert edge.due(behind, {}, set(), 100.0) == []
    assert edge.due(behind, {}, set(), 100.0 + PAST_END_SECONDS - 0.1) == []
    assert edge.due(behind, {}, set(), 100.0 + PAST_END_SECONDS) == ["a"]
    assert edge.since == {}
    # one that came back under the end starts its count again
    assert edge.due(behind, {}, set(), 200.0) == []
    assert edge.due({"a": back}, {}, set(), 201.0) == []
    assert edge.due(behind, {}, set(), 202.0 + PAST_END_SECONDS - 1) == []
