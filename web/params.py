"""The parameters of GET /events, as pure functions of the query and headers (tested directly).

`stream_params(args, headers, topics)` -> StreamParams, or FilterError with a sentence for the
400 answer. `args` is a MultiDict-like (`get`, `getlist`); `headers` anything with `get`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from actors import resume
from actors.filters import Filter, FilterError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_EPOCH_MS = re.compile(r"-?[0-9]{1,15}")
# RFC 3339 (t, z, a space for the T; a `+` that a query turned into a space); no offset: UTC
_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2}:[0-9]{2})"
                   r"(?:\.([0-9]+))?(Z|[+ -](?:[01][0-9]|2[0-3]):[0-5][0-9])?")
_BAD_SINCE = ("since: expected an RFC 3339 time (2025-01-06T12:00:00Z, or with an offset "
              "such as +02:00) or epoch milliseconds (at most 15 digits)")
_EPOCH, _MILLISECOND = datetime(1970, 1, 1, tzinfo=timezone.utc), timedelta(milliseconds=1)
# Epoch milliseconds of up to 11 digits are before 1973-03-03: epoch seconds sent by mistake
# (10 digits now), which read as milliseconds would replay everything Kafka retains.
_EARLIEST_MS = 10 ** 11


@dataclass(frozen=True, slots=True)
class StreamParams:
    filter: Filter
    named: bool                     # frames carry an `event:` line (not ?unnamed=true)
    with_history: bool              # replay: ?history (default), or a Last-Event-ID of ours
    since_ms: int | None
    last_event_id: str | None       # as sent
    resume: resume.Resume | None    # the position in it; None when this gateway did not issue it


def flag(raw: str | None, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise FilterError(f"{name}: expected true or false, got {raw[:20]!r}")


def since(raw: str | None) -> int | None:
    """`since` as epoch milliseconds: RFC 3339 time (no offset: UTC) or a number of
    milliseconds (at most 15 digits), nothing else (Python's fromisoformat reads more, and
    more with each version). A time before the epoch means the earliest retained event: 0.
    Milliseconds from 1 to 11 digits (before 1973) are refused: epoch seconds sent by mistake,
    or no time at all.
    A fraction is rounded up: an event of the millisecond before the time is not after it."""
    if not raw:
        return None
    if _EPOCH_MS.fullmatch(raw):
        if 0 < int(raw) < _EARLIEST_MS:
            raise FilterError(f"since: {raw} milliseconds is before 1973, before any Kafka "
                              f"record: {_seconds_hint(int(raw))}(0: the earliest event)")
        return max(0, int(raw))
    parts = _TIME.fullmatch(raw.upper())
    try:
        if parts is None:
            raise ValueError(raw)
        day, clock, fraction, offset = parts.groups()
        zone = (offset or "Z").replace("Z", "+00:00").replace(" ", "+")
        moment = datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError:
        raise FilterError(_BAD_SINCE) from None
    fraction = fraction or ""
    rest = int(fraction[:3].ljust(3, "0")) + (fraction[3:].strip("0") != "")   # rounded up
    return max(0, (moment - _EPOCH) // _MILLISECOND + rest)


def _seconds_hint(number: int) -> str:
    """What to send instead: the number as seconds, when it is a time as seconds (1973-2286)."""
    if _EARLIEST_MS // 1000 <= number < 10 ** 10:
        return f"epoch seconds? send {number}000 "
    return "send epoch milliseconds (13 digits today) or an RFC 3339 time "


def present(values, name: str) -> str | None:
    """`values.get(name)`, asked only when the name is there: werkzeug's MultiDict and
    Headers make (and catch) a BadRequestKeyError for every name that is missing, which cost
    more than the rest of this module on every stream open."""
    return values.get(name) if name in values else None


def listed(args, name: str) -> str | None:
    """A list parameter; repeating it (`?event_types=a&event_types=b`) adds to the list."""
    values = args.getlist(name)
    return ",".join(values) if values else None


def last_event_id(args, headers, topics) -> tuple[str | None, resume.Resume | None]:
    """The raw Last-Event-ID (header or query) and the position in it (None: not ours).
    `lastEventId` is event-source-polyfill's name for it: the id it sends on each reconnect,
    fresher than a `last_event_id` the page's URL may carry."""
    raw = (present(headers, "Last-Event-ID") or present(args, "lastEventId")
           or present(args, "last_event_id"))
    if not raw:
        return None, None
    return raw, resume.read(topics, raw)


@lru_cache(maxsize=256)     # reconnecting clients ask the same few filters (a Filter is immutable)
def parsed_filter(event_types: str | None, sources: str | None) -> Filter:
    return Filter.parse(event_types, sources)


def stream_params(args, headers, topics) -> StreamParams:
    flt = parsed_filter(listed(args, "event_types"), listed(args, "sources"))
    named = not flag(present(args, "unnamed"), "unnamed", False)
    history = flag(present(args, "history"), "history", True)
    since_ms = since(present(args, "since"))
    raw_id, position = last_event_id(args, headers, topics)
    return StreamParams(flt, named, history or position is not None, since_ms, raw_id, position)
