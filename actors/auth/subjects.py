"""Whose an event is: its owner read from a Kafka record, and which streams belong to a subject
(pure, no I/O).

Where the owner is comes from a spec: `key` (the record key), `header:<name>` (a record
header) or `data.<dotted.path>` (a path of object keys inside the event JSON's `data`).
`owner()` never raises and fails closed:
- None (a public event) only when the owner is absent: no key, no such header in any case
  (or only headers without a value), a missing key or JSON null on the path;
- the owner as text when it is a string, UTF-8 bytes or an integer (not a boolean), 1 to
  MAX_SUBJECT_LENGTH characters long;
- NOBODY (the empty string, which no subject may be) when an owner is there but unusable:
  invalid UTF-8, empty, too long, a float, boolean, list or object, a path that runs into
  something other than an object, or headers of that name that disagree. Such an event goes
  to no stream at all, rather than to everyone.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Iterator, TypeVar

if TYPE_CHECKING:
    from actors.kafka_reads import Record

NOBODY = ""                  # the owner of an event whose owner field is unusable
MAX_SUBJECT_LENGTH = 1024    # characters; a longer owner is unusable, a longer subject refused
MAX_PATH_DEPTH = 16
_INT_LIMIT = 10 ** MAX_SUBJECT_LENGTH
_ABSENT = None
_FORMS = "key, header:<name> or data.<dotted.path>"


@dataclass(frozen=True, slots=True)
class SubjectField:
    """Where events carry their owner: kind `key`, `header` (with `header`) or `data` (with
    `path`, the object keys under `data`)."""

    kind: str
    header: str = ""
    path: tuple[str, ...] = ()

    def owner(self, record: Record, body: object) -> str | None:
        """The event's owner, None for a public event, NOBODY for an unusable owner."""
        try:
            if self.kind == "key":
                return _text(getattr(record, "key", None))
            if self.kind == "header":
                return _from_headers(getattr(record, "headers", None), self.header)
            if self.kind == "data":
                return _from_path(body, self.path)
            return NOBODY        # a kind parse_subject_field never makes
        except Exception:        # hostile input of a shape no branch foresaw: fail closed
            return NOBODY

    def describe(self) -> str:
        if self.kind == "header":
            return f"header:{self.header}"
        if self.kind == "data":
            return "data." + ".".join(self.path)
        return self.kind


def parse_subject_field(spec: str) -> SubjectField:
    """`key`, `header:<name>` or `data.<dotted.path>`, or ValueError saying what is wrong."""
    if not isinstance(spec, str):
        raise ValueError(f"the subject field must be text ({_FORMS}), got {type(spec).__name__}")
    text = spec.strip()
    if text == "key":
        return SubjectField("key")
    if text.startswith("header:"):
        name = text[len("header:"):]
        if not name or name != name.strip() or not name.isprintable():
            raise ValueError(f"subject field {text[:60]!r}: name the header after "
                             f"'header:', without spaces around it (header:user-id)")
        return SubjectField("header", header=name)
    if text == "data" or text.startswith("data."):
        path = tuple(text.split(".")[1:])
        if not path or not all(path) or any(p != p.strip() for p in path):
            raise ValueError(f"subject field {text[:60]!r}: give a dotted path of keys inside "
                             f"the event's data, like data.user.id (no empty parts)")
        if len(path) > MAX_PATH_DEPTH:
            raise ValueError(f"subject field {text[:60]!r}: at most {MAX_PATH_DEPTH} keys deep")
        return SubjectField("data", path=path)
    raise ValueError(f"subject field {text[:60]!r} is not one of {_FORMS}")


def _text(value: object) -> str | None:
    if value is None:
        return _ABSENT
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > 4 * MAX_SUBJECT_LENGTH:
            return NOBODY
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return NOBODY
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            return NOBODY
        value = str(int(value))
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SUBJECT_LENGTH:
        return NOBODY
    return str(value)


def _from_headers(headers: Iterable[object] | None, name: str) -> str | None:
    """The header `name` in any case: a producer's "Owner" for "owner" still names an owner."""
    name = name.casefold()
    found: set[str | None] = set()
    for item in headers or ():
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            continue
        key, value = item
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if isinstance(key, str) and key.casefold() == name and value is not None:
            found.add(_text(value))
    if len(found) > 1:
        return NOBODY
    return found.pop() if found else _ABSENT


def _from_path(body: object, path: tuple[str, ...]) -> str | None:
    if not isinstance(body, Mapping):
        return NOBODY
    node = body.get("data")
    for key in path:
        if node is None:
            return _ABSENT
        if not isinstance(node, Mapping):
            return NOBODY
        node = node.get(key)
    return _text(node)


C = TypeVar("C", bound=Hashable)
_NONE: frozenset = frozenset()


class SubjectIndex(Generic[C]):
    """Which clients (streams) belong to each subject, so an owned event reaches its subject's
    streams without a scan of every client. add and remove change the subject's set in place;
    `clients_of` answers a frozenset made once per change of the subject (no copy per event,
    nor per stream opened or closed)."""

    __slots__ = ("_clients", "_answers")

    def __init__(self) -> None:
        self._clients: dict[str, set[C]] = {}
        self._answers: dict[str, frozenset[C]] = {}    # clients_of's, until the subject changes

    def add(self, subject: str, client: C) -> None:
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
            raise ValueError(f"a subject is text of 1 to {MAX_SUBJECT_LENGTH} characters")
        self._clients.setdefault(subject, set()).add(client)
        self._answers.pop(subject, None)

    def remove(self, subject: str, client: C) -> None:
        """Forget a client of a subject; nothing happens if it was not there."""
        clients = self._clients.get(subject)
        if clients is None or client not in clients:
            return
        clients.remove(client)
        if not clients:
            del self._clients[subject]
        self._answers.pop(subject, None)

    def clients_of(self, subject: str | None) -> frozenset[C]:
        if not subject:
            return _NONE
        answer = self._answers.get(subject)
        if answer is None:
            clients = self._clients.get(subject)
            if clients is None:
                return _NONE
            answer = self._answers[subject] = frozenset(clients)
        return answer

    def count(self, subject: str) -> int:
        """The subject's open streams (for a per-subject limit)."""
        return len(self._clients.get(subject, ()))

    def __len__(self) -> int:
        """Subjects with at least one stream."""
        return len(self._clients)

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients)
