"""Each configuration variable: its default, how its text is read, and what it means.

VARIABLES maps a name to (default, parser, one line of meaning); .env.example and the README
mirror it. A parser takes the raw text and returns the value, or raises ValueError saying
what is expected. SECRETS may be given as <NAME>_FILE instead and are never shown.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
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


_WHOLE = re.compile(r"-?[0-9]{1,20}")     # int() of thousands of digits says Python's limit


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


MAX_HOST_CHARS = 253          # the longest DNS name (and 2 brackets around an address)


def _host(raw):
    """A listen address as gunicorn, Python and gRPC all read it: empty is refused, since
    gunicorn and grpc take it for every interface; so are forms only some of them read."""
    host = raw.strip()
    if not host:
        raise ValueError("expected an address to listen on, e.g. 127.0.0.1 (loopback) or "
                         "0.0.0.0 (every interface, if that is what you want)")
    if len(host) > MAX_HOST_CHARS + 2:
        raise ValueError(f"longer than any host name (at most {MAX_HOST_CHARS} characters)")
    if not (host.isascii() and host.isprintable()):
        raise ValueError("expected an IP address or a host name, in ASCII (a name in other "
                         "letters in punycode, xn--...)")
    if " " in host or "," in host:
        raise ValueError("expected one address to listen on")
    bare = host[1:-1] if host[0] == "[" and host[-1] == "]" else host
    if "[" in bare or "]" in bare or (bare != host and not _is(ipaddress.IPv6Address, bare)):
        raise ValueError("brackets go around an IPv6 address only, both of them, e.g. [::1]")
    if _shorthand(bare):
        raise ValueError("write the address in full, without leading zeros, e.g. 127.0.0.1 "
                         "(gRPC does not read shorthand such as 127.1 or 0)")
    return host


def _shorthand(text: str) -> bool:
    """An IPv4 address that C's inet_aton reads and Python's ipaddress does not (127.1, 0,
    2130706433, 0x7f.1, 010.0.0.1): Python binds it, gRPC does not."""
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return not _is(ipaddress.IPv4Address, text)


def _is(kind, text: str) -> bool:
    """`text` reads as a `kind` (ipaddress.IPv4Address, IPv6Address)."""
    try:
        kind(text)
    except ValueError:
        return False
    return True


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
                f"{shown(topic)} is a wildcard; Kafka assignment needs explicit topic names "
                "(wildcards belong in the event_types filter of /events)")
        if not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in topic) \
                or len(topic) > 249 or topic in (".", ".."):
            raise ValueError(f"{shown(topic)} is not a valid Kafka topic name")
    for index, topic in enumerate(topics):
        if topic in topics[:index]:
            raise ValueError(f"{shown(topic)} is listed twice: list each topic once")
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
        entry = shown(broker)
        if "://" in broker:
            raise ValueError(f"{entry}: write host:port without a scheme; the protocol is "
                             f"KAFKA_SECURITY_PROTOCOL's (PLAINTEXT, SSL, SASL_SSL ...)")
        if "@" in broker:
            raise ValueError(f"{entry}: no user or password here: they are "
                             f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if ";" in broker or len(broker.split()) > 1:
            raise ValueError(f"{entry}: separate the brokers with commas, e.g. "
                             f"kafka-1:9092,kafka-2:9092")
        host, _, port = broker.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or len(port) > 5:
            raise ValueError(f"{entry} is not host:port")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{entry}: an IPv6 address is written in brackets, "
                             f"e.g. [::1]:9092")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"{entry}: the port must be between 1 and 65535")
    return brokers


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _networks(raw):
    """CIDRs; IPv4-mapped IPv6 ones as IPv4, the form peers are compared in (web/address.py)."""
    networks = []
    for part in _csv(raw):
        if len(part.split()) > 1:
            raise ValueError(f"{shown(part)}: separate the networks with commas, e.g. "
                             f"10.0.0.0/8,192.168.0.0/16")
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{shown(part)} is not a network: an address or a CIDR, e.g. "
                             f"10.0.0.0/8") from None
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
        parts = _split(origin)
        if origin != "*" and not (parts and parts.scheme and parts.netloc
                                  and parts.path in ("", "/") and not parts.query
                                  and not parts.fragment and origin.isprintable()
                                  and " " not in origin):
            raise ValueError(f"{shown(origin)} is not an origin as browsers send it: "
                             "scheme://host[:port], e.g. https://app.example.com")
        trouble = _origin_trouble(parts) if parts and origin != "*" else ""
        if trouble:
            raise ValueError(f"{shown(origin)} is not an origin as browsers send it: {trouble}")
    return origins


def _split(url: str):
    """urlsplit's parts, or None where it cannot split (`http://[::1`)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_trouble(parts) -> str:
    """What browsers write otherwise in an Origin header (RFC 6454), "" when nothing."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if "@" in parts.netloc:
        return "it never holds a user; leave the user@ out"
    if not port and ":" in parts.netloc.rpartition("]")[2]:
        return "the port must be a number between 1 and 65535"
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
            raise ValueError(f"{shown(name)} is not a header name (letters, digits and "
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
        raise ValueError(f"expected {one_of(allowed)}" + (" (or empty)" if optional else ""))
    return parse


def one_of(options):
    """`a, b or c`, for a message that lists the values a variable takes."""
    return ", ".join(options[:-1]) + " or " + options[-1]


def _isolation_level(raw):
    value = raw.strip().lower()
    if value not in ("read_committed", "read_uncommitted"):
        raise ValueError("expected read_committed or read_uncommitted")
    return value


MAX_FILE_BYTES = 1 << 20     # a key, a certificate chain, a token or a secret: far less
_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def file_trouble(path: str) -> str:
    """Why the file at `path` cannot be read now as a key, certificate, token or secret; ""
    when it can. Only a regular file of at most MAX_FILE_BYTES is opened: a named pipe would
    wait for a writer, and /dev/zero be read to the end of memory."""
    try:
        info = os.stat(path)
        kind = next((kind for test, kind in _NOT_REGULAR if test(info.st_mode)), "")
        if kind:
            return f"{kind}, not a regular file"
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_FILE_BYTES:
            return (f"{-(-info.st_size // 1024)} KiB, more than any key, certificate or secret "
                    f"(at most {MAX_FILE_BYTES // 1024} KiB)")
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        return str(exc.strerror or exc)
    except ValueError:          # a NUL in the path
        return "not a path: it holds a NUL character"
    return ""


def _readable_file(raw):
    """A path of a regular file that can be read now, of at most MAX_FILE_BYTES (empty: not
    used)."""
    path = raw.strip()
    if path and (trouble := file_trouble(path)):
        raise ValueError(f"cannot read the file ({trouble}){seen_as(path)}")
    return path


def read_text(path: str) -> str:
    """The UTF-8 text of a key, token or secret file; OSError saying why not (its strerror)."""
    trouble = file_trouble(path)
    if trouble:
        raise OSError(0, trouble)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeError:
        raise OSError(0, "not UTF-8 text") from None


def _token_file(raw):
    """A readable file holding a token now (it is read again when it changes)."""
    path = raw.strip()
    try:
        empty = bool(path) and not read_text(path).strip()
    except OSError as exc:
        raise ValueError(f"cannot read the file ({exc.strerror or exc}){seen_as(path)}") from None
    if empty:
        raise ValueError(f"the file is empty; put the token in it{seen_as(path)}")
    return path


def seen_as(path: str) -> str:
    """Where a relative path was looked for: the directory the gateway started in."""
    if os.path.isabs(path):
        return ""
    where = os.path.abspath(path)
    return f"; looked for {where if len(where) <= SHOWN_CHARS else _cut(where)}"


def shown(raw: str) -> str:
    """A bad value as an error line shows it: whole (but what precedes an @ in each entry,
    after its scheme: a user and password), unless too long to read."""
    raw = mask_url_credentials(_BEFORE_AT.sub(r"\1\2***@", raw))
    return repr(raw) if len(raw) <= SHOWN_CHARS else _cut(raw)


# an entry's user:password@ (or anything up to its last @), after its scheme:// if any
_BEFORE_AT = re.compile(r"(^|[\s,;])([A-Za-z][\w+.-]*://)?[^\s,;]*@")


def shown_path(path: str) -> str:
    """A path as an error line shows it: whole (an @ in it is no credential), unless long."""
    return repr(path) if len(path) <= SHOWN_CHARS else _cut(path)


def _cut(text: str) -> str:
    return f"{text[:40]!r}... ({len(text)} characters)"


def _secret(raw):
    return raw   # verbatim: spaces may belong to a password


MIN_GRPC_TOKEN_CHARS = 16
MAX_GRPC_TOKEN_CHARS = 4096


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
    if len(value) > MAX_GRPC_TOKEN_CHARS:
        raise ValueError(f"at most {MAX_GRPC_TOKEN_CHARS} characters (gRPC refuses metadata "
                         "over 16 KB); make one with `openssl rand -hex 32`")
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
        raise ValueError(f"expected {one_of(AUTH_MODES)}")
    return value


def _algorithms(raw):
    known = {name.upper(): name for name in SYMMETRIC_ALGORITHMS + ASYMMETRIC_ALGORITHMS}
    chosen = []
    for name in _csv(raw):
        if name.upper() == "NONE":
            raise ValueError("'none' means unsigned tokens and is never accepted")
        if name.upper() not in known:
            raise ValueError(f"{shown(name)} is not one of {', '.join(known.values())}")
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
    parts = _split(value)
    if value and not (parts and _fetchable(parts) and value.isprintable() and " " not in value):
        raise ValueError("expected an http:// or https:// URL with a host (and a port "
                         "between 1 and 65535, if any)")
    if value and parts and "@" in parts.netloc:
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
    "KAFKA_SASL_OAUTH_TOKEN_FILE": ("", _token_file,
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
                "sharing the limits (empty: one per CPU this process may use, at most 64)"),
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
    "AUTH_JWT_LEEWAY_SECONDS": ("30", _int_range(0, 3600),
                                "Clock skew allowed on exp, nbf and iat"),
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

