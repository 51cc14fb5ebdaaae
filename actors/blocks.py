"""The frames of a history replay, joined once for every new stream handed the same events.

Until its ring changes, the history hands all new streams of one filter (and of every subject
owning none of its events) the same tuple of events; a reconnect storm hands it to thousands.
Its frames are joined and counted per topic once per tuple and framing, not once per stream.
"""
from __future__ import annotations

from collections import Counter

from actors.events import frames_of

KEPT = 8        # blocks kept at once: a new batch makes the history hand out new tuples


class Blocks:
    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[tuple[int, bool], tuple[tuple, bytes, dict[str, int]]] = {}

    def of(self, events, named: bool) -> tuple[bytes, dict[str, int]]:
        """The events' frames (`named`: with their `event:` line) and their count per topic."""
        if type(events) is not tuple:           # a list is one stream's own: nothing to share
            return frames_of(events, named), _per_topic(events)
        key = (id(events), named)
        kept = self._kept.get(key)
        if kept is None or kept[0] is not events:
            if len(self._kept) >= KEPT:
                self._kept.clear()
            kept = self._kept[key] = (events, frames_of(events, named), _per_topic(events))
        return kept[1], kept[2]

    def __len__(self) -> int:
        return len(self._kept)


def _per_topic(events) -> dict[str, int]:
    return dict(Counter(e.position.topic for e in events))
