import pytest

from actors.filters import MAX_PATTERNS, Filter, FilterError


@pytest.mark.parametrize("types, event_type, expected", [
    ("blog.*", "blog.post.created", True),
    ("blog.*", "blog", False),
    ("blog.*", "twitchbot.message.created", False),
    ("*.created", "blog.post.created", True),
    ("*.created", "link.clicked", False),
    ("twitchbot.message.*", "twitchbot.message.created", True),
    ("twitchbot.message.*", "twitchbot.messages", False),
    ("blog.post.created,twitchbot.message.created", "twitchbot.message.created", True),
    ("blog.post.created", "blog.post.created.extra", False),
    ("b*g.*.created", "blog.comment.created", True),
    ("", "anything", True),
])
def test_event_type_patterns(types, event_type, expected):
    assert Filter.parse(types, None).matches(event_type, "any") is expected


def test_types_and_sources_combine_with_and():
    flt = Filter.parse("*.created", "blog-service")
    assert flt.matches("blog.post.created", "blog-service")
    assert not flt.matches("blog.post.created", "link-service")
    assert not flt.matches("blog.post.deleted", "blog-service")


def test_multiple_sources():
    flt = Filter.parse(None, "blog-service,twitchbot-service")
    assert flt.matches("x", "twitchbot-service")
    assert not flt.matches("x", "link-service")


def test_regex_characters_are_literal():
    flt = Filter.parse("a.b", None)
    assert not flt.matches("axb", "s")


def test_equal_filters_are_equal_whatever_the_order():
    assert Filter.parse("b,a,a", "y,x") == Filter.parse("a,b", "x,y")
    assert hash(Filter.parse("b,a")) == hash(Filter.parse("a,b"))


def test_empty_entries_are_ignored():
    assert Filter.parse(",blog.*,,", "") == Filter.parse("blog.*", None)


@pytest.mark.parametrize("types", ["blog post", "blog\n.*", "<script>", "a;b", "x" * 201])
def test_malformed_patterns_are_refused(types):
    with pytest.raises(FilterError) as err:
        Filter.parse(types, None)
    assert "event_types" in str(err.value)


def test_too_many_patterns_are_refused():
    with pytest.raises(FilterError, match="at most"):
        Filter.parse(",".join(f"t{i}" for i in range(MAX_PATTERNS + 1)), None)
