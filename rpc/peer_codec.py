"""The core's replies as JSON between the workers of one instance (rpc/peers.py). Pure.

Private to the instance, so not protobuf: the workers exchange every figure of GET /stats and
GET /health (the public proto carries fewer). Unknown fields are ignored and missing ones take
their defaults, so an old and a new worker (during a reload) still understand each other.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from actors.replies import (
    ClientPage, ClientSummary, Health, KafkaStatus, LimiterStats, ServiceStats, Stats,
)


def encode(value) -> bytes:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, separators=(",", ":")).encode()


def _known(cls, data: dict):
    names = {spec.name for spec in dataclasses.fields(cls)}
    return cls(**{key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items() if key in names})


def service_stats(data: dict) -> ServiceStats:
    return ServiceStats(_known(Stats, data["broker"]), data["history_size"],
                        _known(LimiterStats, data["limiter"]), data["actors"])


def health(data: dict) -> Health:
    return Health(data["status"], _known(KafkaStatus, data["kafka"]), data.get("clients", 0),
                  data.get("warm", True))


def client_page(data: dict) -> ClientPage:
    return ClientPage(data["total"], tuple(_known(ClientSummary, entry)
                                           for entry in data["clients"]))


# the gateway's method -> how its reply is decoded
DECODERS: dict[str, Callable[[Any], Any]] = {
    "stats": service_stats, "health": health, "clients": client_page, "disconnect": bool,
    "disconnect_subject": int}


def decode(method: str, payload: bytes):
    return DECODERS[method](json.loads(payload))
