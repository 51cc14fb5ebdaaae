"""The event model: Kafka records -> Events, with frontier ids and their SSE frames encoded
once (pure, no I/O). The live consumer, the warm start and the replay all read records here."""
from __future__ import annotations

import heapq
import json
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

from actors import framing

if TYPE_CHECKING:
    from actors.auth.subjects import SubjectField
    from actors.kafka_reads import Record
    from actors.resume import Frontier


class InvalidRecord(ValueError):
    """A Kafka record that cannot become an event; the message says why."""


class Tombstone(InvalidRecord):
    """A record without a value (a deletion marker of a compacted topic): not an event."""


# Records, positions and events are NamedTuples: immutable like a frozen dataclass, and built
# three times faster (a frozen dataclass sets each field through object.__setattr__), which
# counts at 20,000 records/s.
class Position(NamedTuple):
    topic: str
    partition: int
    offset: int


class Event(NamedTuple):
    position: Position
    type: str
    source: str
    timestamp_ms: int
    sse_id: str
    named: bytes        # frame with an `event:` line, for addEventListener(type)
    plain: bytes        # frame without it, for EventSource.onmessage
    owner: str | None = None    # None: public; a subject: only its streams; NOBODY (""): none


def frames_of(events, named: bool) -> bytes:
    """The events' frames, joined: `named`, each with its `event:` line."""
    return b"".join([e.named for e in events] if named else [e.plain for e in events])


def visible(event: Event | Parsed, subject: str | None) -> bool:
    """May a stream of `subject` (None: anonymous) see this event, owner-wise? A public event
    is everyone's, an owned one only its subject's; NOBODY's matches no subject (never "")."""
    owner = event.owner
    return owner is None or (owner == subject and bool(subject))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


_second: list = [None, ""]      # the last second written, as 'YYYY-MM-DDTHH:MM:SS'


def rfc3339(timestamp_ms: int) -> str:
    """The time, to the millisecond; OverflowError past the year 9999. Records come in
    runs of the same second: its text is made once (a fifth of the cost of datetime's)."""
    seconds, milliseconds = divmod(timestamp_ms, 1000)
    if seconds != _second[0]:
        _second[1] = (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
        _second[0] = seconds
    return f"{_second[1]}.{milliseconds:03d}Z"


def _record_time(timestamp_ms: int) -> str:
    try:
        return rfc3339(timestamp_ms)
    except OverflowError:
        raise InvalidRecord(f"record timestamp {timestamp_ms} ms is past the year 9999: give "
                            f"the event its own timestamp field") from None


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _header(headers, name, room: int, max_bytes: int):
    """A header's text (None: absent or not UTF-8); InvalidRecord when it is longer than the
    `room` the value leaves under SSE_MAX_EVENT_BYTES (it becomes part of the event)."""
    for key, value in headers or ():
        if key == name and value:
            if len(value) > room:
                raise InvalidRecord(f"header {name!r} of {len(value)} bytes takes the event "
                                    f"past SSE_MAX_EVENT_BYTES={max_bytes}")
            try:
                return value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                return None
    return None


def _string_field(value, name):
    if value is None or isinstance(value, str):
        return value
    if name == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(f"field {name!r} must be a string, got {type(value).__name__}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The C scanner that _DECODER.decode calls after a whitespace regex (typeshed omits it).
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
_new = tuple.__new__            # a NamedTuple without its Python-level __new__ (half the time)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _loads(value) -> tuple[object, str | None]:
    """json.loads(value, parse_constant=_reject_constant), with one decoder for every record;
    and the text parsed when it is the whole value as UTF-8 (None otherwise)."""
    if isinstance(value, str):
        return json.loads(value, parse_constant=_reject_constant), None    # its checks of a str
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"the JSON object must be str, bytes or bytearray, "
                        f"not {type(value).__name__}")
    if value[:1] == b"{" and value[1:2] != b"\0":     # what json.detect_encoding says then
        text = value.decode("utf-8", "surrogatepass")
        try:                    # no whitespace around the object: decode's answer, sooner
            body, end = _SCAN(text, 0)
            if end == len(text):
                return body, text
        except StopIteration:
            pass
        return _DECODER.decode(text), text      # its answer, or its error, for the rest
    return _DECODER.decode(value.decode(json.detect_encoding(value), "surrogatepass")), None


# A JSON string, or the Infinity json writes for a number beyond a double (1e400).
_STRING_OR_INFINITY = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?)Infinity')


def _finite(text: str) -> str:
    """JSON text with 1e999 for json's `Infinity` (which JSON.parse refuses): a number a
    parser reads as it reads the producer's own (1e400), JSON.parse as Infinity."""
    if "Infinity" not in text:
        return text
    return _STRING_OR_INFINITY.sub(lambda m: m[0] if m[1] is None else m[1] + "1e999", text)


def _encode(encoder: json.JSONEncoder, document: dict) -> str:
    try:
        return _finite(encoder.encode(document))
    except RecursionError:      # decoding and encoding count depth differently
        raise InvalidRecord("data is nested too deep to be written again") from None


def _dump_and_block(document: dict) -> tuple[str, bytes]:
    """The document as one line of JSON, and its frames' data_block."""
    text = framing.json_line(_encode(_ENCODER, document))
    try:
        return text, f"data: {text}\n".encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes
        text = _encode(_ASCII_ENCODER, document)
        return text, framing.data_block(text)


class Parsed(NamedTuple):
    """A valid record's content, before it is given an id and framed."""
    type: str
    source: str
    timestamp_ms: int
    data: str             # the event as one line of JSON
    owner: str | None = None    # read by parse_record's `owner_of` (None: public)
    block: bytes = b""    # framing.data_block(data), encoded once (b"": not yet)

    def frame(self, sse_id: str, named: bool) -> bytes:
        """Its SSE frame with this id; `named` adds the `event:` line."""
        if not self.block:
            return framing.event_frame(sse_id, self.data, self.type if named else None)
        return self.frames(sse_id)[0 if named else 1]

    def frames(self, sse_id: str) -> tuple[bytes, bytes]:
        """Both frames with this id: (named, plain)."""
        return framing.event_frames(sse_id, self.type, self.block or framing.data_block(self.data))


# Filters match every event's type and source, each pattern searching the whole value (for
# every stream opened, over the history): a type of 250,000 characters made one open 1 s.
MAX_NAME_CHARS = 1024
_SHAPE = ["id", "type", "source", "timestamp", "data"]
DATA_LINE = len(b"data: \n")


def _as_is(body: dict, text: str) -> bool:
    """Is a record's own text already its event's JSON, given that its id, type, source and
    timestamp are non-empty strings? Its keys are the event's, in the event's order, and it
    fits on one SSE line (printable: no line break nor other control character). Then it is
    sent unchanged instead of re-encoded (a name repeated in an object is sent as it came)."""
    return list(body) == _SHAPE and text.isprintable()


def event_time(record: Record) -> int:
    """A record's time in ms (0 when Kafka gives none)."""
    timestamp_ms = record.timestamp_ms
    return 0 if timestamp_ms is None or timestamp_ms < 0 else timestamp_ms


def parse_record(record: Record, max_bytes: int = 262144,
                 owner_of: SubjectField | None = None) -> Parsed:
    """Check and complete one Kafka record's value, or raise InvalidRecord. With `owner_of`
    (AUTH_SUBJECT_FIELD) the event's owner is read from the record and its parsed JSON."""
    value, topic = record.value, record.topic
    if value is None:
        raise Tombstone("no value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidRecord(f"value of {len(value)} bytes exceeds SSE_MAX_EVENT_BYTES={max_bytes}")
    try:
        body, text = _loads(value)
    except (ValueError, RecursionError) as exc:
        if "integer string conversion" in str(exc):     # sys.get_int_max_str_digits()
            raise InvalidRecord("value holds an integer of more than 4,300 digits, which the "
                                "gateway does not read (its cost grows with the square of "
                                "its length): send it as a string") from None
        raise InvalidRecord(f"value is not JSON ({str(exc)[:80]})") from None
    if not isinstance(body, dict):
        raise InvalidRecord(f"value is JSON {type(body).__name__}, expected an object")
    room = max_bytes - len(value)   # for a type or source from a header
    get = body.get      # each field: a non-empty string as it is, else the rules below
    as_is = True        # may the value's own text be the event's? (see _as_is)
    event_id = get("id")
    if event_id.__class__ is not str or not event_id:
        as_is = False
        event_id = (_string_field(event_id, "id")
                    or f"{topic}-{record.partition}-{record.offset}")
    event_type = get("type")
    if event_type.__class__ is not str or not event_type:
        as_is = False
        event_type = _string_field(event_type, "type")
        if not event_type:
            event_type = _header(record.headers, "type", room, max_bytes)
            room -= len(event_type.encode()) if event_type else 0   # a source header's too
            event_type = event_type or topic
    source = get("source")
    if source.__class__ is not str or not source:
        as_is = False
        source = (_string_field(source, "source")
                  or _header(record.headers, "source", room, max_bytes) or "unknown")
    if len(event_type) > MAX_NAME_CHARS or len(source) > MAX_NAME_CHARS:
        raise InvalidRecord(f"its type or source is longer than {MAX_NAME_CHARS} characters")
    timestamp_ms = event_time(record)
    timestamp = get("timestamp")
    if timestamp.__class__ is not str or not timestamp:
        as_is = False
        timestamp = _string_field(timestamp, "timestamp") or _record_time(timestamp_ms)
    if as_is and text is not None and _as_is(body, text):
        data, block = text, b"data: " + bytes(value) + b"\n"
    else:
        data, block = _dump_and_block({"id": event_id, "type": event_type, "source": source,
                                       "timestamp": timestamp, "data": get("data")})
        if len(block) > max_bytes + DATA_LINE:      # escapes, or the fields filled in
            raise InvalidRecord(f"its event takes {len(block) - DATA_LINE} bytes as one line of "
                                f"JSON, over SSE_MAX_EVENT_BYTES={max_bytes}")
    owner = owner_of.owner(record, body) if owner_of is not None else None
    return _new(Parsed, (event_type, source, timestamp_ms, data, owner, block))


def build_event(record: Record, parsed: Parsed, sse_id: str) -> Event:
    named, plain = parsed.frames(sse_id)
    return _new(Event, (_new(Position, (record.topic, record.partition, record.offset)),
                        parsed.type, parsed.source, parsed.timestamp_ms, sse_id, named, plain,
                        parsed.owner))


def with_id(event: Event, sse_id: str) -> Event:
    """The event under another id (the last line of its frames)."""
    end = framing.id_end(sse_id).encode("utf-8", "replace")
    named, plain = event.named, event.plain
    return event._replace(sse_id=sse_id, named=named[:named.rindex(b"\nid: ") + 1] + end,
                          plain=plain[:plain.rindex(b"\nid: ") + 1] + end)


class Batch(NamedTuple):
    """What a run of records became: events, and the records that could not be events."""
    events: list[Event]
    invalid: list[tuple[Record, InvalidRecord]]    # with the reason
    tombstones: list[Record]


def events_from_records(records: Iterable[Record], frontier: Frontier,
                        max_bytes: int = 262144, owner_of: SubjectField | None = None) -> Batch:
    """Turn records (in the order a client sees them) into events. `frontier` passes every
    record, valid or not, and each event's id is the frontier right after it. `owner_of`
    (AUTH_SUBJECT_FIELD, None: every event public) gives each event its owner."""
    batch = Batch([], [], [])
    append, advance, token = batch.events.append, frontier.advance, frontier.token
    for r in records:
        advance(r.topic, r.partition, r.offset + 1)
        try:
            append(build_event(r, parse_record(r, max_bytes, owner_of), token()))
        except Tombstone:
            batch.tombstones.append(r)
        except InvalidRecord as exc:
            batch.invalid.append((r, bare(exc)))
        except Exception as exc:  # noqa: BLE001 - one odd record must not cost the batch
            batch.invalid.append((r, InvalidRecord(f"cannot be encoded: {exc!r:.120}")))
    return batch


def bare(exc: InvalidRecord) -> InvalidRecord:
    """`exc` without its traceback and context, to be kept: their frames hold the record and
    the batch that hold `exc`, a cycle that only a garbage collection frees (a worker collects
    rarely: every invalid record stayed in memory until then)."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


def time_order(record: Record) -> tuple:
    """The order of records across partitions: by time, then partition. Within a partition
    the offset order stays (the merges below take each partition's records in turn)."""
    return event_time(record), record.topic, record.partition


def merge_by_time(partitions: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """The records of several partitions, each in offset order, merged in time_order."""
    return heapq.merge(*partitions, key=time_order)
