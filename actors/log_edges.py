"""Where Kafka's log moved under the streams' places: cuts and ends (pure, no I/O).

A cut: an unclean leader election truncated a partition under the live position, which went
back to where the logs diverge. An id between the cut and that position names records that
are gone, and an id of a partition can lie in several cuts (the broker keeps them all).

Past the end: a stream waiting behind this instance whose place in a partition stays beyond
Kafka's end for PAST_END_SECONDS (one ahead of this instance only catches up sooner) would drop
that partition's records until Kafka's offsets pass its place.
"""
from __future__ import annotations

LOG_CUT = ("Kafka's log of {}:{} was cut at offset {}, under what this stream was being read; "
           "retry from there")
RESUMED_IN_CUT = ("resumed inside what Kafka cut from {}:{} (its id says offset {}, the log was "
                  "cut at {}); retry from there")
PAST_THE_END = ("resumed past the end of {}:{} (its id says offset {}, Kafka's log ends at {}); "
                "retry from the end")
PAST_END_SECONDS = 15.0     # Kafka's end below a stream's place that long: it is past the end


class Cuts:
    """Each partition's cuts: (the offset it was cut at, the position it was cut under)."""

    __slots__ = ("_cuts",)

    def __init__(self) -> None:
        self._cuts: dict[tuple, list[tuple[int, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._cuts)

    def add(self, skips) -> str | None:
        """Keep the cuts among a batch's skips (truncations that took a position back); the
        reason to end the streams not live yet with, if there are any."""
        cuts = {s.partition: (s.resumed, s.requested) for s in skips
                if s.reason == "truncated" and s.resumed < s.requested}
        for p, cut in cuts.items():
            self._cuts.setdefault(p, []).append(cut)
        if not cuts:
            return None
        p, (offset, _position) = min(cuts.items())
        return LOG_CUT.format(*p, offset)

    def under(self, known: dict) -> dict:
        """The partitions where `known` (a resume's offsets) lies inside a cut: each with the
        lowest cut it lies in (an id between two cuts may name either leader's records: shown
        again rather than missed)."""
        inside = {}
        for p, offset in known.items():
            under = [cut for cut, position in self._cuts.get(p, ()) if cut < offset <= position]
            if under:
                inside[p] = min(under)
        return inside


def resumed_in_cut(known: dict, inside: dict) -> tuple[str, dict, tuple]:
    """A resume from inside cuts (`inside`, as Cuts.under gave): the reason it ends with, its
    place with the cuts there and the gaps that take it there."""
    (topic, partition), cut = min(inside.items())
    reason = RESUMED_IN_CUT.format(topic, partition, known[topic, partition], cut)
    gaps = tuple(("truncated", p, known[p], cut) for p, cut in sorted(inside.items()))
    return reason, {**known, **inside}, gaps


class PastTheEnd:
    """Since when each waiting stream's place is past Kafka's end, and the partitions a warning
    named already."""

    __slots__ = ("since", "told")

    def __init__(self) -> None:
        self.since: dict[str, float] = {}
        self.told: set = set()

    def due(self, behind: dict, ends: dict, unread: set, now: float) -> list[str]:
        """The streams of `behind` (id -> subscriber) past the end for PAST_END_SECONDS by
        now; those no longer past it are forgotten, as are the due ones."""
        since = self.since
        self.since = {client_id: since.get(client_id, now)
                      for client_id, sub in behind.items()
                      if sub.subscription.past_the_end(ends, unread)}
        due = [client_id for client_id, first in self.since.items()
               if now - first >= PAST_END_SECONDS]
        for client_id in due:
            del self.since[client_id]
        return due

    def clear(self) -> None:
        self.since = {}

    def closing(self, subscription, ends: dict, unread: set) -> tuple[str, dict, tuple, bool]:
        """A stream past the end: the reason it ends with, its place with Kafka's end there
        (or where this instance stood when it came: what was read since, it has not been
        shown), the gaps that take it there, and whether its partition was warned of already."""
        past = subscription.past_the_end(ends, unread)
        (topic, partition), end = min(past.items())
        known = subscription.known or {}
        reason = PAST_THE_END.format(topic, partition, known[topic, partition], end)
        until = subscription.until
        place = {**subscription.place(), **{p: min(e, until.get(p, e)) for p, e in past.items()}}
        gaps = tuple(("truncated", p, known[p], place[p]) for p in sorted(past))
        told = (topic, partition) in self.told
        self.told.add((topic, partition))
        return reason, place, gaps, told
