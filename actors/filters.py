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
    return tuple(sorted(set(items)))


class _Matcher:
    """Exact names in a set, wildcard patterns (`*` = any run of characters) in one regex."""

    __slots__ = ("exact", "regex")

    def __init__(self, patterns: tuple[str, ...]):
        self.exact = frozenset(p for p in patterns if "*" not in p)
        globs = [p for p in patterns if "*" in p]
        self.regex = None
        if globs:
            alternatives = "|".join(".*".join(map(re.escape, g.split("*"))) for g in globs)
            self.regex = re.compile(f"(?:{alternatives})", re.DOTALL)

    def __call__(self, value: str) -> bool:
        if value in self.exact:
            return True
        return self.regex is not None and self.regex.fullmatch(value) is not None


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
