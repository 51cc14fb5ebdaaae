"""Subscription filters: which event types and sources a client wants (pure, no I/O)."""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 200
_ALLOWED = re.compile(r"[\w.\-:/@*]+")


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
        if not _ALLOWED.fullmatch(item):
            raise FilterError(
                f"{name}: {item[:40]!r} may only contain letters, digits and . _ - : / @ *")
    return tuple(sorted({re.sub(r"\*+", "*", item) for item in items}))


def _glob(parts: tuple[str, ...], value: str) -> bool:
    """Match `a*b*c` given as ("a", "b", "c"): greedy find, no backtracking, linear time."""
    first, *middle, last = parts
    if not value.startswith(first) or len(value) < len(first) + len(last):
        return False
    end = len(value) - len(last)
    if not value.endswith(last):
        return False
    pos = len(first)
    for part in middle:
        pos = value.find(part, pos, end)
        if pos < 0:
            return False
        pos += len(part)
    return True


class _Matcher:
    """Exact names in a set; wildcard patterns (`*` = any run of characters) as literal parts."""

    __slots__ = ("exact", "globs")

    def __init__(self, patterns: tuple[str, ...]):
        self.exact = frozenset(p for p in patterns if "*" not in p)
        self.globs = tuple(tuple(p.split("*")) for p in patterns if "*" in p)

    def __call__(self, value: str) -> bool:
        if value in self.exact:
            return True
        return any(_glob(parts, value) for parts in self.globs)


@dataclass(frozen=True)
class Filter:
    """Event types AND sources; an empty list matches everything."""

    event_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

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
        return "&".join(parts) or "all"
