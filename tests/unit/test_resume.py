from hypothesis import given, settings, strategies as st

from actors.resume import Frontier, decode, foreign

TOPICS = ("blog.posts", "link.clicks", "twitchbot.messages")


def test_round_trip_and_partitions_not_covered():
    frontier = Frontier(TOPICS, {("blog.posts", 0): 10, ("blog.posts", 1): 7,
                                 ("link.clicks", 0): 3})
    assert decode(TOPICS, frontier.token()) == frontier.offsets
    frontier.advance("twitchbot.messages", 0, 99)
    assert decode(TOPICS, frontier.token())[("twitchbot.messages", 0)] == 99


def test_ids_are_short_for_busy_topics():
    offsets = {(t, p): 4_000_000 + 37 * p + 1000 * i
               for i, t in enumerate(TOPICS) for p in range(3)}
    token = Frontier(TOPICS, offsets).token()
    assert len(token) <= 40, token
    six = TOPICS + ("a", "b", "c")
    offsets = {(t, p): 1_000_000 + p for t in six for p in range(3)}
    assert len(Frontier(six, offsets).token()) <= 68


def test_an_id_of_many_partitions_comes_back():
    """512 partitions at offsets near 10**8 (a few million apart): the id the gateway issues
    is over 2,000 characters, and must still be understood when a client resumes with it.
    gunicorn takes a header field of up to 8,190 bytes."""
    topics = tuple(f"topic{i}" for i in range(8))
    offsets = {(t, p): 100_000_000 + (p * 7_919_113 + i * 104_729) % 3_000_000
               for i, t in enumerate(topics) for p in range(64)}
    token = Frontier(topics, offsets).token()
    assert 2048 < len(token) < 8000
    assert decode(topics, token) == offsets


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


def test_an_id_from_before_a_topic_was_recreated_resumes_that_topic_from_its_beginning():
    import uuid
    from actors.resume import Incarnations, read
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.uuid4())
    kafka.learn("link.clicks", uuid.uuid4())
    offsets = {("blog.posts", 0): 20, ("blog.posts", 1): 4, ("link.clicks", 0): 7}
    token = Frontier(TOPICS, offsets, kafka).token()
    assert read(TOPICS, token, kafka).recreated == {}
    assert kafka.learn("blog.posts", uuid.uuid4())            # deleted and created again
    position = read(TOPICS, token, kafka)
    assert position.offsets == {("link.clicks", 0): 7}
    assert position.recreated == {("blog.posts", 0): 20, ("blog.posts", 1): 4}
    fresh = Frontier(TOPICS, {("blog.posts", 0): 3}, kafka).token()
    assert fresh != Frontier(TOPICS, {("blog.posts", 0): 3}).token()   # the tag is in the id
    assert read(TOPICS, fresh, kafka).offsets == {("blog.posts", 0): 3}


def test_an_id_read_before_any_incarnation_is_known_names_its_topics_to_check_later():
    import uuid
    from actors.resume import Incarnations, read, stale
    issued, now = Incarnations(), Incarnations()
    issued.learn("blog.posts", uuid.uuid4())
    token = Frontier(TOPICS, {("blog.posts", 0): 20, ("link.clicks", 0): 3}, issued).token()
    position = read(TOPICS, token, now)                # a gateway that has just started
    assert position.offsets == {("blog.posts", 0): 20, ("link.clicks", 0): 3}
    assert set(position.unverified) == {"blog.posts"}  # link.clicks carried no tag
    assert stale(position.unverified, now) == set()    # still unknown: nothing to say
    now.learn("blog.posts", issued.ids["blog.posts"])
    assert stale(position.unverified, now) == set()    # the same incarnation
    now.learn("blog.posts", uuid.uuid4())
    assert stale(position.unverified, now) == {"blog.posts"}


def test_a_new_topic_id_is_a_recreation_even_when_its_tag_equals_the_old_ones():
    import uuid
    from actors.resume import Incarnations, incarnation_tag
    old = uuid.UUID(int=7)
    twin = uuid.UUID(int=7 + 65535)                   # another id, the same tag
    assert incarnation_tag(old) == incarnation_tag(twin)
    kafka = Incarnations()
    assert not kafka.learn("blog.posts", old)
    assert not kafka.learn("blog.posts", old)
    assert kafka.learn("blog.posts", twin)
    assert not kafka.learn("blog.posts", None)        # unknown for a moment: nothing changed
    assert not kafka.learn("blog.posts", twin)


def test_an_id_tells_incarnations_apart_that_one_byte_would_not():
    import uuid
    from actors.resume import Incarnations, read
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.UUID(int=7))
    token = Frontier(TOPICS, {("blog.posts", 0): 20}, kafka).token()
    kafka.learn("blog.posts", uuid.UUID(int=7 + 255))       # the same byte, another topic id
    assert read(TOPICS, token, kafka).recreated == {("blog.posts", 0): 20}


def test_a_version_2_id_is_read_with_its_one_byte_incarnation():
    import base64
    import uuid
    from actors.resume import Incarnations, incarnation_tag, read, topics_check
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.UUID(int=1000))
    tags = [incarnation_tag(uuid.UUID(int=1000), width=1), 0, 0]
    body = b"".join(bytes([tag, 1, 10]) for tag in tags)           # partition 0 at 5 each
    v2 = base64.urlsafe_b64encode(bytes([2]) + topics_check(TOPICS) + body).rstrip(b"=")
    assert read(TOPICS, v2.decode(), kafka).offsets == {(t, 0): 5 for t in TOPICS}
    kafka.learn("blog.posts", uuid.UUID(int=2000))
    assert read(TOPICS, v2.decode(), kafka).recreated == {("blog.posts", 0): 5}


def test_version_1_ids_and_unknown_topic_ids_are_still_understood():
    import base64
    import uuid
    from actors.resume import Incarnations, read, topics_check
    raw = bytes([1]) + topics_check(TOPICS) + bytes([1, 10, 0, 0])   # blog.posts:0 at 5
    v1 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert read(TOPICS, v1, Incarnations()).offsets == {("blog.posts", 0): 5}
    assert not Incarnations().learn("blog.posts", None)
    known = Incarnations()
    known.learn("blog.posts", uuid.UUID(int=5))                # as in a running gateway
    assert read(TOPICS, v1, known).offsets == {("blog.posts", 0): 5}


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 4),
                          st.integers(0, 2**40)), max_size=60))
def test_an_id_kept_up_to_date_record_by_record_equals_one_encoded_from_scratch(steps):
    live = Frontier(["a", "b"])
    for topic, partition, offset in steps:
        live.advance(topic, partition, offset)
        assert live.token() == Frontier(["a", "b"], dict(live.offsets)).token()


def _covering_model(token_offsets, floor):
    """covering, from its definition: a partition an id leaves out is read from offset 0."""
    keys = token_offsets.keys() | floor.keys()
    if all(token_offsets.get(k, 0) >= floor.get(k, 0) for k in keys):
        return None
    return {k: max(token_offsets.get(k, 0), floor.get(k, 0)) for k in keys}


_POSITIONS = st.dictionaries(st.tuples(st.sampled_from(TOPICS), st.integers(0, 3)),
                             st.integers(0, 2**40), max_size=8)


@settings(max_examples=500)
@given(_POSITIONS, _POSITIONS)
def test_covering_agrees_with_its_model(token_offsets, floor):
    from actors.resume import covering
    token = Frontier(TOPICS, token_offsets).token()
    expected = _covering_model(decode(TOPICS, token), floor)
    assert covering(TOPICS, token, floor) == expected


def test_an_id_without_a_partition_the_client_has_seen_does_not_cover_it():
    """This instance does not list a partition yet (added lately, or its leader down when it
    started): its ids leave it out, which means "from its beginning". A client that saw 500
    events of it elsewhere must be given ids that keep them."""
    from actors.resume import covering
    token = Frontier(TOPICS, {("blog.posts", 0): 10}).token()
    floor = {("blog.posts", 0): 4, ("blog.posts", 1): 500}
    assert covering(TOPICS, token, floor) == {("blog.posts", 0): 10, ("blog.posts", 1): 500}


@settings(max_examples=300)
@given(_POSITIONS, st.data())
def test_a_cut_or_lengthened_id_is_refused_not_misread(offsets, data):
    """A proxy that truncates a header, or junk after an id: never another position."""
    token = Frontier(TOPICS, offsets).token()
    cut = data.draw(st.integers(0, len(token) - 1))
    assert decode(TOPICS, token[:cut]) is None
    tail = data.draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                             min_size=2, max_size=12))
    assert decode(TOPICS, token + tail) is None


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from([1, 2, 3]))
def test_any_body_after_a_valid_header_is_read_or_refused_without_error(body, version):
    """Forged ids reach the varint reader: huge or endless varints, counts larger than the
    id, negative sums. Each is a position of non-negative offsets or None, never an error."""
    import base64
    from actors.resume import read, topics_check
    raw = bytes([version]) + topics_check(TOPICS) + body
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    found = read(TOPICS, token)
    assert found is None or all(o >= 0 for o in [*found.offsets.values(),
                                                 *found.recreated.values()])


def test_an_id_of_the_same_topics_in_another_order_is_refused():
    token = Frontier(TOPICS, {("blog.posts", 0): 5, ("link.clicks", 0): 9}).token()
    for order in [TOPICS[::-1], (TOPICS[1], TOPICS[0], TOPICS[2]), TOPICS[:2]]:
        assert decode(order, token) is None


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5),
                          st.integers(0, 2**40)), max_size=40))
def test_an_id_holds_every_partition_of_its_frontier(steps):
    """A partition below another may be missing from the frontier (its leader was down when
    the gateway started: it is read later). The partitions above it must stay in the id: left
    out, they would be read again from their beginning on a resume. The missing one reads as
    0, which means the same as absent: from its beginning."""
    live = Frontier(["a", "b"])
    for topic, partition, offset in steps:
        live.advance(topic, partition, offset)
        found = decode(["a", "b"], live.token())
        assert {k: o for k, o in found.items() if k in live.offsets} == live.offsets
        assert all(o == 0 for k, o in found.items() if k not in live.offsets)
        assert Frontier(["a", "b"], dict(live.offsets)).token() == live.token()


def test_partitions_above_a_leaderless_one_stay_in_the_id():
    frontier = Frontier(TOPICS, {("blog.posts", 0): 5, ("blog.posts", 2): 7000})
    assert decode(TOPICS, frontier.token()) == {("blog.posts", 0): 5, ("blog.posts", 1): 0,
                                                ("blog.posts", 2): 7000}
    frontier.advance("blog.posts", 2, 7001)
    frontier.advance("blog.posts", 1, 40)          # its leader is back
    assert decode(TOPICS, frontier.token()) == {("blog.posts", 0): 5, ("blog.posts", 1): 40,
                                                ("blog.posts", 2): 7001}


def test_an_id_of_other_kafka_topics_is_told_apart_from_garbage():
    """Both are refused; an id of a gateway whose KAFKA_TOPICS differ (a topic added, or the
    same in another order) is recognised as such, so the operator can be told."""
    token = Frontier(TOPICS, {("blog.posts", 0): 1, ("link.clicks", 2): 10**6}).token()
    added = (*TOPICS, "orders")
    assert decode(added, token) is None and foreign(added, token) is not None
    assert foreign(TOPICS[::-1], token) == foreign(added, token)     # its own list's check
    assert foreign(TOPICS, token) is None                             # ours: read, not foreign
    for garbage in ("", "!!!", "someone-else:42", "3f9c0a2b7d41", token + "_", token[:-2],
                    "9b2e0000-aaaa-bbbb-cccc-1234567890ab"):
        assert foreign(added, garbage) is None


# -- ids across versions and restarts (a mutation audit) -------------------------------------
def test_ids_issued_by_this_release_read_the_same_in_the_next_one():
    """Golden vectors: a client resumes, after a rolling upgrade, with an id an older gateway
    gave it. Had the incarnation tag's formula changed, every such id would say its topics
    were re-created: each client shown blog.posts again from its beginning."""
    import uuid
    from actors.resume import Incarnations, incarnation_tag, read
    assert incarnation_tag(uuid.UUID(int=7)) == 8
    assert incarnation_tag(uuid.UUID(int=1000), width=1) == 236
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.UUID(int=7))
    v3 = "A3PiAAgBKAAAAQYAAAA"                     # blog.posts:0 at 20, link.clicks:0 at 3
    offsets = {("blog.posts", 0): 20, ("link.clicks", 0): 3}
    assert Frontier(TOPICS, offsets, kafka).token() == v3
    assert read(TOPICS, v3, kafka).offsets == offsets and read(TOPICS, v3, kafka).recreated == {}
    kafka.learn("blog.posts", uuid.UUID(int=1000))
    v2 = "AnPi7AEKAAEKAAEK"                        # partition 0 of each topic at 5
    position = read(TOPICS, v2, kafka)
    assert position.offsets == {(t, 0): 5 for t in TOPICS} and position.recreated == {}


def test_an_id_issued_before_the_incarnations_were_known_resumes_where_it_says():
    """A gateway that had just started, before it had Kafka's topic ids, gave ids with no
    incarnation (0). Read once the topics are known, such an id said nothing of a re-creation:
    it must resume where it says, not replay blog.posts from its beginning."""
    import uuid
    from actors.resume import Incarnations, read
    token = Frontier(TOPICS, {("blog.posts", 0): 20}, Incarnations()).token()
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.UUID(int=7))
    position = read(TOPICS, token, kafka)
    assert position.offsets == {("blog.posts", 0): 20} and position.recreated == {}


def test_an_id_given_for_a_version_2_id_before_the_incarnations_were_known_resumes_where_it_says():
    """A client came back with a version 2 id (a one-byte incarnation) to a gateway that had
    just started. The id it was given then must not carry that byte as a two-byte tag: read
    once the topic is known, it would say blog.posts was re-created, and replay it all."""
    import uuid
    from actors.resume import Incarnations, read
    v2 = "AnPi7AEKAAEKAAEK"                        # blog.posts of topic id 1000, each at 5
    just_started = Incarnations()
    position = read(TOPICS, v2, just_started)
    given = Frontier(TOPICS, position.offsets, just_started).token(position.unverified)
    kafka = Incarnations()
    kafka.learn("blog.posts", uuid.UUID(int=1000))               # not re-created meanwhile
    again = read(TOPICS, given, kafka)
    assert again.offsets == {(t, 0): 5 for t in TOPICS} and again.recreated == {}
