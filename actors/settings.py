"""All configuration in one place: environment variables (and an optional `.env` file).

`Settings.from_env()` validates every variable at once and raises `SettingsError`
with one line per bad variable, naming the value and what is expected, then checks that
the Kafka connection settings fit together. A secret may be given as `<NAME>_FILE` instead.
`Settings.masked()` shows the effective values. What valid settings still deserve a warning
is in actors/settings_warnings.py.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from actors.auth.redact import mask_url_credentials
from actors.auth.scope import Scope, ScopeError
from actors.auth.subjects import SubjectField, parse_subject_field

DEFAULT_TOPICS = ("blog.posts,blog.comments,twitchbot.streams,twitchbot.messages,"
                  "link.links,link.clicks")
HOW_TO_START = ("start it with `kafka-sse-gateway` (installed with the package), or "
                "`gunicorn -c gunicorn.conf.py` from the project directory")


class SettingsError(ValueError):
    """One or more configuration variables are invalid."""


def _text(raw):
    return raw.strip()


def _csv(raw):
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_WHOLE = re.compile(r"-?[0-9]+")


def _int_range(low, high):
    """Both bounds: a value past what the code using it can take (a float, a C int, a gevent
    pool) must stop the start here, not fail later in every worker."""
    def parse(raw):
        text = raw.strip()
        value = int(text) if _WHOLE.fullmatch(text) else None    # not 1_0, nor other digits
        if value is None or not low <= value <= high:
            raise ValueError(f"expected a whole number between {low} and {high}")
        return value
    parse.bounds = (low, high)
    return parse


def _host(raw):
    """A listen address: empty is refused, since gunicorn and grpc take it for every
    interface."""
    host = raw.strip()
    if not host:
        raise ValueError("expected an address to listen on, e.g. 127.0.0.1 (loopback) or "
                         "0.0.0.0 (every interface, if that is what you want)")
    return host


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
        if not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in topic) \
                or len(topic) > 249 or topic in (".", ".."):
            raise ValueError(f"{topic!r} is not a valid Kafka topic name")
    for index, topic in enumerate(topics):
        if topic in topics[:index]:
            raise ValueError(f"{topic!r} is listed twice: list each topic once")
    return topics


INT32_MAX = 2**31 - 1      # Kafka's protocol carries sizes as 32-bit integers
# Counts of connections and streams: gevent's pool takes SSE_MAX_CLIENTS + HTTP_MAX_PENDING as a
# C int, and a process has far fewer file descriptors anyway.
MAX_CONNECTIONS = 1_000_000
# Rates and bursts become floats (the token buckets): exact up to 2**53, and far above any use.
MAX_RATE = 1_000_000_000


def _brokers(raw):
    brokers = _csv(raw)
    if not brokers:
        raise ValueError("expected host:port[,host:port...]")
    for broker in brokers:
        if "://" in broker:
            raise ValueError(f"{broker!r}: write host:port without a scheme; the protocol is "
                             f"KAFKA_SECURITY_PROTOCOL's (PLAINTEXT, SSL, SASL_SSL ...)")
        if ";" in broker or len(broker.split()) > 1:
            raise ValueError(f"{broker!r}: separate the brokers with commas, e.g. "
                             f"kafka-1:9092,kafka-2:9092")
        host, _, port = broker.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"{broker!r} is not host:port")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{broker!r}: an IPv6 address is written in brackets, "
                             f"e.g. [::1]:9092")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"{broker!r}: the port must be between 1 and 65535")
    return brokers


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _networks(raw):
    """CIDRs; IPv4-mapped IPv6 ones as IPv4, the form peers are compared in (web/address.py)."""
    networks = []
    for part in _csv(raw):
        if len(part.split()) > 1:
            raise ValueError(f"{part!r}: separate the networks with commas, e.g. "
                             f"10.0.0.0/8,192.168.0.0/16")
        network = ipaddress.ip_network(part, strict=False)
        if network.version == 6 and network.subnet_of(_MAPPED):
            network = ipaddress.ip_network(
                (network.network_address.ipv4_mapped, network.prefixlen - 96))
        elif network.version == 6 and network.supernet_of(_MAPPED):
            networks.append(ipaddress.ip_network("0.0.0.0/0"))
        networks.append(network)
    return tuple(networks)


def _origins(raw):
    origins = _csv(raw)
    if "*" in origins and len(origins) > 1:
        raise ValueError("expected either * or a list of origins, not both")
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and not (parts.scheme and parts.netloc and parts.path in ("", "/")
                                  and not parts.query and not parts.fragment
                                  and origin.isprintable() and " " not in origin):
            raise ValueError(f"{origin!r} is not an origin as browsers send it: "
                             "scheme://host[:port], e.g. https://app.example.com")
        trouble = _origin_trouble(parts) if origin != "*" else ""
        if trouble:
            raise ValueError(f"{origin!r} is not an origin as browsers send it: {trouble}")
    return origins


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_trouble(parts) -> str:
    """What browsers write otherwise in an Origin header (RFC 6454), "" when nothing."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not port and ":" in parts.netloc.rpartition("]")[2]:
        return "the port must be a number between 1 and 65535"
    if "@" in parts.netloc:
        return "it never holds a user; leave the user@ out"
    if port is not None and port == DEFAULT_PORTS.get(parts.scheme.lower()):
        return (f"the default port is left out: write "
                f"{parts.scheme}://{parts.netloc.rpartition(':')[0]}")
    if not parts.netloc.isascii():
        return "its host is ASCII: write the host in punycode (xn--...)"
    if "*" in parts.netloc:
        return ("a wildcard inside an origin never matches one: list each origin, or * "
                "alone for every origin")
    return ""


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header_names(raw):
    names = _csv(raw)
    for name in names:
        if not set(name) <= _TOKEN_CHARS:
            raise ValueError(f"{name!r} is not a header name (letters, digits and "
                             "!#$%&'*+-.^_`|~)")
    return names


def _log_format(raw):
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("expected text or json")
    return value


def _choice(*allowed, optional=False):
    def parse(raw):
        value = raw.strip().upper()
        if (optional and not value) or value in allowed:
            return value
        raise ValueError(f"expected {_one_of(allowed)}" + (" (or empty)" if optional else ""))
    return parse


def _one_of(options):
    return ", ".join(options[:-1]) + " or " + options[-1]


def _isolation_level(raw):
    value = raw.strip().lower()
    if value not in ("read_committed", "read_uncommitted"):
        raise ValueError("expected read_committed or read_uncommitted")
    return value


def read_error(path: str) -> OSError | None:
    """Why the file at `path` cannot be read now; None when it can."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        return exc
    return None


def _readable_file(raw):
    """A path that can be opened now (empty: not used)."""
    path = raw.strip()
    if path and (error := read_error(path)) is not None:
        raise ValueError(f"cannot read the file ({error.strerror or error}){_seen_as(path)}")
    return path


def _seen_as(path: str) -> str:
    """Where a relative path was looked for: the directory the gateway started in."""
    return "" if os.path.isabs(path) else f"; looked for {os.path.abspath(path)}"


def _secret(raw):
    return raw   # verbatim: spaces may belong to a password


MIN_GRPC_TOKEN_CHARS = 16


def _metadata_token(raw):
    """A token sent as gRPC metadata (`authorization: Bearer <token>`): printable ASCII, long
    enough not to be guessed (empty: none)."""
    value = raw.strip()
    if raw and not value:       # set, to nothing: the management API would ask no token
        raise ValueError("only spaces: that is no token; make one with `openssl rand -hex 32`, "
                         "or leave the variable empty for none")
    if not all("!" <= c <= "~" for c in value):
        raise ValueError("expected printable ASCII without spaces (gRPC metadata carries "
                         "nothing else)")
    if 0 < len(value) < MIN_GRPC_TOKEN_CHARS:
        raise ValueError(f"at least {MIN_GRPC_TOKEN_CHARS} characters, or anyone who reaches "
                         "the port can guess it; make one with `openssl rand -hex 32`")
    return value


def _client_id(raw):
    value = raw.strip() or f"kafka-sse-gateway-{socket.gethostname()}"
    if len(value) > 200 or not value.isprintable() or " " in value:
        raise ValueError("expected up to 200 printable characters without spaces")
    return value


MAX_WORKERS = 64
CGROUP_ROOT = "/sys/fs/cgroup"


def _workers(raw):
    """Empty: one worker per CPU this process may use (its affinity mask and its cgroup's CPU
    quota), at most MAX_WORKERS."""
    if not raw.strip():
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(cpus or 1, _cpu_quota() or MAX_WORKERS, MAX_WORKERS))
    return _int_range(1, MAX_WORKERS)(raw)


_workers.bounds = (1, MAX_WORKERS)   # type: ignore[attr-defined]


def _cpu_quota() -> int | None:
    """CPUs the cgroup's CFS quota allows, rounded up (a Kubernetes CPU limit, docker --cpus;
    the affinity mask does not show it); None when there is none or it cannot be read."""
    for names in (("cpu.max",), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):  # v2, v1
        try:
            words = " ".join(Path(CGROUP_ROOT, name).read_text() for name in names).split()
            quota, period = words[0], int(words[1])
            return None if quota in ("max", "-1") else max(1, -(-int(quota) // period))
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def _log_level(raw):
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value


# -- subscriber auth (issue #14) ------------------------------------------------------------

AUTH_MODES = ("off", "required", "optional")
SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")
MIN_AUTH_SECRET_BYTES = 32
HASH_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}    # an HS* secret is at least this long
_COOKIE_NAME_CHARS = _TOKEN_CHARS


def _auth_mode(raw):
    value = raw.strip().lower()
    if value not in AUTH_MODES:
        raise ValueError(f"expected {_one_of(AUTH_MODES)}")
    return value


def _algorithms(raw):
    known = {name.upper(): name for name in SYMMETRIC_ALGORITHMS + ASYMMETRIC_ALGORITHMS}
    chosen = []
    for name in _csv(raw):
        if name.upper() == "NONE":
            raise ValueError("'none' means unsigned tokens and is never accepted")
        if name.upper() not in known:
            raise ValueError(f"{name!r} is not one of {', '.join(known.values())}")
        if known[name.upper()] not in chosen:
            chosen.append(known[name.upper()])
    return tuple(chosen)


def _auth_secret(raw):
    """bytes (verbatim UTF-8), or None when empty; at least 32 bytes, not only blanks."""
    if not raw:
        return None
    if not raw.strip():
        raise ValueError("only spaces: that is no secret; make one with `openssl rand -base64 "
                         "48`, or leave the variable empty")
    value = raw.encode("utf-8")
    if len(value) < MIN_AUTH_SECRET_BYTES:
        raise ValueError(f"expected at least {MIN_AUTH_SECRET_BYTES} bytes (got {len(value)}); "
                         "make one with `openssl rand -base64 48`")
    return value


def _url(raw):
    """An http(s) URL urllib can fetch: a host, a port 1..65535 if any, no space or control,
    no user or password (urllib sends neither: it reads `user:password@host` as a port)."""
    value = raw.strip()
    if value and not (_fetchable(urlsplit(value)) and value.isprintable() and " " not in value):
        raise ValueError("expected an http:// or https:// URL with a host (and a port "
                         "between 1 and 65535, if any)")
    if value and "@" in urlsplit(value).netloc:
        raise ValueError("expected a URL without a user name or password (they would not be "
                         "sent): serve the key set where no login is needed")
    return value


def _fetchable(parts) -> bool:
    try:
        port = parts.port
    except ValueError:       # not a number, or out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def _cookie_name(raw):
    value = raw.strip()
    if value and not set(value) <= _COOKIE_NAME_CHARS:
        raise ValueError("expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    return value


def _claim(raw):
    value = raw.strip()
    if not value or not value.isprintable():
        raise ValueError("expected the name of a JWT claim")
    return value


def _subject_field(raw) -> SubjectField | None:
    return parse_subject_field(raw) if raw.strip() else None


def _anonymous_scope(raw) -> Scope:
    """`event_types=<patterns>;sources=<patterns>` (both, `*` for all); empty: nothing."""
    if not raw.strip():
        return Scope((), ())
    kinds: dict[str, str] = {}
    for part in raw.split(";"):
        name, equals, patterns = part.partition("=")
        name = name.strip()
        if not equals or name not in ("event_types", "sources") or name in kinds:
            raise ValueError("expected event_types=<patterns>;sources=<patterns> "
                             "(for example event_types=blog.*;sources=*)")
        kinds[name] = patterns.strip()
    if len(kinds) != 2 or not all(kinds.values()):
        raise ValueError("give both event_types=... and sources=..., each with at least one "
                         "pattern (* for all)")
    try:
        return Scope.parse(kinds["event_types"], kinds["sources"])
    except ScopeError as exc:
        raise ValueError(str(exc)) from None


def scope_text(scope: Scope) -> str:
    """A Scope as AUTH_ANONYMOUS_SCOPE writes it (empty: nothing at all)."""
    if not scope.event_types and not scope.sources and scope.event_types is not None:
        return ""
    return ";".join(f"{name}={','.join(patterns) if patterns is not None else '*'}"
                    for name, patterns in (("event_types", scope.event_types),
                                           ("sources", scope.sources)))


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

# name -> (default, parser, one line of meaning); .env.example and the README mirror this table.
VARIABLES = {
    "KAFKA_BROKERS": ("localhost:9092", _brokers, "Kafka bootstrap servers, host:port comma list"),
    "KAFKA_TOPICS": (DEFAULT_TOPICS, _topics,
                     "Topics to stream, explicit names (no wildcards), each once"),
    "KAFKA_METADATA_REFRESH_MS": ("10000", _int_range(1000, INT32_MAX),
                                  "How often new topics and partitions are looked for"),
    "KAFKA_CLIENT_ID": ("", _client_id,
                        "Client id in broker logs and quotas, plus -live, -replay... "
                        "(empty: kafka-sse-gateway-<hostname>)"),
    "KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", _choice(*PROTOCOLS),
                                "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "KAFKA_SSL_CA_FILE": ("", _readable_file,
                          "PEM file of the CA that signed the brokers' certificates (empty: "
                          "system CAs)"),
    "KAFKA_SSL_CERT_FILE": ("", _readable_file, "PEM client certificate, for mutual TLS"),
    "KAFKA_SSL_KEY_FILE": ("", _readable_file, "PEM private key of the client certificate"),
    "KAFKA_SSL_KEY_PASSWORD": ("", _secret, "Password of an encrypted private key (secret)"),
    "KAFKA_SSL_CHECK_HOSTNAME": ("true", _bool,
                                 "Check that a broker's certificate names the host connected to"),
    "KAFKA_SASL_MECHANISM": ("", _choice(*MECHANISMS, optional=True),
                             "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (empty: no SASL)"),
    "KAFKA_SASL_USERNAME": ("", _text, "SASL user, for PLAIN and SCRAM"),
    "KAFKA_SASL_PASSWORD": ("", _secret, "SASL password, for PLAIN and SCRAM (secret)"),
    "KAFKA_SASL_OAUTH_TOKEN_FILE": ("", _readable_file,
                                    "File holding the OAUTHBEARER token; re-read when it changes"),
    "KAFKA_ISOLATION_LEVEL": ("read_committed", _isolation_level,
                              "read_committed hides records of aborted transactions"),
    "KAFKA_FETCH_MAX_BYTES": ("1048576", _int_range(1024, INT32_MAX),
                              "Bytes one fetch may return"),
    "KAFKA_MAX_PARTITION_FETCH_BYTES": ("262144", _int_range(1024, INT32_MAX),
                                        "Bytes one fetch may return per partition"),
    "HTTP_HOST": ("0.0.0.0", _host, "Address the HTTP server binds"),
    "HTTP_PORT": ("8084", _int_range(1, 65535),
                  "Port of the HTTP server (/events, /health, /stats)"),
    "HTTP_HEADER_TIMEOUT_SECONDS": ("10", _int_range(1, 3600),
                                    "Seconds a client may take to send its request head (then "
                                    "408)"),
    "HTTP_MAX_PENDING_PER_IP": ("50", _int_range(1, MAX_CONNECTIONS),
                                "Connections one address may hold in a worker before its "
                                "request is complete (more: 429)"),
    "HTTP_MAX_PENDING": ("1000", _int_range(1, MAX_CONNECTIONS),
                         "Unfinished requests the worker holds at most (past it the oldest "
                         "is closed)"),
    "WORKERS": ("", _workers, "gunicorn workers, each with its own actors and Kafka reader, "
                "sharing the limits (empty: one per CPU this process may use)"),
    "GRPC_HOST": ("127.0.0.1", _host,
                  "Address the gRPC management API binds (loopback by default)"),
    "GRPC_PORT": ("9094", _int_range(0, 65535), "Port of the gRPC management API (0 turns it off)"),
    "GRPC_AUTH_TOKEN": ("", _metadata_token,
                        "Bearer token required by management calls, at least 16 characters "
                        "(empty: none)"),
    "GRPC_TLS_CERT_FILE": ("", _readable_file, "PEM certificate (chain) the gRPC management API "
                           "serves TLS with (empty: plaintext)"),
    "GRPC_TLS_KEY_FILE": ("", _readable_file,
                          "PEM private key of GRPC_TLS_CERT_FILE, unencrypted"),
    "GRPC_TLS_CLIENT_CA_FILE": ("", _readable_file,
                                "PEM certificate(s) of the CA(s) whose client certificates the "
                                "gRPC management API requires (mutual TLS; empty: none asked)"),
    "ADMIN_HOST": ("127.0.0.1", _host,
                   "Address of the admin listener (/metrics, /stats, /livez, /readyz, /health)"),
    "ADMIN_PORT": ("0", _int_range(0, 65535), "Port of the admin listener; when set, the HTTP port "
                   "stops serving /metrics and /stats, and its /health and /readyz leave out "
                   "Kafka's details (0: off)"),
    "SSE_MAX_CLIENTS": ("1000", _int_range(1, MAX_CONNECTIONS),
                        "Concurrent streams this instance accepts"),
    "SSE_MAX_CLIENTS_PER_IP": ("50", _int_range(1, MAX_CONNECTIONS),
                               "Concurrent streams one client address may hold"),
    "SSE_HEARTBEAT_SECONDS": ("30", _int_range(1, 3600), "Seconds between heartbeat comments"),
    "SSE_EVENT_BUFFER_SIZE": ("100", _int_range(1, 100000),
                              "Events that may wait 5 s for a client's socket before it counts "
                              "as too slow"),
    "SSE_HISTORY_SIZE": ("100", _int_range(0, 100000), "Recent events kept for replay"),
    "SSE_RETRY_MS": ("3000", _int_range(0, 600000),
                     "Reconnect delay advised to clients (each gets up to a quarter more)"),
    "SSE_DRAIN_SECONDS": ("1", _int_range(0, 8),
                          "On shutdown, streams are ended evenly over this many seconds"),
    "SSE_MAX_EVENT_BYTES": ("262144", _int_range(64, INT32_MAX),
                            "Larger Kafka records are skipped and counted"),
    "SSE_REPLAY_MAX_EVENTS": ("10000", _int_range(1, INT32_MAX),
                              "Most Kafka records one resume may read back (older: a gap event)"),
    "CORS_ALLOWED_ORIGINS": ("*", _origins, "Allowed origins: * or a comma list of origins"),
    "CORS_ALLOWED_HEADERS": ("Content-Type,Last-Event-ID,Cache-Control", _header_names,
                             "Headers a browser may send"),
    "RATE_LIMIT_ENABLED": ("true", _bool,
                           "Per-IP rate limiting of /events, /stats and POST /tickets"),
    "RATE_LIMIT_REQUESTS_PER_MIN": ("60", _int_range(1, MAX_RATE),
                                    "Sustained requests per minute per IP"),
    "RATE_LIMIT_BURST_SIZE": ("10", _int_range(1, MAX_RATE), "Requests an IP may make at once"),
    "TRUSTED_PROXIES": ("", _networks, "CIDRs whose X-Forwarded-For is believed (empty: none)"),
    "LOG_FORMAT": ("text", _log_format, "Log lines as text or json"),
    "LOG_LEVEL": ("INFO", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    "ACCESS_LOG": ("false", _bool, "One log line per request: method, path (secrets "
                   "redacted), status, duration, client address"),
    "SSE_MAX_CLIENTS_PER_SUBJECT": ("0", _int_range(0, MAX_CONNECTIONS),
                                    "Concurrent streams one authenticated subject may hold "
                                    "(0: no limit)"),
    "AUTH_MODE": ("off", _auth_mode, "Subscriber auth: off, required (401 without a valid "
                  "credential) or optional (no credential: AUTH_ANONYMOUS_SCOPE)"),
    "AUTH_JWT_ALGORITHMS": ("", _algorithms, "Accepted JWT algorithms, explicit (HS256, RS256, "
                            "ES256, EdDSA ...); required when AUTH_MODE is not off"),
    "AUTH_JWT_SECRET": ("", _auth_secret, "Shared secret for HS* tokens, at least 32, 48 or 64 "
                        "bytes (as long as the hash) (secret)"),
    "AUTH_JWT_PUBLIC_KEY_FILE": ("", _readable_file, "PEM public key for RS/PS/ES/EdDSA tokens "
                                 "(or AUTH_JWKS_URL)"),
    "AUTH_JWKS_URL": ("", _url, "JWKS URL for RS/PS/ES/EdDSA tokens (or "
                      "AUTH_JWT_PUBLIC_KEY_FILE)"),
    "AUTH_JWKS_REFRESH_SECONDS": ("60", _int_range(1, 86400), "Seconds within which unknown "
                                  "key ids cause at most 3 JWKS fetches (a key id already "
                                  "looked for: 1)"),
    "AUTH_JWT_AUDIENCE": ("", _text, "Required `aud` of tokens (empty: not checked)"),
    "AUTH_JWT_ISSUER": ("", _text, "Required `iss` of tokens (empty: not checked)"),
    "AUTH_JWT_LEEWAY_SECONDS": ("30", _int_range(0, 3600), "Clock skew allowed on exp and nbf"),
    "AUTH_COOKIE_NAME": ("", _cookie_name, "Cookie holding the token, for EventSource with "
                         "withCredentials (empty: cookies are not read)"),
    "AUTH_TICKET_TTL_SECONDS": ("30", _int_range(1, 3600), "Lifetime of a stream ticket from "
                                "POST /tickets"),
    "AUTH_TICKET_SECRET": ("", _auth_secret, "Secret signing stream tickets, the same on every "
                           "instance, at least 32 bytes (empty: random per instance) (secret)"),
    "AUTH_TICKET_OTHER_SECRET": ("", _auth_secret, "A second secret whose tickets are accepted "
                                 "too, never used to sign: the next or the previous "
                                 "AUTH_TICKET_SECRET while it is rotated (secret)"),
    "AUTH_SCOPE_CLAIM": ("sse", _claim, "Claim holding the token's event_types and sources"),
    "AUTH_SUBJECT_CLAIM": ("sub", _claim, "Claim naming the token's subject"),
    "AUTH_SUBJECT_FIELD": ("", _subject_field, "Where an event names its owner: key, "
                           "header:<name> or data.<path> (empty: no private events)"),
    "AUTH_ANONYMOUS_SCOPE": ("", _anonymous_scope, "What a request without a credential may "
                             "read in optional mode, e.g. event_types=blog.*;sources=* (empty: "
                             "nothing)"),
}


SHOWN_CHARS = 256    # a longer bad value (a path may be long) is shortened in the error
INSTANCE_DIR = "SSE_INSTANCE_DIR"   # internal: set by gunicorn's master, never by hand

# Secrets: each may be given as <NAME>_FILE instead; never shown in errors or masked().
SECRETS = ("KAFKA_SSL_KEY_PASSWORD", "KAFKA_SASL_PASSWORD", "GRPC_AUTH_TOKEN", "AUTH_JWT_SECRET",
           "AUTH_TICKET_SECRET", "AUTH_TICKET_OTHER_SECRET")
# What AUTH_MODE=off never reads.
AUTH_ONLY = tuple(name for name in VARIABLES if name.startswith("AUTH_") and name != "AUTH_MODE"
                  ) + ("SSE_MAX_CLIENTS_PER_SUBJECT",)


@dataclass(frozen=True)
class Settings:
    kafka_brokers: tuple
    kafka_topics: tuple
    kafka_metadata_refresh_ms: int
    kafka_client_id: str
    kafka_security_protocol: str
    kafka_ssl_ca_file: str
    kafka_ssl_cert_file: str
    kafka_ssl_key_file: str
    kafka_ssl_key_password: str = field(repr=False)
    kafka_ssl_check_hostname: bool
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str = field(repr=False)
    kafka_sasl_oauth_token_file: str
    kafka_isolation_level: str
    kafka_fetch_max_bytes: int
    kafka_max_partition_fetch_bytes: int
    http_host: str
    http_port: int
    http_header_timeout_seconds: int
    http_max_pending_per_ip: int
    http_max_pending: int
    workers: int
    grpc_host: str
    grpc_port: int
    grpc_auth_token: str = field(repr=False)
    grpc_tls_cert_file: str
    grpc_tls_key_file: str
    grpc_tls_client_ca_file: str
    admin_host: str
    admin_port: int
    sse_max_clients: int
    sse_max_clients_per_ip: int
    sse_heartbeat_seconds: int
    sse_event_buffer_size: int
    sse_history_size: int
    sse_retry_ms: int
    sse_drain_seconds: int
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
    access_log: bool
    sse_max_clients_per_subject: int
    auth_mode: str
    auth_jwt_algorithms: tuple
    auth_jwt_secret: bytes | None = field(repr=False)
    auth_jwt_public_key_file: str
    auth_jwks_url: str = field(repr=False)     # its query may hold an API key
    auth_jwks_refresh_seconds: int
    auth_jwt_audience: str
    auth_jwt_issuer: str
    auth_jwt_leeway_seconds: int
    auth_cookie_name: str
    auth_ticket_ttl_seconds: int
    auth_ticket_secret: bytes | None = field(repr=False)
    auth_ticket_other_secret: bytes | None = field(repr=False)
    auth_scope_claim: str
    auth_subject_claim: str
    auth_subject_field: SubjectField | None
    auth_anonymous_scope: Scope
    # Read from AUTH_JWT_PUBLIC_KEY_FILE when the settings are made (not a variable of its own).
    auth_jwt_public_key_pem: bytes | None = field(default=None, repr=False)
    # Set by gunicorn's master for its workers (web/serve.py): the instance's private directory
    # (shared limits, peers' sockets, metrics). Empty: a plain single process, nothing shared.
    sse_instance_dir: str = ""

    @classmethod
    def from_env(cls, environ=None, env_file=".env") -> "Settings":
        """Read settings from `environ` (default: os.environ) over the values in `env_file`."""
        values = read_env_file(env_file) if env_file else {}
        values.update(os.environ if environ is None else environ)
        from_files = {name for name in SECRETS if values.get(f"{name}_FILE", "").strip()}
        values, problems, failed = _read_secret_files(values)
        parsed = {}
        for name, (default, parse, _meaning) in VARIABLES.items():
            if name in failed:
                continue
            raw = values.get(name, default)
            try:
                parsed[name.lower()] = parse(raw)
            except ValueError as exc:
                shown = ("<hidden>" if name in SECRETS else
                         _shown(_query_masked(raw) if name == "AUTH_JWKS_URL" else raw))
                problems.append(f"{name}={shown}: {exc}")
        problems += _kafka_problems(parsed)
        problems += _grpc_tls_problems(parsed)
        problems += _auth_problems(parsed, from_files)
        problems += _port_problems(parsed)
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(**parsed, auth_jwt_public_key_pem=_public_key(parsed),
                   sse_instance_dir=values.get(INSTANCE_DIR, "").strip())

    @classmethod
    def defaults(cls, **overrides) -> "Settings":
        settings = cls.from_env(environ={}, env_file=None)
        return settings.replace(**overrides)

    def replace(self, **changes) -> "Settings":
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        if "auth_jwt_public_key_file" in changes and "auth_jwt_public_key_pem" not in changes:
            current["auth_jwt_public_key_pem"] = _public_key(current)
        return Settings(**current)

    def masked(self) -> dict[str, str]:
        """Every variable's effective value as text, a secret that is set shown as ********."""
        return {name: _as_text(name, getattr(self, name.lower())) for name in VARIABLES}

    def describe(self) -> str:
        """The effective configuration, one NAME=value line each, secrets masked."""
        return "\n".join(f"{name}={value}" for name, value in self.masked().items())


def _shown(raw: str) -> str:
    """A bad value as an error line shows it: whole (but a URL's user and password), unless
    too long to read."""
    raw = mask_url_credentials(raw)
    if len(raw) <= SHOWN_CHARS:
        return repr(raw)
    return f"{raw[:40]!r}... ({len(raw)} characters)"


def _as_text(name, value) -> str:
    if name in SECRETS:
        return "********" if value else ""
    if name == "AUTH_JWKS_URL" and value:
        return _query_masked(value)
    if value is None:
        return ""
    if isinstance(value, SubjectField):
        return value.describe()
    if isinstance(value, Scope):
        return scope_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _query_masked(url: str) -> str:
    """`url` with each query value shown as *** (a key server's API key may be one)."""
    base, mark, query = url.partition("?")
    return base + mark + "&".join(part.partition("=")[0] + "=***" if "=" in part
                                  else "***" if part else part for part in query.split("&"))


# -- secrets given as files -------------------------------------------------------------------

def _read_secret_files(values: dict) -> tuple[dict, list, set]:
    """Put the content of each <SECRET>_FILE in place of <SECRET>; the names that failed."""
    values, problems, failed = dict(values), [], set()
    for name in SECRETS:
        path = values.pop(f"{name}_FILE", "").strip()
        if not path:
            continue
        failed.add(name)
        if values.get(name, "").strip():
            problems.append(f"{name} and {name}_FILE are both set: keep one")
            continue
        try:
            values[name] = _read_secret(path)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            problems.append(f"{name}_FILE={path!r}: cannot read the file ({reason})"
                            f"{_seen_as(path)}")
            continue
        if not values[name].strip():    # empty would mean "no secret": GRPC_AUTH_TOKEN off
            problems.append(f"{name}_FILE={path!r}: the file is empty; put the secret in it "
                            f"or unset {name}_FILE")
            continue
        failed.discard(name)
    return values, problems, failed


def _read_secret(path) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text   # one trailing newline, as `echo` writes


# -- Kafka connection settings that must fit together ----------------------------------------

SASL_USERS = {"kafka_sasl_username": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
              "kafka_sasl_password": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
              "kafka_sasl_oauth_token_file": ("OAUTHBEARER",)}
TLS_FILES = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file",
             "kafka_ssl_key_password")


def _kafka_problems(v: dict) -> list[str]:
    """Problems among parsed values; a value that failed to parse is absent and not checked."""
    return _sasl_problems(v) + _tls_problems(v)


def _sasl_problems(v: dict) -> list[str]:
    protocol, mechanism = v.get("kafka_security_protocol"), v.get("kafka_sasl_mechanism")
    if protocol is None or mechanism is None:
        return []
    if mechanism and not protocol.startswith("SASL_"):
        return [f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SECURITY_PROTOCOL SASL_SSL or "
                f"SASL_PLAINTEXT (it is {protocol})"]
    if not mechanism and protocol.startswith("SASL_"):
        return [f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM "
                f"({_one_of(MECHANISMS)})"]
    problems = []
    for key, mechanisms in SASL_USERS.items():
        name, value = key.upper(), v.get(key)
        if value and mechanism not in mechanisms:
            problems.append(
                f"{name} is set but not used by KAFKA_SASL_MECHANISM={mechanism}: remove it or "
                f"change the mechanism" if mechanism else
                f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL: remove it, "
                f"or set KAFKA_SECURITY_PROTOCOL=SASL_SSL and KAFKA_SASL_MECHANISM")
        elif value == "" and mechanism in mechanisms:
            also = f" (or {name}_FILE)" if name in SECRETS else ""
            problems.append(f"KAFKA_SASL_MECHANISM={mechanism} needs {name}{also}")
    return problems


def _tls_problems(v: dict) -> list[str]:
    protocol = v.get("kafka_security_protocol")
    ca, cert, key, password = (v.get(key) for key in TLS_FILES)
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        return [f"{key.upper()} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                f"(SSL or SASL_SSL do)" for key in TLS_FILES if v.get(key)]
    if key and cert == "":
        return ["KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE (the client certificate)"]
    if password and cert == "":
        return ["KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE"]
    if cert and key == "" and b"PRIVATE KEY" not in Path(cert).read_bytes():
        return [f"KAFKA_SSL_CERT_FILE={cert!r} holds no private key: set KAFKA_SSL_KEY_FILE"]
    if protocol is None or None in (ca, cert, key, password):
        return []
    return _tls_load_problems(ca, cert, key, password)


def _tls_load_problems(ca, cert, key, password) -> list[str]:
    """Load the files as the Kafka client will, so a bad one stops the start, not every connect."""
    import ssl   # here, not at the top: gunicorn's master imports this module
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    problems = []
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            problems.append(f"KAFKA_SSL_CA_FILE={ca!r}: not a PEM certificate file "
                            f"({exc.reason or 'a certificate in it cannot be read'})")
    if cert:
        try:   # a callable password: an encrypted key never prompts on the terminal
            context.load_cert_chain(cert, key or None, password=lambda: password.encode())
        except ssl.SSLError as exc:
            problems.append(f"KAFKA_SSL_CERT_FILE={cert!r}, KAFKA_SSL_KEY_FILE={key!r}: "
                            f"{_key_trouble(exc, Path(key or cert).read_bytes())}")
    return problems


def _grpc_tls_problems(v: dict) -> list[str]:
    """The management API's certificate and key, loaded as gRPC will load them at its start."""
    cert, key = v.get("grpc_tls_cert_file"), v.get("grpc_tls_key_file")
    client_ca = v.get("grpc_tls_client_ca_file")
    if client_ca and not (cert and key):
        return ["GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE (client "
                "certificates are asked for in TLS only)"]
    if None in (cert, key) or cert == key == "":
        return []
    if not key:
        return ["GRPC_TLS_CERT_FILE needs GRPC_TLS_KEY_FILE (the certificate's private key)"]
    if not cert:
        return ["GRPC_TLS_KEY_FILE needs GRPC_TLS_CERT_FILE (the certificate it belongs to)"]
    named = f"GRPC_TLS_CERT_FILE={cert!r}, GRPC_TLS_KEY_FILE={key!r}"
    if b"ENCRYPTED" in Path(key).read_bytes():
        return [f"{named}: gRPC takes no key password: give it the key unencrypted (readable "
                f"by the service's user only)"]
    import ssl   # here, not at the top: gunicorn's master imports this module
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        return [f"{named}: {_key_trouble(exc, b'')}"]
    return _client_ca_problems(client_ca) if client_ca else []


def _client_ca_problems(path: str) -> list[str]:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError:
        pass
    if context.cert_store_stats()["x509"]:
        return []
    return [f"GRPC_TLS_CLIENT_CA_FILE={path!r}: not a PEM CA certificate (the certificate of the "
            f"CA that issues the clients' certificates)"]


def _key_trouble(exc, key_pem: bytes) -> str:
    if "KEY_VALUES_MISMATCH" in f"{exc.reason} {exc}".upper():
        return "the key does not belong to the certificate"
    if b"ENCRYPTED" in key_pem:   # OpenSSL 3 reports a bad password only as "PEM lib"
        return "cannot decrypt the key: wrong or missing KAFKA_SSL_KEY_PASSWORD"
    return "not a PEM certificate and key"


# -- listeners' ports ----------------------------------------------------------------------

# A listener's port and the ports bound before it: gunicorn binds HTTP_PORT and ADMIN_PORT, and
# a worker that finds GRPC_PORT taken retries it for ever (it takes it for another worker's).
PORTS = (("ADMIN_PORT", "the admin listener", ("HTTP_PORT",)),
         ("GRPC_PORT", "the management API", ("HTTP_PORT", "ADMIN_PORT")))


def _port_problems(v: dict) -> list[str]:
    problems = []
    for name, listener, before in PORTS:
        port = v.get(name.lower())
        for other in before:
            if port and port == v.get(other.lower()):
                problems.append(f"{name}={port} is {other} too: choose another port for "
                                f"{listener} (or 0 to turn it off)")
                break
    return problems


# -- subscriber auth settings that must fit together -------------------------------------------

def _public_key(v: dict) -> bytes | None:
    path = v.get("auth_jwt_public_key_file")
    return Path(path).read_bytes() if path else None


def _auth_problems(v: dict, from_files: frozenset | set = frozenset()) -> list[str]:
    """The variables the mode needs, and none it would ignore (`from_files`: the secrets
    given as <NAME>_FILE)."""
    mode, algorithms = v.get("auth_mode"), v.get("auth_jwt_algorithms")
    ignored = _ignored_by_mode(v, mode, from_files)
    if mode in (None, "off") or algorithms is None:
        return ignored
    if not algorithms:
        return ignored + [
            f"AUTH_MODE={mode} needs AUTH_JWT_ALGORITHMS: the algorithms your token issuer "
            f"signs with (HS256 with AUTH_JWT_SECRET, or RS256/ES256/EdDSA with "
            f"AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL)"]
    return (ignored + _secret_problems(v, algorithms) + _key_problems(v, algorithms)
            + _ticket_problems(v))


def _ignored_by_mode(v: dict, mode: str | None, from_files=frozenset()) -> list[str]:
    """Auth variables set (not to their defaults) that the mode never reads: with AUTH_MODE
    forgotten, the gateway would serve every event to everyone."""
    if mode == "off":
        names = [f"{name}_FILE" if name in from_files else name
                 for name in AUTH_ONLY if _given(v, name)]
        if names:
            return [f"{', '.join(names)} set, but AUTH_MODE=off (the default) reads none of "
                    f"them and serves every event to every client: set AUTH_MODE=required "
                    f"(or optional), or remove them"]
    if mode == "required" and _given(v, "AUTH_ANONYMOUS_SCOPE"):
        return ["AUTH_ANONYMOUS_SCOPE is set, but AUTH_MODE=required answers every request "
                "without a credential 401: set AUTH_MODE=optional, or remove it"]
    return []


def _given(v: dict, name: str) -> bool:
    default, parse, _meaning = VARIABLES[name]
    key = name.lower()
    return key in v and v[key] != parse(default)


def _ticket_problems(v: dict) -> list[str]:
    if v.get("auth_ticket_other_secret") and v.get("auth_ticket_secret", b"") is None:
        return ["AUTH_TICKET_OTHER_SECRET needs AUTH_TICKET_SECRET (or AUTH_TICKET_SECRET_FILE), "
                "the secret this instance signs tickets with"]
    return []


def _secret_problems(v: dict, algorithms: tuple) -> list[str]:
    symmetric = [a for a in algorithms if a in SYMMETRIC_ALGORITHMS]
    secret = v.get("auth_jwt_secret", b"")    # absent: it failed to parse (already reported)
    if symmetric and secret is None:
        return [f"AUTH_JWT_ALGORITHMS={','.join(symmetric)} needs AUTH_JWT_SECRET (or "
                f"AUTH_JWT_SECRET_FILE) of at least {MIN_AUTH_SECRET_BYTES} bytes"]
    if not symmetric and secret:
        return ["AUTH_JWT_SECRET is set but AUTH_JWT_ALGORITHMS has no HS256/HS384/HS512: "
                "remove the secret or add the HS algorithm your issuer uses"]
    return [f"AUTH_JWT_ALGORITHMS={alg} needs AUTH_JWT_SECRET of at least {HASH_BYTES[alg]} "
            f"bytes (RFC 7518 3.2: as long as its hash); it has {len(secret)}"
            for alg in symmetric if secret and len(secret) < HASH_BYTES[alg]]


def _key_problems(v: dict, algorithms: tuple) -> list[str]:
    asymmetric = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    key_file, jwks_url = v.get("auth_jwt_public_key_file"), v.get("auth_jwks_url")
    if key_file is None or jwks_url is None:
        return []
    if not asymmetric:
        return [f"{name} is set but AUTH_JWT_ALGORITHMS has no RS/PS/ES/EdDSA algorithm: "
                f"remove it or add the algorithm of its keys"
                for name, value in (("AUTH_JWT_PUBLIC_KEY_FILE", key_file),
                                    ("AUTH_JWKS_URL", jwks_url)) if value]
    if bool(key_file) == bool(jwks_url):
        return [f"AUTH_JWT_ALGORITHMS={','.join(asymmetric)} needs exactly one of "
                f"AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL "
                f"({'both are set' if key_file else 'neither is set'})"]
    if key_file:
        return _pem_problems(key_file, asymmetric)
    return []


def _pem_problems(path: str, asymmetric: list) -> list[str]:
    """The key must load for every asymmetric algorithm accepted (an RSA key cannot check
    ES256), so a wrong key stops the start, not every request."""
    from jwt.algorithms import get_default_algorithms   # not at the top: gunicorn's master
    pem = Path(path).read_bytes()
    for alg in asymmetric:
        algorithm = get_default_algorithms()[alg]
        try:
            key = algorithm.prepare_key(pem)
        except Exception as exc:   # noqa: BLE001 - PyJWT and cryptography raise many kinds
            return [f"AUTH_JWT_PUBLIC_KEY_FILE={path!r} is not a public key for {alg} "
                    f"({type(exc).__name__}); configure only the algorithms of that key"]
        short = algorithm.check_key_length(key)
        if short:               # PyJWT would refuse every token checked with it
            return [f"AUTH_JWT_PUBLIC_KEY_FILE={path!r} is too short for {alg}: {short}"]
    return []


def changed_variables(old: Settings, new: Settings) -> list[str]:
    """The names of the variables whose effective values differ (never the values)."""
    return [name for name in VARIABLES if getattr(old, name.lower()) != getattr(new, name.lower())]


def raw_value(name: str, environ=None, env_file=".env") -> str:
    """A variable as given, unchecked ("" when absent or its .env cannot be read)."""
    try:
        values = read_env_file(env_file) if env_file else {}
    except SettingsError:
        values = {}
    values.update(os.environ if environ is None else environ)
    return values.get(name, "")


def read_env_file(path) -> dict:
    """Parse KEY=VALUE lines of a dotenv file; a missing file is an empty one."""
    file = Path(path)
    if file.is_dir():
        raise SettingsError(f"{path} is a directory, not a file of NAME=value lines (docker "
                            "makes one where a mounted file's host path does not exist): mount "
                            "the file, or remove the directory")
    if not file.is_file():
        return {}
    try:
        text = file.read_text(encoding="utf-8-sig")   # a BOM is no part of a name
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise SettingsError(f"{path}: cannot read the file ({reason}); fix it or remove it "
                            "(the environment alone is then used)") from None
    return {name: _unquoted(value) for _number, name, assigned, value in _dotenv_lines(text)
            if assigned}


def _dotenv_lines(text: str):
    """(line number, name, has `=`, value as written) of each line not blank nor a comment."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            key, equals, value = line.partition("=")
            key = _EXPORT.sub("", key.strip(), count=1)
            yield number, key, bool(equals), value.strip()


_EXPORT = re.compile(r"^export\s+")      # a shell's `export NAME=value`, a tab as well
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_file_warnings(path=".env") -> list[str]:
    """Lines of a dotenv file that do not do what they look like: one without `=`, or whose
    name is none (both ignored), a name set again (the last line is taken), and a value with
    an unquoted ` #` (kept whole: no comment follows a value here). Values are never shown."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError):
        return []                        # missing: nothing to say; unreadable: from_env says it
    warnings: list[str] = []
    first: dict[str, int] = {}
    for number, name, assigned, value in _dotenv_lines(text):
        if not assigned:
            warnings.append(f"{path} line {number} is not NAME=value: it is ignored")
            continue
        if not _NAME.fullmatch(name):
            warnings.append(f"{path} line {number}: {name[:40]!r} is not a variable name "
                            f"(letters, digits and _): the line is ignored")
            continue
        if name in first:
            warnings.append(f"{path} sets {name} on lines {first[name]} and {number}: line "
                            f"{number} is taken; remove the other")
        first.setdefault(name, number)
        if " #" in value.replace("\t", " ") and _unquoted(value) == value:
            warnings.append(f"{path} line {number} ({name}): ' #' does not start a comment "
                            f"after a value, it is part of it: put the comment on a line of its "
                            f"own, or quote the value if the # belongs to it")
    return warnings


def _unquoted(value: str) -> str:
    """One pair of matching quotes around the value removed; a quote of the value kept."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
