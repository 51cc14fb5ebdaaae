"""All configuration in one place: environment variables (and an optional `.env` file).

`Settings.from_env()` validates every variable at once and raises `SettingsError`
with one line per bad variable, naming the value and what is expected.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_TOPICS = "blog.posts,blog.comments,twitchbot.streams,twitchbot.messages,link.links,link.clicks"


class SettingsError(ValueError):
    """One or more configuration variables are invalid."""


def _text(raw):
    return raw.strip()


def _csv(raw):
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int_range(low, high=None):
    def parse(raw):
        value = int(raw.strip())
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"expected a whole number {bound}")
        return value
    parse.expects = f"a whole number {low}..{high if high is not None else ''}"
    return parse


def _bool(raw):
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _topics(raw):
    topics = _csv(raw)
    if not topics:
        raise ValueError("expected at least one topic name")
    for topic in topics:
        if any(ch in topic for ch in "*?[]"):
            raise ValueError(
                f"{topic!r} is a wildcard; Kafka assignment needs explicit topic names "
                "(wildcards belong in the event_types filter of /events)")
        if not all(ch.isalnum() or ch in "._-" for ch in topic) or len(topic) > 249:
            raise ValueError(f"{topic!r} is not a valid Kafka topic name")
    return topics


def _brokers(raw):
    brokers = _csv(raw)
    if not brokers:
        raise ValueError("expected host:port[,host:port...]")
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{broker!r} is not host:port")
    return brokers


def _networks(raw):
    return tuple(ipaddress.ip_network(part, strict=False) for part in _csv(raw))


def _origins(raw):
    origins = _csv(raw)
    if "*" in origins and len(origins) > 1:
        raise ValueError("expected either * or a list of origins, not both")
    return origins


def _log_format(raw):
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("expected text or json")
    return value


def _log_level(raw):
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value


# name -> (default, parser, one line of meaning); .env.example and the README mirror this table.
VARIABLES = {
    "KAFKA_BROKERS": ("localhost:9092", _brokers, "Kafka bootstrap servers, host:port comma list"),
    "KAFKA_TOPICS": (DEFAULT_TOPICS, _topics, "Topics to stream, explicit names (no wildcards)"),
    "KAFKA_METADATA_REFRESH_MS": ("10000", _int_range(1000),
                                  "How often new topics and partitions are looked for"),
    "HTTP_HOST": ("0.0.0.0", _text, "Address the HTTP server binds"),
    "HTTP_PORT": ("8084", _int_range(1, 65535), "Port of the HTTP server (/events, /health, /stats)"),
    "GRPC_HOST": ("127.0.0.1", _text, "Address the gRPC management API binds (loopback by default)"),
    "GRPC_PORT": ("9094", _int_range(0, 65535), "Port of the gRPC management API (0 turns it off)"),
    "GRPC_AUTH_TOKEN": ("", _text, "Bearer token required by management calls (empty: none)"),
    "SSE_MAX_CLIENTS": ("1000", _int_range(1), "Concurrent streams this instance accepts"),
    "SSE_MAX_CLIENTS_PER_IP": ("50", _int_range(1), "Concurrent streams one client address may hold"),
    "SSE_HEARTBEAT_SECONDS": ("30", _int_range(1, 3600), "Seconds between heartbeat comments"),
    "SSE_EVENT_BUFFER_SIZE": ("100", _int_range(1, 100000),
                              "Events queued per client before it counts as too slow"),
    "SSE_HISTORY_SIZE": ("100", _int_range(0, 100000), "Recent events kept for replay"),
    "SSE_RETRY_MS": ("3000", _int_range(0, 600000), "Reconnect delay advised to clients"),
    "SSE_MAX_EVENT_BYTES": ("262144", _int_range(64), "Larger Kafka records are skipped and counted"),
    "SSE_REPLAY_MAX_EVENTS": ("10000", _int_range(1),
                              "Most Kafka records one resume may read back (older: a gap event)"),
    "CORS_ALLOWED_ORIGINS": ("*", _origins, "Allowed origins: * or a comma list of origins"),
    "CORS_ALLOWED_HEADERS": ("Content-Type,Last-Event-ID", _csv, "Headers a browser may send"),
    "RATE_LIMIT_ENABLED": ("true", _bool, "Per-IP rate limiting of /events and /stats"),
    "RATE_LIMIT_REQUESTS_PER_MIN": ("60", _int_range(1), "Sustained requests per minute per IP"),
    "RATE_LIMIT_BURST_SIZE": ("10", _int_range(1), "Requests an IP may make at once"),
    "TRUSTED_PROXIES": ("", _networks, "CIDRs whose X-Forwarded-For is believed (empty: none)"),
    "LOG_FORMAT": ("text", _log_format, "Log lines as text or json"),
    "LOG_LEVEL": ("INFO", _log_level, "DEBUG, INFO, WARNING or ERROR"),
}


@dataclass(frozen=True)
class Settings:
    kafka_brokers: tuple
    kafka_topics: tuple
    kafka_metadata_refresh_ms: int
    http_host: str
    http_port: int
    grpc_host: str
    grpc_port: int
    grpc_auth_token: str
    sse_max_clients: int
    sse_max_clients_per_ip: int
    sse_heartbeat_seconds: int
    sse_event_buffer_size: int
    sse_history_size: int
    sse_retry_ms: int
    sse_max_event_bytes: int
    sse_replay_max_events: int
    cors_allowed_origins: tuple
    cors_allowed_headers: tuple
    rate_limit_enabled: bool
    rate_limit_requests_per_min: int
    rate_limit_burst_size: int
    trusted_proxies: tuple
    log_format: str
    log_level: str

    @classmethod
    def from_env(cls, environ=None, env_file=".env") -> "Settings":
        """Read settings from `environ` (default: os.environ) over the values in `env_file`."""
        values = read_env_file(env_file) if env_file else {}
        values.update(os.environ if environ is None else environ)
        parsed, problems = {}, []
        for name, (default, parse, _meaning) in VARIABLES.items():
            raw = values.get(name, default)
            try:
                parsed[name.lower()] = parse(raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(**parsed)

    @classmethod
    def defaults(cls, **overrides) -> "Settings":
        settings = cls.from_env(environ={}, env_file=None)
        return settings.replace(**overrides)

    def replace(self, **changes) -> "Settings":
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)


def read_env_file(path) -> dict:
    """Parse KEY=VALUE lines of a dotenv file; a missing file is an empty one."""
    file = Path(path)
    if not file.is_file():
        return {}
    result = {}
    for line in file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return result
