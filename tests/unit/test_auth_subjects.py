"""Whose an event is (actors/auth/subjects.py): the subject field spec, the owner read from a
record's key, a header or a path into its data, under hostile input (fails closed, never
raises), and the index from subjects to their streams."""
import json
import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.auth.subjects import (MAX_PATH_DEPTH, MAX_SUBJECT_LENGTH, NOBODY, SubjectField,
                                  SubjectIndex, parse_subject_field)
from actors.events import parse_record
from actors.kafka_reads import Record


def record(key=None, headers=(), value=b"{}"):
    return Record("t", 0, 7, 1000, value, tuple(headers), key)


def body_with(data):
    return {"type": "x", "data": data}


# -- the spec ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("key", SubjectField("key")),
    (" key ", SubjectField("key")),
    ("header:user-id", SubjectField("header", header="user-id")),
    ("header:x:y", SubjectField("header", header="x:y")),
    ("data.user", SubjectField("data", path=("user",))),
    ("data.user.id", SubjectField("data", path=("user", "id"))),
])
def test_a_spec_names_where_the_owner_is(spec, expected):
    field = parse_subject_field(spec)
    assert field == expected
    assert parse_subject_field(field.describe()) == field


@pytest.mark.parametrize("spec, says", [
    ("", "is not one of key, header:<name> or data.<dotted.path>"),
    ("Key", "is not one of"),
    ("value", "is not one of"),
    ("sub", "is not one of"),
    ("header:", "name the header"),
    ("header: user", "name the header"),
    ("header:a\nb", "name the header"),
    ("data", "dotted path"),
    ("data.", "dotted path"),
    ("data.user..id", "dotted path"),
    ("data. user", "dotted path"),
    ("data." + ".".join(["k"] * (MAX_PATH_DEPTH + 1)), f"at most {MAX_PATH_DEPTH} keys"),
])
def test_a_bad_spec_is_refused_with_a_clear_message(spec, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_subject_field(spec)


def test_a_spec_that_is_not_text_is_refused():
    with pytest.raises(ValueError, match="must be text"):
        parse_subject_field(None)          # type: ignore[arg-type]


# -- the owner ---------------------------------------------------------------------------------
KEY = parse_subject_field("key")
HEADER = parse_subject_field("header:owner")
DATA = parse_subject_field("data.user.id")


def test_the_key_owns_the_event():
    assert KEY.owner(record(key=b"alice"), {}) == "alice"
    assert KEY.owner(record(key="caf\u00e9".encode()), {}) == "caf\u00e9"
    assert KEY.owner(record(key=None), {}) is None              # no key: a public event


def test_a_header_owns_the_event():
    assert HEADER.owner(record(headers=[("owner", b"bob"), ("type", b"x")]), {}) == "bob"
    assert HEADER.owner(record(headers=[("type", b"x")]), {}) is None
    assert HEADER.owner(record(headers=[("Owner", b"bob")]), {}) == "bob"    # any case
    assert HEADER.owner(record(headers=[("owner", None)]), {}) is None      # no value: absent
    assert HEADER.owner(record(headers=[("owner", None), ("owner", b"bob")]), {}) == "bob"
    assert HEADER.owner(record(headers=[("owner", b"bob"), ("owner", b"bob")]), {}) == "bob"


def test_a_path_into_the_data_owns_the_event():
    assert DATA.owner(record(), body_with({"user": {"id": "carol"}})) == "carol"
    assert DATA.owner(record(), body_with({"user": {"id": 42}})) == "42"
    assert DATA.owner(record(), body_with({"user": {"id": -7}})) == "-7"


@pytest.mark.parametrize("body", [
    {},                                       # no data
    body_with(None),
    body_with({}),
    body_with({"user": None}),
    body_with({"user": {}}),
    body_with({"user": {"id": None}}),
    body_with({"other": {"id": "carol"}}),
])
def test_an_absent_owner_makes_a_public_event(body):
    assert DATA.owner(record(), body) is None


@pytest.mark.parametrize("value", [
    "", True, False, 1.5, 42.0, [], ["carol"], {}, {"id": "carol"},
    "x" * (MAX_SUBJECT_LENGTH + 1), 10 ** (MAX_SUBJECT_LENGTH + 5),
])
def test_an_unusable_owner_makes_an_event_nobody_gets(value):
    """Fail closed: an owner that is there but unusable must not turn the event public."""
    assert DATA.owner(record(), body_with({"user": {"id": value}})) == NOBODY


@pytest.mark.parametrize("data", ["carol", 7, ["carol"], {"user": "carol"}, {"user": [1]}])
def test_a_path_that_runs_into_something_else_than_an_object_makes_an_event_nobody_gets(data):
    assert DATA.owner(record(), body_with(data)) == NOBODY


@pytest.mark.parametrize("key", [b"", b"\xff\xfe", b"\xc3", b"a" * (4 * MAX_SUBJECT_LENGTH + 1)])
def test_an_unusable_key_makes_an_event_nobody_gets(key):
    assert KEY.owner(record(key=key), {}) == NOBODY


def test_unusable_or_disagreeing_headers_make_an_event_nobody_gets():
    assert HEADER.owner(record(headers=[("owner", b"\xff")]), {}) == NOBODY
    assert HEADER.owner(record(headers=[("owner", b"")]), {}) == NOBODY
    assert HEADER.owner(record(headers=[("owner", b"bob"), ("owner", b"eve")]), {}) == NOBODY
    assert HEADER.owner(record(headers=[("owner", b"bob"), ("owner", b"\xff")]), {}) == NOBODY
    # a producer writing the name in another case still names an owner: never public
    assert HEADER.owner(record(headers=[("owner", b"bob"), ("OWNER", b"eve")]), {}) == NOBODY
    assert HEADER.owner(record(headers=[(b"OwNeR", b"\xff")]), {}) == NOBODY


def test_malformed_records_and_bodies_never_raise():
    odd = [None, 5, "text", b"bytes", ("owner",), ("owner", b"a", b"b"), [None, None]]
    assert HEADER.owner(record(headers=odd), {}) is None
    assert HEADER.owner(record(headers=odd + [("owner", b"bob")]), {}) == "bob"
    assert HEADER.owner(Record("t", 0, 0, 0, b"{}", None, None), {}) is None    # type: ignore
    assert HEADER.owner(record(headers=[(b"owner", b"bob")]), {}) == "bob"
    assert KEY.owner(record(key=12345), {}) == "12345"                         # type: ignore
    assert KEY.owner(record(key=object()), {}) == NOBODY                       # type: ignore
    assert DATA.owner(record(), None) == NOBODY
    assert DATA.owner(record(), ["data"]) == NOBODY
    assert KEY.owner(object(), None) is None                                    # type: ignore
    assert SubjectField("value").owner(record(key=b"a"), {"data": "a"}) == NOBODY


def test_a_deeply_nested_document_is_read_only_as_deep_as_the_path():
    deep: dict = {"id": "carol"}
    for _ in range(10000):
        deep = {"user": deep}
    assert DATA.owner(record(), body_with(deep)) is None      # data.user has no id: public
    assert DATA.owner(record(), body_with({"user": {"id": deep}})) == NOBODY   # id: a dict


def test_the_owner_is_read_from_what_parse_record_accepts():
    value = json.dumps({"type": "order.created", "data": {"user": {"id": "carol"}}}).encode()
    rec = record(key=b"k", value=value)
    parse_record(rec)                                      # the event is valid
    assert DATA.owner(rec, json.loads(value)) == "carol"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["user", "id", "data", "x"]), inner,
                                      max_size=3),
                    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.binary(max_size=40)),
       st.lists(st.tuples(st.sampled_from(["owner", "type", b"owner"]),
                          st.one_of(st.none(), st.binary(max_size=10))), max_size=4),
       st.one_of(JSON, st.dictionaries(st.just("data"), JSON)))
def test_any_record_gives_an_owner_public_or_nobody_without_raising(key, headers, body):
    for field in (KEY, HEADER, DATA, parse_subject_field("data.user")):
        owner = field.owner(record(key=key, headers=headers), body)
        assert owner is None or (isinstance(owner, str) and len(owner) <= MAX_SUBJECT_LENGTH)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_text_owner_is_read_back_exactly_from_key_header_and_data(owner):
    try:
        encoded = owner.encode("utf-8")
    except UnicodeEncodeError:             # lone surrogates: only JSON can carry them
        encoded = None
    if encoded is not None:
        assert KEY.owner(record(key=encoded), {}) == owner
        assert HEADER.owner(record(headers=[("owner", encoded)]), {}) == owner
    assert DATA.owner(record(), body_with({"user": {"id": owner}})) == owner


# -- the index ---------------------------------------------------------------------------------
def test_the_index_finds_a_subjects_streams():
    index: SubjectIndex[str] = SubjectIndex()
    index.add("alice", "c1")
    index.add("alice", "c2")
    index.add("bob", "c3")
    assert index.clients_of("alice") == {"c1", "c2"}
    assert index.clients_of("bob") == {"c3"}
    assert index.clients_of("carol") == frozenset()
    assert index.count("alice") == 2 and index.count("carol") == 0
    assert len(index) == 2 and sorted(index) == ["alice", "bob"]


def test_removing_streams_forgets_the_subject_when_its_last_stream_goes():
    index: SubjectIndex[str] = SubjectIndex()
    index.add("alice", "c1")
    index.add("alice", "c2")
    index.remove("alice", "c1")
    assert index.clients_of("alice") == {"c2"}
    index.remove("alice", "c1")                       # twice: nothing happens
    index.remove("bob", "c1")                         # unknown subject: nothing happens
    index.remove("alice", "c2")
    assert index.clients_of("alice") == frozenset() and len(index) == 0


def test_an_answer_is_a_snapshot_that_later_changes_do_not_touch():
    index: SubjectIndex[str] = SubjectIndex()
    index.add("alice", "c1")
    answer = index.clients_of("alice")
    index.add("alice", "c2")
    index.remove("alice", "c1")
    assert answer == {"c1"}                           # safe to iterate while streams come and go
    assert isinstance(answer, frozenset)


def test_public_and_unusable_owners_reach_no_stream_through_the_index():
    index: SubjectIndex[str] = SubjectIndex()
    index.add("alice", "c1")
    assert index.clients_of(None) == frozenset()
    assert index.clients_of(NOBODY) == frozenset()


@pytest.mark.parametrize("subject", ["", NOBODY, "x" * (MAX_SUBJECT_LENGTH + 1), None, 7])
def test_the_index_refuses_a_subject_that_an_owner_could_never_equal(subject):
    with pytest.raises(ValueError, match="subject is text"):
        SubjectIndex().add(subject, "c1")


def test_an_event_reaches_only_the_streams_of_its_exact_subject():
    """Subjects are compared exactly: an event owned by "alice" must not reach the streams of
    "Alice", " alice" or "ALICE" (other users of an issuer whose subjects differ in case or
    spaces), nor theirs hers."""
    index: SubjectIndex[str] = SubjectIndex()
    index.add("alice", "alice-stream")
    index.add("Alice", "Alice-stream")
    index.add(" alice", "spaced-stream")
    assert index.clients_of("alice") == {"alice-stream"}
    assert index.clients_of("Alice") == {"Alice-stream"}
    assert index.clients_of(" alice") == {"spaced-stream"}
    for other in ("ALICE", "alice ", "aLice", "alice\t"):
        assert index.clients_of(other) == frozenset(), other
    assert index.count("alice") == 1 and len(index) == 3


def _apply(index, model, adding, subject, client):
    """One add or remove, on the index and on its plain model."""
    if adding:
        index.add(subject, client)
        model.setdefault(subject, set()).add(client)
    else:
        index.remove(subject, client)
        model.get(subject, set()).discard(client)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c"]),
                          st.sampled_from(["c1", "c2", "c3", "c4"])), max_size=40))
def test_the_index_agrees_with_a_plain_model(operations):
    index: SubjectIndex[str] = SubjectIndex()
    model: dict[str, set[str]] = {}
    for adding, subject, client in operations:
        _apply(index, model, adding, subject, client)
    for subject in "abc":
        assert index.clients_of(subject) == model.get(subject, set())
        assert index.count(subject) == len(model.get(subject, ()))
    assert set(index) == {s for s, clients in model.items() if clients}


def test_a_stream_coming_or_going_does_not_copy_its_subjects_other_streams():
    """One token's subject holding many streams (SSE_MAX_CLIENTS_PER_SUBJECT=0) must not make
    every open and close of its streams cost a copy of all of them in the broker."""
    index: SubjectIndex[int] = SubjectIndex()
    for client in range(20_000):
        index.add("alice", client)
    assert len(index.clients_of("alice")) == 20_000
    tracemalloc.start()
    try:
        for client in range(20_000, 20_200):
            index.add("alice", client)
            index.remove("alice", client)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64_000            # a copy of 20,000 clients is some 1,000,000 bytes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b"]),
                          st.sampled_from(["c1", "c2", "c3"])), max_size=30))
def test_every_answer_agrees_with_a_plain_model_at_the_time_it_was_given(operations):
    index: SubjectIndex[str] = SubjectIndex()
    model: dict[str, set[str]] = {}
    answers = []
    for adding, subject, client in operations:
        _apply(index, model, adding, subject, client)
        answers.append((index.clients_of(subject), frozenset(model.get(subject, ()))))
    assert all(answer == expected for answer, expected in answers)
