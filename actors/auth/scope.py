"""What a subject may read: its scope, and a requested filter narrowed to it (pure, no I/O).

A scope holds `event_types` and `sources` pattern lists in the filters' wildcard syntax. Per
kind: a list that is absent (None) allows everything; an empty list allows nothing. A request's
empty list means "everything in my scope", so it narrows to the scope's own list.

Narrowing is exact: the narrowed filter matches an event if and only if both the request and
the scope match it. Each requested pattern is compared with each scope pattern; most pairs have
an intersection that is one of the two patterns (a literal, `a.b*` inside `a*`, anything
inside `*`), and then the result is a plain Filter of those patterns. A pair whose intersection
is no single pattern (`*.created` with `blog.*`) makes a ScopedFilter: the request AND the
scope, each checked once. A request is refused (OutsideScope) only when, for one kind, every
requested pattern provably never meets the scope: a literal that the scope does not match, a
pattern that matches none of the scope's literals and whose literal start or end cannot agree
with any of its wildcard patterns' (`x*` and `blog.*`, `*.a` and `*.b`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable

from actors.auth.redact import mask_credentials
from actors.filters import Filter, FilterError

_ALL = ("*",)


class ScopeError(ValueError):
    """A configured scope (AUTH_ANONYMOUS_SCOPE) is malformed; the message says how. (A
    token's scope claim is read by actors/auth/tokens.py: InvalidToken.)"""


class OutsideScope(Exception):
    """The request is wholly outside the scope: no event could match both. Names the requested
    patterns the scope refuses (`*` stands for an empty request: everything); a token or
    ticket given as a pattern is shown as `***`."""

    def __init__(self, refused_types: tuple[str, ...], refused_sources: tuple[str, ...]):
        self.refused_types = refused_types
        self.refused_sources = refused_sources
        parts = [f"{name}={','.join(map(mask_credentials, refused))}" for name, refused
                 in (("event_types", refused_types), ("sources", refused_sources)) if refused]
        super().__init__("outside your scope: " + "; ".join(parts))


@dataclass(frozen=True)
class ScopedFilter:
    """A request AND the scope patterns it still needs checking against (Filter-like: hashable,
    equal for equal inputs, `matches` and `describe`). `event_types` and `sources` are the
    request's (narrowed) patterns."""

    requested: Filter
    scope: Filter
    _request_matches: Callable[[str, str], bool] = field(
        init=False, repr=False, compare=False)
    _scope_matches: Callable[[str, str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_request_matches", self.requested.matches)
        object.__setattr__(self, "_scope_matches", self.scope.matches)

    @property
    def event_types(self) -> tuple[str, ...]:
        return self.requested.event_types

    @property
    def sources(self) -> tuple[str, ...]:
        return self.requested.sources

    def matches(self, event_type: str, source: str) -> bool:
        return self._request_matches(event_type, source) and self._scope_matches(
            event_type, source)

    def describe(self) -> str:
        return f"{self.requested.describe()} within scope {self.scope.describe()}"


@dataclass(frozen=True)
class Scope:
    """The patterns a subject may read; None: unrestricted, (): nothing of that kind. Checked
    and normalised when made (ScopeError), so narrowing a stream needs no second check."""

    event_types: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "event_types", _scope_list("event_types", self.event_types))
        object.__setattr__(self, "sources", _scope_list("sources", self.sources))

    @classmethod
    def parse(cls, event_types: Sequence[str] | str | None = None,
              sources: Sequence[str] | str | None = None) -> "Scope":
        """Lists of patterns (or comma-separated text) checked like request filters."""
        return cls(_scope_list("event_types", event_types), _scope_list("sources", sources))

    def narrow(self, requested: Filter) -> Filter | ScopedFilter:
        """The effective filter for `requested`, or OutsideScope."""
        if self.event_types is None and self.sources is None:
            return requested
        return _narrow(requested, self.event_types, self.sources)

    def describe(self) -> str:
        return self._described

    @cached_property
    def _described(self) -> str:        # a Scope is shared by the streams of its subjects
        parts = [f"{name}={','.join(patterns) if patterns else '(none)'}"
                 for name, patterns in (("event_types", self.event_types),
                                        ("sources", self.sources)) if patterns is not None]
        return "&".join(parts) or "all"


def _scope_list(name: str, value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        entries = value.split(",")
    elif isinstance(value, (list, tuple)):
        entries = list(value)
    else:
        raise ScopeError(f"scope {name} must be a list of patterns, got {type(value).__name__}")
    for entry in entries:
        if not isinstance(entry, str) or "," in entry:
            raise ScopeError(f"scope {name}: every entry must be one pattern (text without a "
                             f"comma), got {str(entry)[:40]!r}")
    return _patterns(name, ",".join(entries))


@lru_cache(maxsize=256)         # tokens of one issuer mostly carry the same few scopes
def _patterns(name: str, text: str) -> tuple[str, ...]:
    try:
        parsed = Filter.parse(**{name: text})
    except FilterError as exc:
        raise ScopeError(f"scope {exc}") from None
    return getattr(parsed, name)


@lru_cache(maxsize=256)         # streams of one subject mostly ask the same
def _narrow(requested: Filter, scope_types: tuple[str, ...] | None,
            scope_sources: tuple[str, ...] | None) -> Filter | ScopedFilter:
    types = _narrow_kind(requested.event_types, scope_types)
    sources = _narrow_kind(requested.sources, scope_sources)
    if types.refused_all or sources.refused_all:
        raise OutsideScope(types.refused, sources.refused)
    plain = Filter(types.patterns, sources.patterns)
    if not types.check and not sources.check:
        return plain
    return ScopedFilter(plain, Filter(types.check, sources.check))


@dataclass(frozen=True)
class _Kind:
    patterns: tuple[str, ...]          # the narrowed request for this kind, () = all
    check: tuple[str, ...]             # scope patterns still to check, () = none
    refused: tuple[str, ...]           # requested patterns the scope provably excludes
    refused_all: bool


def _narrow_kind(requested: tuple[str, ...], scope: tuple[str, ...] | None) -> _Kind:
    if scope is None:
        return _Kind(requested, (), (), False)
    if not scope:                  # an empty scope list allows nothing of this kind
        return _Kind((), (), requested or _ALL, True)
    within = Filter(scope).matches
    allowed = [_Shape(pattern) for pattern in scope]
    met: set[str] = set()          # exact intersections of a requested and a scope pattern
    unsure: set[str] = set()       # requested patterns meeting the scope in no one pattern
    refused = []
    for pattern in requested or _ALL:
        if "*" not in pattern:
            found = {pattern} if within(pattern, "") else set()
        else:
            shape = _Shape(pattern)
            found = {_intersection(shape, other) for other in allowed} - {_DISJOINT}
        if pattern in found:       # inside the scope: other pairs add nothing
            found = {pattern}
        if not found:
            refused.append(pattern)
        elif _UNSURE in found:
            unsure.add(pattern)
        met |= found - {_UNSURE}
    if "*" in met:                 # both sides allow everything of this kind
        return _Kind((), (), tuple(refused), False)
    if not met and not unsure:
        return _Kind((), (), tuple(refused), True)
    return _Kind(tuple(sorted(met | unsure)), scope if unsure else (), tuple(refused), False)


_DISJOINT = "\0disjoint"       # no pattern holds NUL: these never collide with one
_UNSURE = "\0unsure"


class _Shape:
    """A pattern with its literal start and end (before the first, after the last `*`)."""

    __slots__ = ("text", "first", "last", "stars")

    def __init__(self, text: str):
        parts = text.split("*")
        self.text, self.first, self.last, self.stars = text, parts[0], parts[-1], len(parts) - 1


def _intersection(pattern: _Shape, allowed: _Shape) -> str:
    """The one pattern matching exactly what a wildcard pattern and a scope pattern both
    match, or _DISJOINT when nothing can match both, or _UNSURE when neither can be shown
    (decided conservatively, never wrongly)."""
    if pattern.text == allowed.text or _covers(allowed, pattern):
        return pattern.text
    if not allowed.stars:
        return allowed.text if Filter((pattern.text,)).matches(allowed.text, "") else _DISJOINT
    if _covers(pattern, allowed):
        return allowed.text
    first, last = pattern.first, pattern.last
    if not (first.startswith(allowed.first) or allowed.first.startswith(first)):
        return _DISJOINT
    if not (last.endswith(allowed.last) or allowed.last.endswith(last)):
        return _DISJOINT
    return _UNSURE


def _covers(outer: _Shape, inner: _Shape) -> bool:
    """True if everything wildcard pattern `inner` matches is matched by `outer` (a sufficient
    test, never wrongly true: it only tries an `outer` with one `*`)."""
    # A value of `inner` starts with inner.first and ends with inner.last, which do not
    # overlap, so it starts with outer.first, ends with outer.last and is long enough for both.
    return (outer.stars == 1 and inner.first.startswith(outer.first)
            and inner.last.endswith(outer.last))
