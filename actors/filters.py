"""Subscription filters: which event types and sources a client wants (pure, no I/O).

Matching cost is bounded for any filter a client can send: a list may hold at most
MAX_WILDCARDS `*` in all its entries (each costs up to one substring search per value),
prefix (`a*`) and suffix (`*a`) entries are tried in one call each, and a list with more than
a few wildcards remembers its recent answers: event types and sources repeat in real streams.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from actors.auth.redact import mask_credentials

MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 200
MAX_WILDCARDS = 32        # `*` in all the entries of one list: the matching-cost budget
CHEAP_WILDCARDS = 4       # a list with more remembers its recent answers
MEMO_SIZE = 256           # answers a list remembers (values up to MEMO_VALUE_LENGTH long)
MEMO_VALUE_LENGTH = 128
_ALLOWED = re.compile(r"[\w.\-:/@*]+")
_ONE_ALLOWED = re.compile(r"[\w.\-:/@*]")


class FilterError(ValueError):
    """A filter parameter is malformed; the message says which and why."""


def _parse_list(name: str, raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [item.strip() for item in raw.split(",")]
    items = [item for item in items if item]
    if len(items) > MAX_PATTERNS:
        raise FilterError(f"{name}: at most {MAX_PATTERNS} entries are allowed, got {len(items)}")
    for item in items:
        if len(item) > MAX_PATTERN_LENGTH:
            raise FilterError(f"{name}: an entry is longer than {MAX_PATTERN_LENGTH} characters")
        if not _allowed(item):
            raise FilterError(
                f"{name}: {item[:40]!r} may only contain letters, digits and . _ - : / @ *")
    patterns = tuple(sorted({re.sub(r"\*+", "*", item) for item in items}))
    wildcards = sum(p.count("*") for p in patterns)
    if wildcards > MAX_WILDCARDS:
        raise FilterError(
            f"{name}: at most {MAX_WILDCARDS} wildcards (*) in all entries together (a budget "
            f"on matching cost), got {wildcards}; use fewer or simpler patterns")
    return patterns


def _allowed(item: str) -> bool:
    """Letters (with their combining marks, which `\\w` lacks: हिंदी or an e and its accent
    were refused), digits and . _ - : / @ *."""
    if _ALLOWED.fullmatch(item):
        return True
    if item.isascii():
        return False
    letter = False                      # a mark follows a letter or digit (or another mark)
    for c in item:
        if unicodedata.category(c).startswith("M"):
            if not letter:
                return False
        elif _ONE_ALLOWED.fullmatch(c):
            letter = c.isalnum() or c == "_"
        else:
            return False
    return True


class _Matcher:
    """Exact names in a set, `a*` and `*a` in one startswith/endswith call each, other
    patterns as literal parts matched by greedy find (no backtracking, linear time); past a
    few wildcards, recent answers are remembered."""

    __slots__ = ("exact", "prefixes", "suffixes", "globs", "memo")

    def __init__(self, patterns: tuple[str, ...]):
        parts = [tuple(p.split("*")) for p in patterns]
        self.exact = frozenset(p[0] for p in parts if len(p) == 1)
        self.prefixes = tuple(p[0] for p in parts if len(p) == 2 and not p[1])
        self.suffixes = tuple(p[1] for p in parts if len(p) == 2 and not p[0] and p[1])
        self.globs = tuple((p[0], p[1:-1], p[-1], len(p[0]) + len(p[-1])) for p in parts
                           if len(p) > 2 or (len(p) == 2 and p[0] and p[1]))
        cheap = sum(len(p) - 1 for p in parts) <= CHEAP_WILDCARDS
        self.memo: dict[str, bool] | None = None if cheap else {}

    def __call__(self, value: str) -> bool:
        if value in self.exact:
            return True
        if self.memo is None:
            return self._match(value)
        known = self.memo.get(value)
        if known is None:
            known = self._match(value)
            if len(value) <= MEMO_VALUE_LENGTH:
                if len(self.memo) >= MEMO_SIZE:
                    self.memo.clear()
                self.memo[value] = known
        return known

    def _match(self, value: str) -> bool:
        if value.startswith(self.prefixes) or value.endswith(self.suffixes):
            return True
        size = len(value)
        for first, middle, last, least in self.globs:    # `first*middle*…*last`
            if size < least or not value.startswith(first) or not value.endswith(last):
                continue
            pos, end = len(first), size - len(last)
            for part in middle:      # the leftmost place of each part leaves the most room
                pos = value.find(part, pos, end)
                if pos < 0:
                    break
                pos += len(part)
            else:
                return True
        return False


@dataclass(frozen=True)
class Filter:
    """Event types AND sources; an empty list matches everything."""

    event_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    _types: "_Matcher | None" = field(default=None, init=False, repr=False, compare=False)
    _sources: "_Matcher | None" = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, event_types: str | None = None, sources: str | None = None) -> "Filter":
        return cls(_parse_list("event_types", event_types), _parse_list("sources", sources))

    def __post_init__(self):
        object.__setattr__(self, "_types", _Matcher(self.event_types) if self.event_types else None)
        object.__setattr__(self, "_sources", _Matcher(self.sources) if self.sources else None)

    def matches(self, event_type: str, source: str) -> bool:
        if self._types is not None and not self._types(event_type):
            return False
        return self._sources is None or self._sources(source)

    def describe(self) -> str:
        parts = []
        if self.event_types:
            parts.append("event_types=" + ",".join(self.event_types))
        if self.sources:
            parts.append("sources=" + ",".join(self.sources))
        # a token or ticket given as a filter (by mistake) stays out of logs and GetClients
        return mask_credentials("&".join(parts) or "all")
