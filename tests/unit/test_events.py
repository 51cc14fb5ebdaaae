import json

import pytest

from actors.events import InvalidRecord, events_from_records, parse_record, with_id
from actors.kafka_reads import Record
from actors.resume import Frontier, decode
from tests.sse import parse_stream

TOPICS = ("blog.posts",)
P0, P1, P2 = (("blog.posts", p) for p in range(3))
AFTER = decode(TOPICS, Frontier(TOPICS, {P0: 0, P1: 0, P2: 42}).token())   # the id of 2:41


def _record(value, headers=()):
    return Record("blog.posts", 2, 41, 1736164800123, value, tuple(headers))


def _map(value, headers=(), max_bytes=262144):
    """The event the consumer makes of the record at blog.posts:2:41, or its InvalidRecord."""
    frontier = Frontier(TOPICS, {P0: 0, P1: 0, P2: 41})
    batch = events_from_records([_record(value, headers)], frontier, max_bytes)
    if batch.invalid:
        raise batch.invalid[0][1]
    [event] = batch.events
    return event


def _body(event):
    [frame] = parse_stream(event.named)
    return frame, json.loads(frame["data"])


def test_full_event_keeps_its_fields_and_gets_a_position_id():
    event = _map(json.dumps({"id": "abc-1", "type": "blog.post.created", "source": "blog-service",
                             "timestamp": "2025-01-06T12:00:00Z", "data": {"post_id": "123"}}).encode())
    frame, body = _body(event)
    assert decode(TOPICS, frame["id"]) == AFTER == {P0: 0, P1: 0, P2: 42}
    assert frame["event"] == "blog.post.created"
    assert body == {"id": "abc-1", "type": "blog.post.created", "source": "blog-service",
                    "timestamp": "2025-01-06T12:00:00Z", "data": {"post_id": "123"}}


def test_missing_fields_are_derived_from_the_record():
    event = _map(b'{"data": {"x": 1}}')
    _, body = _body(event)
    assert body["id"] == "blog.posts-2-41"
    assert body["timestamp"] == "2025-01-06T12:00:00.123Z"
    assert body["type"] == "blog.posts" and body["source"] == "unknown"


def test_type_and_source_fall_back_to_headers():
    event = _map(b'{"data": 1}', headers=[("type", b"link.clicked"), ("source", b"link-service")])
    assert (event.type, event.source) == ("link.clicked", "link-service")


def test_plain_frame_has_same_data_without_event_name():
    event = _map(b'{"type": "a.b", "data": 1}')
    [plain] = parse_stream(event.plain)
    assert plain["event"] == "message" and plain["data"] == _body(event)[0]["data"]


@pytest.mark.parametrize("value, reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "list"),
    (b'"text"', "str"),
    (b"\xff\xfe", "not JSON"),
    (b'{"type": 5}', "must be a string"),
    (b'{"source": ["a"]}', "must be a string"),
    (b'{"timestamp": 1733220000000}', "'timestamp' must be a string"),   # as the README says
    (b'{"id": 1.5}', "'id' must be a string"),
    (b'{"id": true}', "'id' must be a string, got bool"),      # not the id "True"
    (b'{"data": NaN}', "not JSON"),
    (None, "tombstone"),
])
def test_invalid_values_are_refused_with_a_reason(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_record(_record(value))


def test_an_integer_id_is_taken_as_its_digits():
    assert _body(_map(b'{"id": 42, "type": "a.b"}'))[1]["id"] == "42"


def test_oversized_values_are_refused():
    with pytest.raises(InvalidRecord, match="SSE_MAX_EVENT_BYTES"):
        _map(b'{"data": "' + b"x" * 2000 + b'"}', max_bytes=1000)


@pytest.mark.parametrize("as_is", [True, False])
def test_an_event_of_exactly_sse_max_event_bytes_is_taken_and_one_byte_more_is_not(as_is):
    """The limit is the largest event taken, as the README says; either way an event is sent
    (its own text, or the JSON the gateway makes of it)."""
    head = (b'{"id":"e1","type":"a.b","source":"s","timestamp":"2025-01-06T12:00:00Z","data":"'
            if as_is else b'{"data":"')
    value = head + b"x" * (1000 - len(head) - 2) + b'"}'
    assert len(value) == 1000
    if as_is:
        assert _body(_map(value, max_bytes=1000))[0]["data"] == value.decode()
    else:                           # the JSON the gateway makes, its fields filled in, is larger
        made = len(_body(_map(value, max_bytes=10_000))[0]["data"].encode())
        assert _map(value, max_bytes=made)
        with pytest.raises(InvalidRecord, match=f"SSE_MAX_EVENT_BYTES={made - 1}"):
            _map(value, max_bytes=made - 1)
    with pytest.raises(InvalidRecord, match="SSE_MAX_EVENT_BYTES=999"):
        _map(value, max_bytes=999)


@pytest.mark.parametrize("headers", [[("type", b"")], [("type", None)]])
def test_an_empty_type_header_falls_back_to_the_topic(headers):
    assert _map(b'{"data": 1}', headers=headers).type == "blog.posts"


def test_a_record_time_before_1970_is_taken_as_none():
    """A producer's clock set before the epoch (or a bad timestamp) gives no time, not 1969."""
    frontier = Frontier(TOPICS, {P0: 0, P1: 0, P2: 41})
    record = Record("blog.posts", 2, 41, -5, b'{"data": 1}', ())
    [event] = events_from_records([record], frontier, 262144).events
    assert event.timestamp_ms == 0 and _body(event)[1]["timestamp"].startswith("1970-01-01T")


@pytest.mark.parametrize("name", ["type", "source"])
def test_a_header_that_takes_the_event_past_the_limit_is_refused(name):
    """A type or source from a header is part of the event too: a small value with a header
    of 1 MB would otherwise be an event of 1 MB (twice in its frame) under a limit of 1,000."""
    with pytest.raises(InvalidRecord, match=f"header {name!r}.*SSE_MAX_EVENT_BYTES=1000"):
        _map(b'{"data": 1}', headers=[(name, b"x" * 1_000_000)], max_bytes=1000)
    event = _map(b'{"data": 1}', headers=[(name, b"x" * 880)], max_bytes=1000)
    assert getattr(event, name) == "x" * 880


def test_type_and_source_headers_share_the_room_under_the_limit():
    """Each header was checked alone against the room the value leaves: two of 900 bytes made
    an event of 2,827 bytes under a limit of 1,000."""
    with pytest.raises(InvalidRecord, match="header 'source'.*SSE_MAX_EVENT_BYTES=1000"):
        _map(b'{"data": 1}', headers=[("type", b"t" * 900), ("source", b"s" * 900)],
             max_bytes=1000)
    event = _map(b'{"data": 1}', headers=[("type", b"t" * 440), ("source", b"s" * 440)],
                 max_bytes=1000)
    assert (event.type, event.source) == ("t" * 440, "s" * 440)


def test_newlines_in_type_stay_in_one_frame():
    event = _map(json.dumps({"type": "evil\nid: 1\n\ndata: x", "data": 1}).encode())
    frames = parse_stream(event.named)
    assert len(frames) == 1 and decode(TOPICS, frames[0]["id"]) == AFTER
    assert json.loads(frames[0]["data"])["type"] == "evil\nid: 1\n\ndata: x"


def test_lone_surrogates_still_encode():
    event = _map(b'{"data": "\\ud800"}')
    assert json.loads(_body(event)[0]["data"])["data"] == "\ud800"


# -- a run of records ---------------------------------------------------------------------
def test_records_become_events_whose_ids_are_the_frontier_after_each_invalid_ones_included():
    records = [Record("blog.posts", 0, 0, 1, b'{"type": "a"}', ()),
               Record("blog.posts", 1, 7, 2, b"not json", ()),
               Record("blog.posts", 1, 8, 3, None, ()),
               Record("blog.posts", 0, 1, 4, b'{"type": "b"}', ())]
    frontier = Frontier(TOPICS, {P0: 0, P1: 7})
    batch = events_from_records(records, frontier)
    assert [e.type for e in batch.events] == ["a", "b"]
    assert [decode(TOPICS, e.sse_id) for e in batch.events] == [{P0: 1, P1: 7}, {P0: 2, P1: 9}]
    assert [(e.position.partition, e.position.offset) for e in batch.events] == [(0, 0), (0, 1)]
    [(bad, reason)] = batch.invalid
    assert bad is records[1] and "not JSON" in str(reason)
    assert batch.tombstones == [records[2]]
    assert frontier.offsets == {P0: 2, P1: 9}


def test_a_record_that_cannot_be_encoded_is_invalid_and_the_batch_goes_on(monkeypatch):
    from actors import events

    def broken(record, parsed, sse_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(events, "build_event", broken)
    batch = events_from_records([_record(b"{}"), _record(b"{}")], Frontier(TOPICS))
    assert batch.events == [] and len(batch.invalid) == 2
    assert "cannot be encoded: RuntimeError('boom')" in str(batch.invalid[0][1])


def test_a_header_that_is_not_utf8_is_ignored():
    parsed = parse_record(_record(b"{}", headers=[("type", b"\xff"), ("source", "svc")]))
    assert (parsed.type, parsed.source) == ("blog.posts", "svc")


def test_merging_by_time_keeps_each_partitions_order_and_breaks_ties_by_partition():
    from actors.events import merge_by_time, time_order
    p0 = [Record("t", 0, 0, 50, b"", ()), Record("t", 0, 1, 10, b"", ()),
          Record("t", 0, 2, 60, b"", ())]
    p1 = [Record("t", 1, 0, 50, b"", ()), Record("t", 1, 1, None, b"", ()),
          Record("t", 1, 2, 55, b"", ())]
    merged = [(r.partition, r.offset) for r in merge_by_time([p1, p0])]
    assert merged == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (0, 2)]
    assert min([p1[0], p0[0]], key=time_order) is p0[0]    # a tie: the lower partition
    assert min([p1[1], p0[1]], key=time_order) is p1[1]    # no time counts as 0


# -- owners (AUTH_SUBJECT_FIELD) ------------------------------------------------------------
def _owned(spec, value, headers=(), key=None):
    from actors.auth.subjects import parse_subject_field
    record = Record("blog.posts", 2, 41, 1736164800123, value, tuple(headers), key)
    frontier = Frontier(TOPICS, {P0: 0, P1: 0, P2: 41})
    [event] = events_from_records([record], frontier, owner_of=parse_subject_field(spec)).events
    return event


OWNED = json.dumps({"type": "order.paid", "data": {"user": {"id": "alice"}, "n": 7}}).encode()


@pytest.mark.parametrize("spec, headers, key, owner", [
    ("key", (), b"alice", "alice"),
    ("key", (), None, None),
    ("key", (), b"\xff\xfe", ""),                           # unusable: NOBODY
    ("header:user-id", (("user-id", b"bob"),), None, "bob"),
    ("header:user-id", (("other", b"bob"),), None, None),
    ("header:user-id", (("user-id", b"bob"), ("user-id", b"eve")), None, ""),
    ("data.user.id", (), None, "alice"),
    ("data.n", (), None, "7"),
    ("data.nobody.here", (), None, None),
])
def test_an_event_gets_its_owner_from_the_key_a_header_or_its_data(spec, headers, key, owner):
    event = _owned(spec, OWNED, headers, key)
    assert event.owner == owner
    assert event.type == "order.paid"          # the rest of the event as before


def test_without_a_subject_field_every_event_is_public():
    event = _map(OWNED)
    assert event.owner is None


def test_the_owner_comes_from_the_one_json_parse(monkeypatch):
    from actors import events as events_module
    calls = []

    def counting(real):
        def count(*args, **kwargs):
            calls.append(args)
            return real(*args, **kwargs)
        return count
    monkeypatch.setattr(events_module.json, "loads", counting(events_module.json.loads))
    monkeypatch.setattr(events_module._DECODER, "decode", counting(events_module._DECODER.decode))
    monkeypatch.setattr(events_module, "_SCAN", counting(events_module._SCAN))
    assert _owned("data.user.id", OWNED).owner == "alice"
    assert len(calls) == 1


def test_visible_lets_public_events_to_all_and_owned_ones_to_their_subject_only():
    from actors.events import visible
    public, owned, nobody = (_owned("key", OWNED, key=k) for k in (None, b"alice", b""))
    assert (public.owner, owned.owner, nobody.owner) == (None, "alice", "")
    assert visible(public, None) and visible(public, "bob")
    assert visible(owned, "alice") and not visible(owned, "bob") and not visible(owned, None)
    assert not any(visible(nobody, s) for s in (None, "", "alice"))


@pytest.mark.parametrize("value", [
    b'{"type":"a.b","data":{"x":1}}',
    b'{"type":"line\\nbreak\\u0000\\u007f","source":"s\\r","data":"tab\\there \\u007f"}',
    b'{"type":"t","data":"lone \\ud800 surrogate \\u2028 \\u0085 \\u00e9"}',
    '{"type":"\u00e9v\u00e9nement","data":["\u2603"]}'.encode(),
    b'\xef\xbb\xbf{"type":"bom","data":1}',
    b'{"type":"utf16","data":2}'.decode().encode("utf-16-le"),
])
def test_frames_are_the_bytes_event_frame_makes_of_the_data(value):
    """The data block is encoded once for both frames: the same bytes as framing.event_frame,
    whatever the value holds (control characters, lone surrogates, BOM, UTF-16)."""
    from actors import framing
    from actors.events import parse_record
    event = _map(value)
    parsed = parse_record(_record(value))
    assert event.named == framing.event_frame(event.sse_id, parsed.data, parsed.type)
    assert event.plain == framing.event_frame(event.sse_id, parsed.data)
    assert parsed.frame(event.sse_id, True) == event.named
    assert parsed.frame(event.sse_id, False) == event.plain
    assert b"\n\n" not in event.plain[:-2] and b"\r" not in event.named


@pytest.mark.parametrize("value", [
    b'{"a":1}', b'{"a":1} ', b'{"a":1}\n\t', b'{"a":1}x', b'{"a":1}{"b":2}', b'{"a":1} 2',
    b'{"a":', b'{', b'{}', b'{"a":NaN}', b'{"a":-Infinity}', b'{"a":[1,{"b":null}]}',
    b'{"a":"\\ud800"}', b'{ "a" : 1 }', b'{"a":1,}', b"{'a':1}", b'{"a":1e999}',
    b'{"a":"x\x00y"}', b'{"\xc3\xa9":"\xe2\x98\x83"}', b'{"a":1}\xc2\xa0',
])
def test_records_are_read_as_json_loads_reads_them(value):
    """The scanner's shortcut gives json.loads's answer, and refuses what it refuses."""
    from actors.events import _loads, _reject_constant
    try:
        expected = json.loads(value, parse_constant=_reject_constant)
    except ValueError:
        with pytest.raises(ValueError):
            _loads(value)
    else:
        assert _loads(value)[0] == expected


def test_a_value_that_is_no_json_text_is_refused_as_before():
    with pytest.raises(InvalidRecord, match="not JSON"):
        _map(b'{"type":"x","data":NaN}')
    with pytest.raises(InvalidRecord, match="not JSON"):
        _map(b'\xff\xfe\xfd')


SHAPED = {"id": "o-1", "type": "order.paid", "source": "shop", "timestamp": "2025-01-06T12:00:00Z",
          "data": {"total": 1.5, "note": "caf\u00e9 \\u00e9", "big": 12345678901234567890}}


@pytest.mark.parametrize("text", [
    json.dumps(SHAPED, separators=(",", ":"), ensure_ascii=False),
    json.dumps(SHAPED),                                         # spaces, \u escapes: still as is
    '{"id":"a","type":"t","source":"s","timestamp":"x","data":null,"id":"b"}',  # last id wins
])
def test_a_record_already_in_the_events_shape_is_sent_as_it_is(text):
    value = text.encode()
    event = _map(value)
    frame, body = _body(event)
    assert frame["data"] == text
    assert event.plain == f"data: {text}\nid: {event.sse_id}\n\n".encode()
    assert body == json.loads(text)


@pytest.mark.parametrize("text", [
    '{"id":"a","type":"t","source":"s","timestamp":"x",\n"data":1}',      # a line break
    '{"id":"a","type":"t","source":"s","timestamp":"x",\t"data":1}',      # a tab
    '{"id":"a","type":"t","source":"s","timestamp":"x", "data":"\u0085"}',  # a raw control
    '{"id":"a","type":"","source":"s","timestamp":"x","data":1}',         # an empty type
    '{"id":7,"type":"t","source":"s","timestamp":"x","data":1}',          # a number id
    '{"type":"t","id":"a","source":"s","timestamp":"x","data":1}',        # another order
    '{"id":"a","type":"t","source":"s","timestamp":"x","data":1,"x":2}',  # another key
])
def test_any_other_record_is_re_encoded_on_one_line(text):
    event = _map(text.encode())
    frame, body = _body(event)
    expected = parse_record(_record(text.encode()))
    assert frame["data"] != text and "\n" not in frame["data"] and "\t" not in frame["data"]
    assert body == json.loads(expected.data) and list(body) == ["id", "type", "source",
                                                                "timestamp", "data"]
    assert body["id"] == "a" or body["id"] == "7"
    assert body["type"] in ("t", "blog.posts") and "x" not in body


@pytest.mark.parametrize("value", [
    '{"id":"a","type":"t","source":"s","timestamp":"x","data":"1\u20282\u20293\x854\x7f"}',
    '{"type":"t","data":{"k":"\\u2028 \\u0085 \\u007f \u2029"}}',
])
def test_line_ends_of_splitlines_and_del_are_escaped_and_keep_their_meaning(value):
    """A record holding U+2028, U+2029, U+0085 (line ends to str.splitlines-based clients) or
    DEL reaches the client on one line, meaning the same JSON."""
    event = _map(value.encode())
    for frame in (event.named.decode(), event.plain.decode()):
        assert frame.splitlines() == frame.split("\n")[:-1]
    frame, body = _body(event)
    assert body["data"] == json.loads(value)["data"]


def test_an_event_under_another_id_keeps_its_frames_but_their_last_line():
    event = _map(json.dumps({"type": "t", "data": {"x": "\\nid: fake"}}).encode())
    moved = with_id(event, "NEW")
    for before, after in ((event.named, moved.named), (event.plain, moved.plain)):
        [parsed] = parse_stream(after)
        assert parsed["id"] == "NEW" and parsed["data"] == parse_stream(before)[0]["data"]
        assert after == before[:-len(event.sse_id) - 2] + b"NEW\n\n"


# -- values at the edges of JSON and of Kafka ----------------------------------------------
def _strict_json(text):
    """json.loads as a browser's JSON.parse reads: no NaN, Infinity or -Infinity literals."""
    from actors.events import _reject_constant
    return json.loads(text, parse_constant=_reject_constant)


@pytest.mark.parametrize("value", [
    b'{"data":1e400}', b'{"data":[-1e400,"Infinity",{"Infinity":1e999}]}',
    b'{"data":["\\ud800",1E400]}', b'{"type":"a","data":{"x":-1e400,"s":"-Infinity \\""}}',
])
def test_a_number_beyond_a_double_is_still_json_that_a_browser_parses(value):
    """json writes such a number (1e400, read as infinity) as `Infinity`, which JSON.parse
    refuses: every client of the stream would throw on the event."""
    body = _strict_json(_body(_map(value))[0]["data"])
    assert body["data"] == json.loads(value)["data"]


@pytest.mark.parametrize("timestamp_ms", [253402300800000, 2 ** 63 - 1])
def test_a_record_time_past_the_year_9999_makes_an_invalid_record_not_a_crash(timestamp_ms):
    """parse_record is also read by the replay and the warm start, which expect only
    InvalidRecord: a ValueError from the date escaped them."""
    with pytest.raises(InvalidRecord, match="timestamp"):
        parse_record(Record("blog.posts", 2, 41, timestamp_ms, b'{"data":1}', ()))
    stamped = b'{"timestamp":"2025-01-06T12:00:00Z","data":1}'
    assert parse_record(Record("blog.posts", 2, 41, timestamp_ms, stamped, ())).data


def test_a_record_time_is_written_to_the_millisecond_however_far_out():
    from actors.events import rfc3339
    assert rfc3339(253402300799999) == "9999-12-31T23:59:59.999Z"
    assert rfc3339(1736164800123) == "2025-01-06T12:00:00.123Z"


def test_a_record_time_is_written_as_datetime_writes_it_in_any_order():
    """rfc3339 keeps the last second's text: times in and out of that second, before 1970
    and at the year 1 must read as datetime's own answer."""
    import random
    from datetime import datetime, timedelta, timezone
    from actors.events import rfc3339
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(15)
    times = [0, -1, -999, -1000, -1001, 999, 1000, 1736164800123, 1736164800999, 1736164800123,
             -62135596800000, 253402300799999]
    times += [rng.randrange(-62135596800000, 253402300800000) for _ in range(2000)]
    times += [1736164800000 + rng.randrange(-3000, 3000) for _ in range(2000)]
    for ms in times:
        expected = (epoch + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
        assert rfc3339(ms) == expected.replace("+00:00", "Z"), ms
    with pytest.raises(OverflowError):
        rfc3339(-62135596800001)


def test_data_nested_about_as_deep_as_python_allows_is_an_event_or_invalid_never_an_error():
    """Decoding and encoding count their depth differently: some depths decode and then fail
    to encode with a RecursionError, which the replay and the warm start did not expect."""
    import sys
    limit = sys.getrecursionlimit()
    for depth in range(limit - 300, limit + 10):
        value = b'{"data":' + b"[" * depth + b"]" * depth + b"}"
        try:
            parse_record(_record(value))
        except InvalidRecord:
            pass


@pytest.mark.parametrize("value", [
    json.dumps({"type": "r3.u85", "data": "\u0085" * 130_000}, ensure_ascii=False).encode(),
    json.dumps({"type": "t", "data": "\u2028" * 87_000}, ensure_ascii=False).encode(),
    b'{"type": "t", "data": "' + "\U0001F600".encode() * 65_000 + b'\\ud800"}',
    json.dumps({"type": "t", "data": "x" * 262_100}).encode()],
    ids=["U+0085", "U+2028", "lone surrogate", "fields filled in"])
def test_an_event_larger_than_the_limit_once_written_as_json_is_refused(value):
    """SSE_MAX_EVENT_BYTES was checked against the record's value only: escapes (6 bytes for a
    2-byte U+0085) or the ASCII fallback of a lone surrogate made events of ~780 KB under a
    limit of 256 KiB, and a client whose buffer held the limit (Go's r3labs/sse, as the
    README says to size it) reconnected from the same id for ever."""
    assert len(value) <= 262_144
    with pytest.raises(InvalidRecord, match="as one line of JSON, over SSE_MAX_EVENT_BYTES"):
        _map(value)


def test_every_event_s_data_line_fits_the_limit():
    for value in (json.dumps({"data": "\u2028" * 100}, ensure_ascii=False).encode(),
                  json.dumps({"id": "a", "type": "t", "source": "s", "timestamp": "x",
                              "data": "y" * 900}).encode()):
        event = _map(value, max_bytes=1000)
        [data_line] = [line for line in event.plain.split(b"\n") if line.startswith(b"data: ")]
        assert len(data_line) - len(b"data: ") <= 1000


def test_an_integer_too_long_for_python_is_refused_saying_so():
    """It was logged as 'value is not JSON', which it is."""
    with pytest.raises(InvalidRecord, match="integer of more than 4,300 digits.*as a string"):
        _map(b'{"type":"t","data":' + b"9" * 4301 + b"}")
    assert _body(_map(b'{"type":"t","data":' + b"9" * 4000 + b"}"))[1]["data"] == int("9" * 4000)


@pytest.mark.parametrize("field, headers", [
    ("type", ()), ("source", ()), ("header type", True), ("header source", True)])
def test_a_type_or_source_longer_than_names_are_is_refused(field, headers):
    """Every filter searches an event's type and source, for every stream opened, over the
    whole history: 100 events typed with 250,000 characters made one open cost 1 s of the
    worker. A name up to MAX_NAME_CHARS is taken."""
    from actors.events import MAX_NAME_CHARS
    name = field.split()[-1]

    def record(length):
        if headers:
            return _map(b'{"data": 1}', headers=[(name, b"t" * length)])
        return _map(json.dumps({name: "t" * length, "data": 1}).encode())
    assert getattr(record(MAX_NAME_CHARS), name) == "t" * MAX_NAME_CHARS
    with pytest.raises(InvalidRecord, match=f"longer than {MAX_NAME_CHARS} characters"):
        record(MAX_NAME_CHARS + 1)
