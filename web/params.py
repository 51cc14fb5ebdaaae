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
_EPOCH, _MILLISECOND = datetime(1970, 1, 1, tzinfo=timezone.utc), timedelta(milliseconds=1)


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
    """`since` as epoch milliseconds: RFC 3339 time or a number of milliseconds (at most 15
    digits). A time before the epoch means the earliest retained event: it becomes 0."""
    if not raw:
        return None
    if _EPOCH_MS.fullmatch(raw):
        return max(0, int(raw))
    try:
        moment = datetime.fromisoformat(raw.upper().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise FilterError("since: expected an RFC 3339 time or epoch milliseconds "
                          "(at most 15 digits)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, -((_EPOCH - moment) // _MILLISECOND))     # exact, and rounded up


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
    """The raw Last-Event-ID (header or query) and the position in it (None: not ours)."""
    raw = present(headers, "Last-Event-ID") or present(args, "last_event_id")
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
