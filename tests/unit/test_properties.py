"""Property tests (hypothesis): the filter parser and the SSE frame encoder under any input.

No input may produce a frame that a browser parses into other fields than intended (parsed
here with tests/sse.py's WHATWG parser), and the filter parser either refuses an input with
FilterError or returns patterns that match exactly what a glob reference matches.
"""
import json
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import framing
from actors.events import InvalidRecord, parse_record, build_event
from actors.kafka_reads import Record
from actors.resume import Frontier
from actors.filters import MAX_PATTERN_LENGTH, MAX_PATTERNS, MAX_WILDCARDS, Filter, FilterError
from tests.sse import SSEParser

SURROGATE = st.characters(categories=["Cs"])
ANY_TEXT = st.text(st.one_of(st.characters(), SURROGATE), max_size=60)   # lone surrogates too
TEXT = st.text(max_size=60)                                             # what UTF-8 can carry
LINE_BREAKY = st.text(st.sampled_from("ab:\r\n\0 \x7f\u2028\u0085é"), max_size=30)
FIELD = st.one_of(TEXT, LINE_BREAKY)
ALLOWED = re.compile(r"[\w.\-:/@*]+")
ROOT = str(Path(__file__).resolve().parents[2])


# -- the frame encoder ------------------------------------------------------------------------
def _expected(sse_id, data, event_type):
    return {"id": framing.clean(sse_id), "data": framing.json_line(data),
            "event": framing.clean(event_type or "") or "message"}


@given(FIELD, FIELD, st.one_of(st.none(), FIELD))
def test_a_frame_parses_into_exactly_its_own_fields(sse_id, data, event_type):
    parser = SSEParser()
    assert parser.feed(framing.event_frame(sse_id, data, event_type)) == [
        _expected(sse_id, data, event_type)]
    assert parser.comments == [] and parser.retry is None


@given(st.lists(st.tuples(FIELD, FIELD, st.one_of(st.none(), FIELD)), max_size=8))
def test_frames_in_a_row_never_bleed_into_each_other(frames):
    stream = framing.retry(3000) + b"".join(framing.event_frame(*f) for f in frames)
    parser = SSEParser()
    events = []
    for start in range(0, len(stream), 7):              # arbitrary chunk boundaries
        events += parser.feed(stream[start:start + 7])
    assert events == [_expected(*f) for f in frames]
    assert parser.retry == 3000


@given(FIELD)
def test_a_comment_stays_a_comment(text):
    parser = SSEParser()
    assert parser.feed(framing.comment(text)) == []
    assert parser.comments == [framing.clean(text).lstrip(" ")]


@given(FIELD)
def test_clean_removes_only_control_characters(value):
    cleaned = framing.clean(value)
    assert len(cleaned) == len(value)
    assert not any(ch in cleaned for ch in "\r\n\0")
    assert all(a == b or b == "_" for a, b in zip(value, cleaned))


@given(st.dictionaries(st.sampled_from(["id", "type", "source", "timestamp", "data"]),
                       st.one_of(FIELD, st.integers(), st.none(), st.lists(FIELD, max_size=3))))
def test_any_kafka_object_becomes_one_clean_event_or_is_refused(body):
    value = json.dumps(body).encode()
    try:
        record = Record("t", 0, 5, 0, value, ())
        event = build_event(record, parse_record(record), Frontier(("t",), {("t", 0): 6}).token())
    except InvalidRecord:
        return
    for frame, named in ((event.named, True), (event.plain, False)):
        [parsed] = SSEParser().feed(frame)
        assert parsed["id"] == event.sse_id
        assert parsed["event"] == (framing.clean(event.type) or "message" if named else "message")
        assert json.loads(parsed["data"])["type"] == event.type     # DEL included


@given(TEXT, SURROGATE, TEXT)
@settings(max_examples=20)
def test_lone_surrogates_cannot_break_the_encoder(before, surrogate, after):
    event_type = before + surrogate + after
    assert len(SSEParser().feed(framing.event_frame("t:0:1", "{}", event_type))) == 1


# -- the filter parser ------------------------------------------------------------------------
@given(st.one_of(st.none(), ANY_TEXT, st.lists(ANY_TEXT).map(",".join)),
       st.one_of(st.none(), ANY_TEXT))
def test_parse_refuses_cleanly_or_returns_well_formed_patterns(types, sources):
    try:
        flt = Filter.parse(types, sources)
    except FilterError as exc:
        assert str(exc).startswith(("event_types:", "sources:"))
        return
    for patterns in (flt.event_types, flt.sources):
        assert len(patterns) <= MAX_PATTERNS and list(patterns) == sorted(set(patterns))
        assert sum(p.count("*") for p in patterns) <= MAX_WILDCARDS
        for pattern in patterns:
            assert 0 < len(pattern) <= MAX_PATTERN_LENGTH and ALLOWED.fullmatch(pattern)
    assert Filter.parse(",".join(flt.event_types), ",".join(flt.sources)) == flt


@given(st.integers(MAX_PATTERNS + 1, 3000))
def test_thousands_of_patterns_are_refused(count):
    with pytest.raises(FilterError, match="at most"):
        Filter.parse(",".join(f"t{n}" for n in range(count)))


PATTERN = st.text(st.sampled_from("ab.-_:/@é*"), min_size=1, max_size=10)
VALUE = st.text(st.sampled_from("ab.-_:/@é*\n\r$^()[]?+\\"), max_size=14)


@given(st.lists(PATTERN, min_size=1, max_size=5), st.lists(PATTERN, max_size=3), VALUE, VALUE)
def test_matching_is_exactly_glob_matching(types, sources, event_type, source):
    flt = Filter.parse(",".join(types), ",".join(sources))
    wanted = any(fnmatchcase(event_type, p) for p in types) and (
        not sources or any(fnmatchcase(source, p) for p in sources))
    assert flt.matches(event_type, source) is wanted


@given(st.lists(PATTERN, min_size=1, max_size=12), st.lists(VALUE, min_size=1, max_size=6),
       st.lists(st.integers(0, 5), max_size=40))
def test_remembered_answers_are_glob_answers(types, values, order):
    """Lists with many wildcards remember answers; asked again, in any order, they agree."""
    try:
        flt = Filter.parse(",".join(types), None)
    except FilterError as exc:
        assert "wildcards" in str(exc) and sum(t.count("*") for t in types) > MAX_WILDCARDS
        return
    for index in order + list(range(len(values))):
        value = values[index % len(values)]
        assert flt.matches(value, "s") is any(fnmatchcase(value, p) for p in types)


_REDOS = """
import time
from actors.filters import Filter
flt = Filter.parse("*" * 40 + "Q," + "*a" * 30 + "*b")
started = time.perf_counter()
for value in ("twitchbot.message.created", "a" * 200, "x." * 5000):
    flt.matches(value, "any")
print(time.perf_counter() - started)
"""


def test_matching_time_is_bounded_whatever_the_patterns():
    try:
        result = subprocess.run([sys.executable, "-c", _REDOS], capture_output=True, text=True,
                                timeout=5, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("matching 3 values against 2 hostile patterns took more than 5 s")
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 0.5
