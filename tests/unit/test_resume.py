from hypothesis import given, strategies as st

from actors.resume import Frontier, decode

TOPICS = ("blog.posts", "link.clicks", "twitchbot.messages")


def test_round_trip_and_partitions_not_covered():
    frontier = Frontier(TOPICS, {("blog.posts", 0): 10, ("blog.posts", 1): 7, ("link.clicks", 0): 3})
    assert decode(TOPICS, frontier.token()) == frontier.offsets
    frontier.advance("twitchbot.messages", 0, 99)
    assert decode(TOPICS, frontier.token())[("twitchbot.messages", 0)] == 99


def test_ids_are_short_for_busy_topics():
    offsets = {(t, p): 4_000_000 + 37 * p + 1000 * i for i, t in enumerate(TOPICS) for p in range(3)}
    token = Frontier(TOPICS, offsets).token()
    assert len(token) <= 40, token
    six = TOPICS + ("a", "b", "c")
    offsets = {(t, p): 1_000_000 + p for t in six for p in range(3)}
    assert len(Frontier(six, offsets).token()) <= 60


def test_an_id_of_another_configuration_or_garbage_is_refused():
    token = Frontier(TOPICS, {("blog.posts", 0): 1}).token()
    assert decode(("other",), token) is None
    for garbage in ("", "!!!", "blog.posts:0:1", "A" * 5000, token + "AAAA", token[:-1] + "*"):
        assert decode(TOPICS, garbage) is None


@given(st.dictionaries(st.sampled_from(TOPICS), st.lists(st.integers(0, 2**48), max_size=6)))
def test_any_frontier_round_trips(per_topic):
    offsets = {(t, p): o for t, values in per_topic.items() for p, o in enumerate(values)}
    token = Frontier(TOPICS, offsets).token()
    assert decode(TOPICS, token) == offsets
    assert all(c.isalnum() or c in "-_" for c in token)


@given(st.text(max_size=80))
def test_decoding_never_crashes(text):
    result = decode(TOPICS, text)
    assert result is None or all(v >= 0 for v in result.values())
