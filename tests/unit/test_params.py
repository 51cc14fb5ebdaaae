"""web/params.py: the parameters of GET /events as pure functions."""
import pytest
from werkzeug.datastructures import Headers, MultiDict

from actors.filters import FilterError
from actors.resume import Frontier
from web.params import flag, listed, since, stream_params

TOPICS = ("blog.posts",)


def params(query=(), headers=()):
    return stream_params(MultiDict(list(query)), Headers(list(headers)), TOPICS)


@pytest.mark.parametrize("raw, expected", [
    (None, False), ("", False), ("1", True), ("TRUE", True), ("yes", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False)])
def test_flag(raw, expected):
    assert flag(raw, "unnamed", False) is expected


def test_a_flag_that_is_neither_says_so():
    with pytest.raises(FilterError, match="history: expected true or false"):
        flag("maybe", "history", True)


@pytest.mark.parametrize("raw, expected", [
    (None, None), ("", None), ("1736164800000", 1736164800000), ("-5", 0),
    ("2025-01-06T12:00:00Z", 1736164800000), ("2025-01-06T13:00:00+01:00", 1736164800000),
    ("2025-01-06T13:00:00 01:00", 1736164800000),       # a `+` that a query turned into a space
    ("2025-01-06T12:00:00", 1736164800000),              # no zone: UTC
    ("2025-01-06t12:00:00z", 1736164800000),             # RFC 3339 5.6: t and z in lower case
    ("2025-01-06T12:00:00.5z", 1736164800500),
    ("1960-01-01T00:00:00Z", 0),
    ("1978-07-21T00:53:39.590Z", 269830419590),         # through a float: ...589
    ("1970-01-01T00:00:00.0005Z", 1),                   # an event at 0 ms is before it
    ("2025-01-06 12:00:00Z", 1736164800000),            # RFC 3339 5.6: a space for the T
    ("2025-01-06 13:00:00 01:00", 1736164800000)])
def test_since(raw, expected):
    assert since(raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "1" * 16, "2025-13-01"])
def test_a_bad_since_says_what_it_expects(raw):
    with pytest.raises(FilterError, match="RFC 3339"):
        since(raw)


@pytest.mark.parametrize("raw", [
    "2025-01-06", "2025-01-06T12", "2025-01-06T12:00", "20250106T120000Z", "2025-W02-1",
    "2025-01-06T12:00:00+0200", "2025-01-06T12:00:00+02", "2025-01-06T12:00:00+02:00:30",
    "2025-01-06T12:00:00,5Z", "2025-01-06T12:00:00.Z", "2025-01-06T12:00:00 +02:00",
    "2025-01-06T12:00:00Z ", " 1736164800000", "1.5", "-1e3", "2025-01-06T24:00:00Z",
    "2025-01-06T12:00:60Z", "2025-01-06T12:00:00+25:00", "２０２５-01-06T12:00:00Z",
    "2025-01-06T12:00:00+02:60", "2025-01-06T12:00:00+02:99", "2025-01-06T12:00:00-24:00",
    "2025-01-0612:00:00Z", "2025-01-06_12:00:00Z"])
def test_a_since_that_is_not_rfc_3339_nor_milliseconds_is_refused(raw):
    """Only what the README says is read: Python's fromisoformat would take a date alone, an
    hour alone, week dates, offsets of seconds (and more with each Python version), each a
    replay from a moment nobody documented."""
    with pytest.raises(FilterError, match="RFC 3339"):
        since(raw)


@pytest.mark.parametrize("raw, hint", [("1736164800", "1736164800000"),
                                       ("100000000", "100000000000"),
                                       ("0001736164800", "1736164800000")])
def test_a_since_in_epoch_seconds_is_refused_not_read_as_1970(raw, hint):
    """Epoch seconds (what `date +%s` prints) read as milliseconds are a time in January 1970:
    the client would get everything Kafka retains instead of what it asked for. No Kafka
    record is from before 1973 (eleven digits of milliseconds). The hint for zero-padded
    digits kept the zeros (an HTTP audit: 'send 000000000000001000')."""
    with pytest.raises(FilterError, match=f"since: {raw} .*seconds.* send {hint} "):
        since(raw)


@pytest.mark.parametrize("raw", ["1", "99999999", "99999999999", "000000000000001"])
def test_a_since_that_is_no_time_in_seconds_either_gets_no_hint_to_multiply(raw):
    """Read as seconds these are before 1973 too, or after 2286 (11 digits: the year 5138), and
    the refusal said 'send 99999999999000' all the same (a README walk)."""
    with pytest.raises(FilterError) as refused:
        since(raw)
    message = str(refused.value)
    assert "000 " not in message and "epoch milliseconds (13 digits" in message, message


@pytest.mark.parametrize("raw, expected", [("0", 0), ("-1", 0), ("100000000000", 10**11)])
def test_a_since_of_milliseconds_from_1973_or_before_the_epoch_is_read(raw, expected):
    assert since(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("1970-01-01T00:00:00.0000001Z", 1),                  # past the microsecond: still after 0
    ("2025-01-06T12:00:00." + "0" * 5000 + "1Z", 1736164800001),
    ("1969-12-31T23:59:59.9995Z", 0), ("9999-12-31T23:59:59-14:00", 253402351199000),
    ("2025-01-06T12:00:00.5000Z", 1736164800500)])           # trailing zeros: exact
def test_a_since_fraction_of_any_length_rounds_up(raw, expected):
    assert since(raw) == expected


def test_a_repeated_list_parameter_adds_up():
    repeated = MultiDict([("event_types", "a"), ("event_types", "b,c")])
    assert listed(repeated, "event_types") == "a,b,c"
    assert listed(MultiDict(), "event_types") is None


def test_defaults():
    p = params()
    assert (p.named, p.with_history, p.since_ms, p.last_event_id, p.resume) == (
        True, True, None, None, None)
    assert p.filter.event_types == () and p.filter.sources == ()


def test_history_off_unless_resuming():
    assert params([("history", "false")]).with_history is False
    own = Frontier(TOPICS, {("blog.posts", 0): 5}).token()
    resumed = params([("history", "false")], [("Last-Event-ID", own)])
    assert resumed.with_history is True and resumed.resume is not None
    assert resumed.resume.offsets == {("blog.posts", 0): 5}


def test_a_foreign_last_event_id_is_kept_but_not_decoded():
    p = params([("last_event_id", "someone-else:42")])
    assert p.last_event_id == "someone-else:42" and p.resume is None and p.with_history


def test_the_header_wins_over_the_query():
    own = Frontier(TOPICS, {("blog.posts", 0): 9}).token()
    p = params([("last_event_id", "other")], [("Last-Event-ID", own)])
    assert p.last_event_id == own


def test_filter_and_naming():
    p = params([("event_types", "blog.*"), ("sources", "svc"), ("unnamed", "1")])
    assert p.filter.event_types == ("blog.*",) and p.filter.sources == ("svc",)
    assert p.named is False


def test_a_foreign_last_event_id_with_history_off_gets_no_history():
    """An id this gateway did not issue is ignored: the stream is a new one, and history=false
    still means no history (it got the whole history before)."""
    p = params([("history", "false")], [("Last-Event-ID", "someone-else:42")])
    assert p.resume is None and p.with_history is False


def test_the_polyfill_s_lasteventid_parameter_resumes_too():
    """event-source-polyfill (the usual EventSource with headers) sends the resume position
    only as `?lastEventId=`: every reconnect started over, and with history=false the events
    of the reconnect were lost without a gap."""
    own = Frontier(TOPICS, {("blog.posts", 0): 7}).token()
    p = params([("history", "false"), ("lastEventId", own)])
    assert p.last_event_id == own and p.resume.offsets == {("blog.posts", 0): 7}
    assert p.with_history is True
    header = Frontier(TOPICS, {("blog.posts", 0): 9}).token()
    assert params([("lastEventId", own)], [("Last-Event-ID", header)]).last_event_id == header
    # the page's URL keeps the id it first opened with; the polyfill adds the fresh one
    stale = Frontier(TOPICS, {("blog.posts", 0): 2}).token()
    assert params([("last_event_id", stale), ("lastEventId", own)]).last_event_id == own
