import json

import pytest

from actors.events import InvalidRecord, event_from_record
from tests.sse import parse_stream


def _map(value, headers=(), **kw):
    return event_from_record("blog.posts", 2, 41, 1736164800123, value, headers, **kw)


def _body(event):
    [frame] = parse_stream(event.named)
    return frame, json.loads(frame["data"])


def test_full_event_keeps_its_fields_and_gets_a_position_id():
    event = _map(json.dumps({"id": "abc-1", "type": "blog.post.created", "source": "blog-service",
                             "timestamp": "2025-01-06T12:00:00Z", "data": {"post_id": "123"}}).encode())
    frame, body = _body(event)
    assert frame["id"] == "blog.posts:2:41" and frame["event"] == "blog.post.created"
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
    (b'{"data": NaN}', "not JSON"),
    (None, "tombstone"),
])
def test_invalid_values_are_refused_with_a_reason(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        _map(value)


def test_oversized_values_are_refused():
    with pytest.raises(InvalidRecord, match="SSE_MAX_EVENT_BYTES"):
        _map(b'{"data": "' + b"x" * 2000 + b'"}', max_bytes=1000)


def test_newlines_in_type_stay_in_one_frame():
    event = _map(json.dumps({"type": "evil\nid: 1\n\ndata: x", "data": 1}).encode())
    frames = parse_stream(event.named)
    assert len(frames) == 1 and frames[0]["id"] == "blog.posts:2:41"
    assert json.loads(frames[0]["data"])["type"] == "evil\nid: 1\n\ndata: x"


def test_lone_surrogates_still_encode():
    event = _map(b'{"data": "\\ud800"}')
    assert json.loads(_body(event)[0]["data"])["data"] == "\ud800"
