import json

import pytest

from actors import framing
from tests.sse import SSEParser, parse_stream


def test_event_frame_has_event_one_data_line_and_the_id_last():
    frame = framing.event_frame("blog.posts:0:7", '{"a":1}', "blog.post.created")
    assert frame == b'event: blog.post.created\ndata: {"a":1}\nid: blog.posts:0:7\n\n'


def test_unnamed_frame_has_no_event_line():
    assert b"event:" not in framing.event_frame("x:0:1", "{}")


def test_newlines_in_the_type_cannot_inject_fields():
    frame = framing.event_frame("x:0:1\nretry: 1", "{}", "evil\r\ndata: injected\n\nid: 9")
    events = parse_stream(frame)
    assert len(events) == 1
    assert events[0]["id"] == "x:0:1_retry: 1"
    assert events[0]["event"] == "evil__data: injected__id: 9"
    assert events[0]["data"] == "{}"


def test_comments_and_retry_end_no_block_and_a_position_dispatches_nothing():
    assert framing.comment("hi\nthere") == b": hi_there\n"
    assert framing.retry(3000) == b"retry: 3000\n"
    assert {framing.quarter_jitter(3) for _ in range(50)} == {0}
    assert {framing.quarter_jitter(4) for _ in range(200)} == {0, 1}
    assert framing.position("a\nb") == b"id: a_b\n\n"
    parser = SSEParser()
    opening = framing.retry(3000) + framing.comment("client x") + framing.position("START")
    assert parser.feed(opening + framing.HEARTBEAT) == []
    assert (parser.last_id, parser.retry) == ("START", 3000)
    assert parser.comments == ["client x", "heartbeat"]
    event = framing.event_frame("ID1", "{}")
    assert parser.feed(framing.HEARTBEAT + event + framing.HEARTBEAT) == [
        {"id": "ID1", "event": "message", "data": "{}"}]


def _httpx_sse_messages(raw: bytes):
    decoder_module = pytest.importorskip("httpx_sse._decoders")
    lines, decoder = decoder_module.SSELineDecoder(), decoder_module.SSEDecoder()
    out = []
    for line in lines.decode(raw.decode()) + lines.flush():
        message = decoder.decode(line)
        if message is not None:
            out.append(message)
    return out


def test_httpx_sse_sees_heartbeats_between_events_as_nothing():
    """httpx-sse dispatches every blank-line-ended block once an id was seen; a heartbeat line
    with no blank line of its own ends none."""
    stream = (framing.retry(3000) + framing.comment("client x") + framing.position("START")
              + framing.HEARTBEAT + framing.event_frame("ID1", "{}") + framing.HEARTBEAT * 3
              + framing.event_frame("ID2", "[]") + framing.comment("closing: bye"))
    messages = _httpx_sse_messages(stream)
    assert [(m.id, m.data) for m in messages] == [("START", ""), ("ID1", "{}"), ("ID2", "[]")]


def test_retry_carries_up_to_a_quarter_of_jitter():
    import random
    from actors import framing
    random.seed(7)
    delays = {int(framing.retry(3000, framing.quarter_jitter)[7:-1]) for _ in range(200)}
    assert min(delays) >= 3000 and max(delays) <= 3750 and len(delays) > 50
    assert framing.retry(3000) == b"retry: 3000\n"


def test_auth_expired_is_a_named_event_without_an_id_and_with_json_data():
    assert framing.auth_expired("token expired") == (
        b'event: auth-expired\ndata: {"reason":"token expired"}\n\n')
    parser = SSEParser()
    parser.feed(b"id: kept\n\n")
    [event] = parser.feed(framing.auth_expired('bad "quote"\nand line'))
    assert event["event"] == "auth-expired" and event["id"] == "kept"   # the id stays
    import json
    assert json.loads(event["data"]) == {"reason": 'bad "quote"\nand line'}


def test_long_event_types_are_framed_but_not_kept():
    """The `event:` lines of the types seen are kept, at most 4,096 of them: kept at any
    length, types of 256 KB (SSE_MAX_EVENT_BYTES) would hold 2 GB of a worker for good."""
    import tracemalloc
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20):
            event_type = f"{n:04d}" + "t" * 100_000
            assert framing.type_line(event_type) == f"event: {event_type}\n".encode()
            del event_type
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 200_000, f"{kept} bytes kept after framing 20 types of 100 KB"
    assert framing.type_line("blog.post.created") is framing.type_line("blog.post.created")


LINE_ENDS_TO_SOME = "\x85\u2028\u2029"   # str.splitlines ends lines there (sseclient 0.0.27 does)


@pytest.mark.parametrize("text", ['{"a":"x\u2028y\u2029z\x85"}', '{"del":"\x7f","nbsp":"\xa0"}',
                                  '["\u2028"]', '{"e":"caf\u00e9 \u2603"}'])
def test_json_data_means_the_same_and_no_client_splits_its_line(text):
    """U+0085, U+2028 and U+2029 end lines for parsers that use str.splitlines; in JSON they can
    only stand in strings, where a \\u escape means the same. DEL is kept the same way."""
    frame = framing.event_frame("ID", text, "t").decode()
    assert frame.splitlines() == frame.split("\n")[:-1]
    [event] = parse_stream(frame.encode())
    assert json.loads(event["data"]) == json.loads(text)
    assert framing.data_block(text).decode() == frame[frame.index("data:"):frame.index("id: ")]


def test_other_fields_end_no_line_for_splitlines_either():
    for frame in (framing.event_frame(f"i{LINE_ENDS_TO_SOME}", "{}", f"t{LINE_ENDS_TO_SOME}"),
                  framing.comment(f"c{LINE_ENDS_TO_SOME}"), framing.position(LINE_ENDS_TO_SOME)):
        text = frame.decode()
        assert text.splitlines() == text.split("\n")[:-1]


def _eager_last_id(prefix: bytes) -> str:
    """The id @microsoft/fetch-event-source reconnects with after a stream cut at `prefix`: it
    takes an `id:` as soon as its line is complete, before the block's blank line (so does
    r3labs/sse with what trails at the end of a stream)."""
    lines = prefix.decode("utf-8", "replace").split("\n")[:-1]
    ids = [line[4:] for line in lines if line.startswith("id: ")]
    return ids[-1] if ids else ""


def _cut_events(frame_of):
    """Cut a stream of a position and two events at every byte: the cuts where an eager
    client would resume after an event it never received."""
    first, second = frame_of("ID1"), frame_of("ID2")
    wire = framing.position("START") + first + second
    lost = []
    for cut in range(len(wire) + 1):
        parser = SSEParser()
        received = [event["id"] for event in parser.feed(wire[:cut])]
        resumed = _eager_last_id(wire[:cut])
        if resumed not in ("START", "", *received):
            lost.append(cut)
    return lost, len(wire)


@pytest.mark.parametrize("kind", ["named", "plain", "shared block", "gap"])
def test_a_stream_cut_inside_an_event_loses_it_for_no_client_that_takes_ids_early(kind):
    """A connection cut inside a frame: clients that take the id at its line resume from
    the next event only if the id line is the frame's last, so that at most the blank line
    that ends it can be missing (one byte of the frame, not all but its first line)."""
    data = '{"id":"e1","type":"t","source":"s","data":{"pad":"' + "y" * 60 + '"}}'
    frame_of = {
        "named": lambda i: framing.event_frame(i, data, "link.clicked"),
        "plain": lambda i: framing.event_frame(i, data),
        "shared block": lambda i: framing.event_frames(i, "link.clicked",
                                                       framing.data_block(data))[0],
        "gap": lambda i: framing.gap(i, [("retention", ("t", 0), 1, 9)]),
    }[kind]
    lost, size = _cut_events(frame_of)
    assert len(lost) <= 2, f"{len(lost)} of {size} cuts lose an event: {lost[:5]}…"


def test_the_test_clients_last_id_is_set_when_its_block_ends_as_eventsource_sets_it():
    """An `id:` line cut off before its blank line leaves the last event id as it was
    (WHATWG: the id buffer becomes lastEventId at dispatch): a resume then asks again for the
    event that never arrived whole (a replay audit found the test client ahead of browsers)."""
    parser = SSEParser()
    parser.feed(b"id: one\ndata: 1\n\n")
    parser.feed(b"id: two\ndata: 2\n")             # the connection is cut here
    assert parser.last_id == "one"
    parser.feed(b"\n")
    assert parser.last_id == "two"


def test_a_lone_surrogate_in_any_field_goes_out_as_valid_utf8():
    """JSON may name a lone surrogate (\\ud800) in an event's type or id; what goes on the
    wire must still be UTF-8 (a client's decoder fails on the bytes of a surrogate)."""
    lone = "order\ud800.created"
    frames = [framing.event_frame(lone, lone, lone), framing.type_line(lone),
              *framing.event_frames(lone, lone, framing.data_block(lone)),
              framing.comment(lone)]
    for frame in frames:
        assert "order?.created" in frame.decode("utf-8")        # strict: raises if not UTF-8
