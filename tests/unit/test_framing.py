from actors import framing
from tests.sse import parse_stream


def test_event_frame_has_id_event_and_one_data_line():
    frame = framing.event_frame("blog.posts:0:7", '{"a":1}', "blog.post.created")
    assert frame == b'id: blog.posts:0:7\nevent: blog.post.created\ndata: {"a":1}\n\n'


def test_unnamed_frame_has_no_event_line():
    assert b"event:" not in framing.event_frame("x:0:1", "{}")


def test_newlines_in_the_type_cannot_inject_fields():
    frame = framing.event_frame("x:0:1\nretry: 1", "{}", "evil\r\ndata: injected\n\nid: 9")
    events = parse_stream(frame)
    assert len(events) == 1
    assert events[0]["id"] == "x:0:1_retry: 1"
    assert events[0]["event"] == "evil__data: injected__id: 9"
    assert events[0]["data"] == "{}"


def test_comment_and_retry():
    assert framing.comment("hi\nthere") == b": hi_there\n\n"
    assert framing.retry(3000) == b"retry: 3000\n\n"
