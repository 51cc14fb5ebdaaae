"""A requested filter narrowed to a subject's scope (actors/auth/scope.py): the rules, hostile
scopes, and properties over random requests, scopes and events: the narrowed filter matches
exactly what both the request and the scope match, and a refusal is never wrong."""
import re
import time
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.auth.scope import OutsideScope, Scope, ScopedFilter, ScopeError
from actors.filters import MAX_PATTERNS, MAX_WILDCARDS, Filter


def types(*patterns):
    return Filter(tuple(sorted(patterns)))


def narrow(requested, scope_types, scope_sources):
    """`requested` narrowed to the scope of these lists (or comma-separated text)."""
    return Scope.parse(scope_types, scope_sources).narrow(requested)


# -- the rules ---------------------------------------------------------------------------------
def test_an_absent_scope_leaves_the_request_as_it_is():
    requested = Filter(("blog.*",), ("svc-a",))
    assert narrow(requested, None, None) is requested


def test_an_empty_request_means_everything_in_the_scope():
    assert narrow(Filter(), ["shop.*", "blog.post"], None) == types("blog.post", "shop.*")
    assert narrow(Filter(), None, ["svc-*"]) == Filter((), ("svc-*",))


def test_a_scope_of_everything_leaves_the_request_as_it_is():
    assert narrow(types("blog.*"), ["*"], None) == types("blog.*")
    assert narrow(Filter(), ["*"], ["*"]) == Filter()


def test_a_wider_request_narrows_to_the_scope_pattern():
    assert narrow(types("blog.*"), ["blog.post.*"], None) == types("blog.post.*")
    assert narrow(types("*"), ["blog.*"], None) == types("blog.*")


def test_a_request_inside_the_scope_stays_as_it_is():
    assert narrow(types("blog.post.*"), ["blog.*"], None) == types("blog.post.*")
    assert narrow(types("blog.post.created"), ["blog.*"], None) == types("blog.post.created")
    assert narrow(types("a*z"), ["a*"], None) == types("a*z")
    assert narrow(types("ab*yz"), ["a*z"], None) == types("ab*yz")


def test_a_request_inside_one_scope_pattern_needs_no_second_check():
    assert narrow(types("blog.*"), ["blog.*", "*.deleted"], None) == types("blog.*")


def test_scope_literals_inside_a_requested_pattern_are_kept():
    assert narrow(types("blog.*"), ["blog.post", "shop.order"], None) == types("blog.post")


def test_the_parts_of_a_request_outside_the_scope_are_dropped():
    narrowed = narrow(types("blog.post", "admin.user", "x*"), ["blog.*"], None)
    assert narrowed == types("blog.post")


def test_a_literal_request_outside_the_scope_is_refused_and_named():
    with pytest.raises(OutsideScope) as refused:
        narrow(types("admin.user", "admin.role"), ["blog.*"], None)
    assert refused.value.refused_types == ("admin.role", "admin.user")
    assert refused.value.refused_sources == ()
    assert "event_types=admin.role,admin.user" in str(refused.value)


def test_a_literal_request_is_compared_with_the_scope_in_its_own_case():
    """A token scoped to blog.* must not read events of type Blog.post (or a source SVC-A
    when scoped to svc-a): such a request is refused, or narrowed to what the scope allows."""
    with pytest.raises(OutsideScope) as refused:
        narrow(types("Blog.post"), ["blog.*"], None)
    assert refused.value.refused_types == ("Blog.post",)
    with pytest.raises(OutsideScope) as source:
        narrow(Filter((), ("SVC-A",)), None, ["svc-a"])
    assert source.value.refused_sources == ("SVC-A",)
    narrowed = narrow(types("Blog.post", "blog.post"), ["blog.*"], None)
    assert narrowed == types("blog.post") and not narrowed.matches("Blog.post", "svc")


@pytest.mark.parametrize("request_pattern, scope_pattern", [
    ("x*", "blog.*"),                 # the literal starts cannot agree
    ("*.a", "*.b"),                   # the literal ends cannot agree
    ("blog*x", "blog.*y"),
    ("a*b*c", "b*"),
])
def test_patterns_that_provably_never_meet_are_refused(request_pattern, scope_pattern):
    with pytest.raises(OutsideScope) as refused:
        narrow(types(request_pattern), [scope_pattern], None)
    assert refused.value.refused_types == (request_pattern,)


def test_an_empty_scope_list_allows_nothing_of_its_kind():
    with pytest.raises(OutsideScope) as refused:
        narrow(types("blog.*"), [], None)
    assert refused.value.refused_types == ("blog.*",)
    with pytest.raises(OutsideScope) as literal:
        narrow(Filter((), ("svc-a",)), None, [])
    assert literal.value.refused_sources == ("svc-a",)
    with pytest.raises(OutsideScope) as everything:
        narrow(Filter(), None, [])
    assert everything.value.refused_sources == ("*",)        # `*`: the empty request
    assert "sources=*" in str(everything.value)


def test_sources_wholly_outside_refuse_the_request_even_when_its_types_fit():
    with pytest.raises(OutsideScope) as refused:
        narrow(Filter(("blog.*",), ("svc-b", "svc-c")), ["blog.*"], ["svc-a"])
    assert refused.value.refused_types == ()
    assert refused.value.refused_sources == ("svc-b", "svc-c")


def test_the_kinds_narrow_independently():
    narrowed = narrow(Filter(("blog.*",), ()), None, ["svc-a", "svc-b"])
    assert narrowed == Filter(("blog.*",), ("svc-a", "svc-b"))


def test_a_pair_with_no_single_pattern_intersection_checks_both():
    narrowed = narrow(Filter(("*.created",), ("svc-*",)), ["blog.*"], ["svc-a"])
    assert isinstance(narrowed, ScopedFilter)
    assert narrowed.requested == Filter(("*.created",), ("svc-a",))
    assert narrowed.scope == Filter(("blog.*",), ())     # sources need no second check
    assert narrowed.matches("blog.post.created", "svc-a")
    assert narrowed.matches("blog.created", "svc-a")
    assert not narrowed.matches("shop.order.created", "svc-a")
    assert not narrowed.matches("blog.post.deleted", "svc-a")
    assert not narrowed.matches("blog.post.created", "svc-b")
    assert narrowed.event_types == ("*.created",) and narrowed.sources == ("svc-a",)
    assert narrowed.describe() == "event_types=*.created&sources=svc-a within scope " \
                                  "event_types=blog.*"


def test_narrowed_filters_group_like_filters():
    """The broker keys its groups by (filter, named): equal inputs give equal, hashable keys."""
    first = narrow(types("*.created"), ["blog.*", "shop.*"], None)
    second = narrow(types("*.created"), ("shop.*", "blog.*"), None)
    other = narrow(types("*.created"), ["blog.*"], None)
    assert first == second and hash(first) == hash(second)
    assert first != other
    groups = {(first, True): 1, (second, True): 2, (other, True): 3}
    assert len(groups) == 2
    plain = narrow(Filter(), ["blog.*"], None)
    assert plain == Filter(("blog.*",)) and {plain: 1}[Filter(("blog.*",))] == 1


def test_scope_patterns_are_normalised_like_filters():
    assert narrow(Filter(), ["b**", " a ", "b*", ""], None) == types("a", "b*")


# -- hostile and malformed scopes ----------------------------------------------------------
@pytest.mark.parametrize("bad, says", [
    (["a b"], "may only contain"),
    (["x<script>"], "may only contain"),
    ([f"a{i}" for i in range(MAX_PATTERNS + 1)], "at most"),
    (["*a" * (MAX_WILDCARDS + 1)], "wildcards"),
    (["a" * 1000], "longer than"),
    ([1, 2], "one pattern"),
    ([None], "one pattern"),
    ([["nested"]], "one pattern"),
    (["a,b"], "without a comma"),
    ({"a": 1}, "list of patterns"),
    (42, "list of patterns"),
])
def test_a_malformed_scope_is_refused_with_a_reason(bad, says):
    with pytest.raises(ScopeError, match=says):
        narrow(Filter(), bad, None)
    with pytest.raises(ScopeError, match=says):
        Scope.parse(None, bad)


def test_a_scope_is_checked_and_normalised_however_it_is_made():
    assert Scope(("b*", "a", "a"), None) == Scope.parse(["a", "b**"]) == Scope(("a", "b*"))
    with pytest.raises(ScopeError, match="may only contain"):
        Scope(("a b",))


def test_a_scope_narrows_and_describes_itself():
    scope = Scope.parse(["blog.*"], [])
    assert scope.describe() == "event_types=blog.*&sources=(none)"
    assert Scope().describe() == "all"
    assert Scope.parse("blog.*").narrow(types("blog.x", "y")) == types("blog.x")
    with pytest.raises(OutsideScope):
        scope.narrow(Filter())


def test_narrowing_the_largest_requests_and_scopes_stays_cheap():
    from actors.auth import scope as module
    cases = [
        (types(*(f"t{i}" for i in range(MAX_PATTERNS))), [f"t{i}" for i in range(50, 150)]),
        (types(*(f"a{i}*" for i in range(MAX_WILDCARDS))), [f"*b{i}" for i in range(32)]),
        (types(*(f"*{i}*" for i in range(16))), [f"*{i}*" for i in range(5, 21)]),
    ]
    for requested, scope in cases:
        module._narrow.cache_clear()
        started = time.perf_counter()
        try:
            narrow(requested, scope, scope)
        except OutsideScope:
            pass
        assert time.perf_counter() - started < 0.25         # ~5 ms measured; loaded machine


def test_matching_through_a_scoped_filter_costs_at_most_a_few_plain_matches():
    requested = types("*.created", "*.updated")
    narrowed = narrow(requested, ["blog.*", "shop.*"], None)
    assert isinstance(narrowed, ScopedFilter)
    events = [(f"{d}.{k}.{v}", "svc") for d in ("blog", "shop", "chat") for k in ("a", "b")
              for v in ("created", "updated", "deleted")] * 200

    def cost(flt):
        match = flt.matches
        best = float("inf")
        for _ in range(7):
            started = time.perf_counter()
            for event_type, source in events:
                match(event_type, source)
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(narrowed) < 4 * cost(requested)             # ~1.5x measured


# -- properties ----------------------------------------------------------------------------
PATTERN = st.text("abA.*", min_size=1, max_size=5).map(lambda p: re.sub(r"\*+", "*", p))
PATTERNS = st.lists(PATTERN, max_size=3).map(lambda ps: tuple(sorted(set(ps))))
SCOPE_LIST = st.one_of(st.none(), PATTERNS)
VALUE = st.text("abA.", max_size=6)


@lru_cache(maxsize=None)
def _regex(pattern):
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.DOTALL)


def ref(patterns, value, empty_means_all):
    """The reference: a glob match by regex, independent of actors.filters."""
    if patterns is None or (not patterns and empty_means_all):
        return True
    return any(_regex(p).fullmatch(value) for p in patterns)


def both_match(requested, scope_types, scope_sources, event_type, source):
    return (ref(requested.event_types, event_type, True) and ref(requested.sources, source, True)
            and ref(scope_types, event_type, False) and ref(scope_sources, source, False))


def witnesses(patterns_a, patterns_b):
    """Values likely to match a pattern of each list: each pattern with its `*` filled in by
    pieces of the other list's patterns."""
    pieces = {"", "a", "b", "."} | {part for p in patterns_a + patterns_b for part in p.split("*")}
    return {p.replace("*", piece) for p in patterns_a + patterns_b for piece in pieces}


@settings(max_examples=400, deadline=None)
@given(PATTERNS, PATTERNS, SCOPE_LIST, SCOPE_LIST, st.lists(st.tuples(VALUE, VALUE), max_size=8))
def test_narrowing_matches_exactly_what_request_and_scope_both_match(
        request_types, request_sources, scope_types, scope_sources, events):
    requested = Filter(request_types, request_sources)
    type_values = witnesses(request_types, scope_types or ()) | {t for t, _ in events}
    source_values = witnesses(request_sources, scope_sources or ()) | {s for _, s in events}
    try:
        narrowed = narrow(requested, scope_types, scope_sources)
    except OutsideScope:
        narrowed = None
    for event_type in type_values:
        for source in source_values:
            expected = both_match(requested, scope_types, scope_sources, event_type, source)
            if narrowed is None:
                assert not expected, f"refused, yet {event_type!r}/{source!r} is in both"
                continue
            assert narrowed.matches(event_type, source) == expected
            if narrowed.matches(event_type, source):            # never wider than either
                assert requested.matches(event_type, source)


@settings(max_examples=200, deadline=None)
@given(PATTERNS, SCOPE_LIST, SCOPE_LIST)
def test_narrowing_is_stable_and_a_second_narrowing_changes_nothing(
        request_types, scope_types, scope_sources):
    requested = Filter(request_types)
    try:
        narrowed = narrow(requested, scope_types, scope_sources)
    except OutsideScope as refused:
        assert set(refused.refused_types) <= set(request_types or ("*",))
        return
    assert narrowed == narrow(requested, scope_types, scope_sources)
    if isinstance(narrowed, Filter):
        again = narrow(narrowed, scope_types, scope_sources)
        for value in witnesses(request_types, scope_types or ()):
            assert again.matches(value, "s") == narrowed.matches(value, "s")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.lists(st.text(max_size=12), max_size=5),
                 st.integers(), st.dictionaries(st.text(max_size=5), st.text(max_size=5))))
def test_any_scope_value_is_read_or_refused_with_a_scope_error(value):
    try:
        narrow(Filter(("a*",)), value, value)
    except (ScopeError, OutsideScope):
        pass


def test_a_credential_given_as_a_filter_entry_is_not_echoed_by_the_refusal():
    """A client that put its token or ticket in event_types got it back whole in the 403 body
    ("outside your scope: event_types=eyJ..."), where proxies and browser tools keep it."""
    from tests.unit.test_auth_redact import JWT, TICKET
    with pytest.raises(OutsideScope) as refused:
        narrow(types(JWT, TICKET, "admin.user"), ["blog.*"], None)
    assert JWT not in str(refused.value) and TICKET not in str(refused.value)
    assert "event_types=***,admin.user,***" in str(refused.value)     # in sorted order
