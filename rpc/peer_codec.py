"""The core's replies as JSON between the workers of one instance (rpc/peers.py). Pure.

Private to the instance, so not protobuf: the workers exchange every figure of GET /stats and
GET /health (the public proto carries fewer). Unknown fields are ignored and missing ones take
their defaults, so an old and a new worker (during a reload) still understand each other; a
value of the wrong type or range raises TypeError or ValueError (rpc/peers.py then reads the
worker as silent), never becomes a wrong answer or an exception further on.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from actors.replies import (
    ClientPage, ClientSummary, Health, KafkaStatus, LimiterStats, ServiceStats, Stats,
)

MAX_COUNT = 1 << 53       # a count: exact in JSON and in every reader
MAX_CLIENTS = 1 << 24     # one worker's streams, groups, history, actors (uint32 in the proto)
MAX_SECONDS = 6e10        # connected_at, uptime: within protobuf Timestamp's range either way


def encode(value) -> bytes:
    if isinstance(value, ClientPage):       # flat entries: asdict's deep copies cost 3-4x
        value = {"total": value.total, "clients": [_entry(c) for c in value.clients]}
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, separators=(",", ":")).encode()


_ENTRY = tuple(spec.name for spec in dataclasses.fields(ClientSummary))


def _entry(client: ClientSummary) -> dict:
    return {name: getattr(client, name) for name in _ENTRY}


def _known(cls, data):
    """An instance of the reply type `cls` from its JSON object, each field checked against
    its type: a reply that is not what the codec writes raises TypeError or ValueError."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: an object expected, not {type(data).__name__}")
    return cls(**{name: check(name, data[name]) for name, check in _checks(cls) if name in data})


@functools.cache
def _checks(cls) -> tuple[tuple[str, Callable[[str, Any], Any]], ...]:
    """(field, its check) of a reply type, worked out once: a GetClients page holds many."""
    checks = []
    for spec in dataclasses.fields(cls):
        check = _CHECKS.get(str(spec.type))
        if check is None:
            raise TypeError(f"{cls.__name__}.{spec.name}: no check for {spec.type}")
        checks.append((spec.name, check))
    return tuple(checks)


def _count(name: str, value) -> int:
    """A count as the workers keep them: a non-negative int that fits the management API."""
    if type(value) is not int or not 0 <= value < MAX_COUNT:
        raise ValueError(f"{name}: a count from 0 to {MAX_COUNT - 1} expected, not {value!r}")
    return value


def _signed(name: str, value) -> int:
    if type(value) is not int or not -MAX_COUNT < value < MAX_COUNT:
        raise ValueError(f"{name}: an integer expected, not {value!r}")
    return value


def _seconds(name: str, value) -> float:
    """Seconds: a Unix time (connected_at) or an uptime, either sign (an uptime of a worker of
    an earlier version is negative after the wall clock was set back)."""
    if type(value) not in (int, float) or not -MAX_SECONDS < value < MAX_SECONDS:
        raise ValueError(f"{name}: seconds within {MAX_SECONDS:.0f} of 0 expected, "
                         f"not {value!r}")
    return float(value)


def _text(name: str, value) -> str:
    if type(value) is not str:
        raise TypeError(f"{name}: a string expected, not {type(value).__name__}")
    return value


def _flag(name: str, value) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{name}: true or false expected, not {value!r}")
    return value


def _texts(name: str, value) -> tuple[str, ...]:
    if type(value) is not list:
        raise TypeError(f"{name}: a list expected, not {type(value).__name__}")
    return tuple(_text(name, item) for item in value)


def _counts(name: str, value) -> dict[str, int]:
    if type(value) is not dict:
        raise TypeError(f"{name}: an object expected, not {type(value).__name__}")
    check = _signed if name == "kafka_lag" else _count
    return {key: check(f"{name}[{key!r}]", count) for key, count in value.items()}


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "int": _count, "float": _seconds, "str": _text, "bool": _flag,
    "tuple[str, ...]": _texts, "dict[str, int]": _counts}


def _small(name: str, value) -> int:
    """A count the management API carries as uint32 (clients, groups, history, a total)."""
    if _count(name, value) >= MAX_CLIENTS:
        raise ValueError(f"{name}: at most {MAX_CLIENTS - 1}, not {value!r}")
    return value


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise TypeError(f"an object expected, not {type(data).__name__}")
    return data


def service_stats(data) -> ServiceStats:
    data = _object(data)
    broker = _known(Stats, data["broker"])
    for name in ("clients", "filter_groups"):
        _small(name, getattr(broker, name))
    return ServiceStats(broker, _small("history_size", data["history_size"]),
                        _known(LimiterStats, data["limiter"]), _small("actors", data["actors"]))


def health(data) -> Health:
    data = _object(data)
    return Health(_text("status", data["status"]), _known(KafkaStatus, data["kafka"]),
                  _small("clients", data.get("clients", 0)), _flag("warm", data.get("warm", True)),
                  _text("keys_pending", data.get("keys_pending", "")))


def client_page(data) -> ClientPage:
    data = _object(data)
    entries = data["clients"]
    if type(entries) is not list:
        raise TypeError(f"clients: a list expected, not {type(entries).__name__}")
    return ClientPage(_small("total", data["total"]), tuple(_client(entry) for entry in entries))


def _client(entry) -> ClientSummary:
    if isinstance(entry, dict) and "opened" not in entry:
        raise ValueError("a client without `opened`: a worker of an earlier version, which "
                         "orders and pages GetClients otherwise")
    return _known(ClientSummary, entry)


# the gateway's method -> how its reply is decoded
DECODERS: dict[str, Callable[[Any], Any]] = {
    "stats": service_stats, "health": health, "clients": client_page,
    "disconnect": lambda value: _flag("disconnected", value),
    "disconnect_subject": lambda value: _small("disconnected", value)}


def decode(method: str, payload: bytes):
    return DECODERS[method](json.loads(payload))
