"""Warnings about settings that are valid but may not do what their writer meant, said by the
master at start and on SIGHUP and by `--check-config` (master_warnings), and for subscriber
auth (auth_warnings) once per instance, by its first worker, and by `--check-config`.

`unknown_variables()` finds likely typos, `clear_text_warnings()` secrets sent or kept
unencrypted, `exposure_warnings()` what is open to the network, `limit_warnings()` limits that
never refuse, `auth_warnings()` what subscriber auth will not do.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
from pathlib import Path

from actors.settings import (
    INSTANCE_DIR, SECRETS, VARIABLES, Settings, env_file_warnings, read_env_file,
)
from actors.settings.dotenv import is_name
from actors.settings.variables import one_of


def clear_text_warnings(settings: Settings) -> list[str]:
    """What the settings send unencrypted to another machine: a PLAIN password or an OAUTHBEARER
    token over SASL_PLAINTEXT (SCRAM never sends the password; loopback brokers are exempt);
    and a key password given for a key kept in clear."""
    return [*_sent_in_clear(settings), *_key_in_clear(settings)]


def _key_in_clear(settings: Settings) -> list[str]:
    path = settings.kafka_ssl_key_file or settings.kafka_ssl_cert_file
    if not settings.kafka_ssl_key_password or not path:
        return []
    try:
        if b"ENCRYPTED" in Path(path).read_bytes():
            return []
    except OSError:
        return []           # the start reports it
    return [f"the private key in {path!r} is not encrypted, so KAFKA_SSL_KEY_PASSWORD is unused "
            "and anyone who can read the file has the key: encrypt it (openssl pkcs8 -topk8 "
            "-v2 aes-256-cbc) or remove the password"]


def _sent_in_clear(settings: Settings) -> list[str]:
    mechanism = settings.kafka_sasl_mechanism
    if settings.kafka_security_protocol != "SASL_PLAINTEXT" or mechanism not in (
            "PLAIN", "OAUTHBEARER"):
        return []
    remote = [b for b in settings.kafka_brokers if not _loopback(b.rpartition(":")[0])]
    if not remote:
        return []
    secret = "KAFKA_SASL_PASSWORD" if mechanism == "PLAIN" else "the OAUTHBEARER token"
    return [f"KAFKA_SASL_MECHANISM={mechanism} over SASL_PLAINTEXT sends {secret} to "
            f"{', '.join(remote)} in clear text: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or use "
            "SCRAM-SHA-512)"]


def exposure_warnings(settings: Settings) -> list[str]:
    """What the settings open to anyone on the network, which an operator may mean: every
    address trusted as a proxy, or the management API off loopback without a token, or with
    its token in clear text (no TLS)."""
    warnings = []
    if _covers_everything(settings.trusted_proxies):
        warnings.append("TRUSTED_PROXIES trusts every address: any client can name its own "
                        "address in X-Forwarded-For and so escape the per-address limits; list "
                        "only your proxies' networks, unless nothing but them reaches this port")
    if (settings.grpc_port and not settings.grpc_auth_token
            and not settings.grpc_tls_client_ca_file and not _loopback(settings.grpc_host)):
        warnings.append(f"GRPC_HOST={settings.grpc_host} without GRPC_AUTH_TOKEN: anyone who "
                        f"reaches port {settings.grpc_port} can list and disconnect clients; set "
                        f"a token (or GRPC_TLS_CLIENT_CA_FILE, for client certificates), or keep "
                        f"GRPC_HOST on loopback")
    elif (settings.grpc_port and not settings.grpc_tls_cert_file
          and not _loopback(settings.grpc_host)):
        warnings.append(f"GRPC_HOST={settings.grpc_host} without TLS: GRPC_AUTH_TOKEN crosses the "
                        f"network in clear text, for anyone on the path to read and use; set "
                        f"GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE, or keep GRPC_HOST on "
                        f"loopback")
    return warnings


def settings_warnings(settings: Settings) -> list[str]:
    """Every warning the master says of the settings themselves, at start and on SIGHUP (and
    `--check-config`): secrets in clear, what is open to the network, limits that never refuse."""
    return [*clear_text_warnings(settings), *exposure_warnings(settings),
            *limit_warnings(settings), *retry_warnings(settings)]


MIN_SPREAD_RETRY_MS = 500


def retry_warnings(settings: Settings) -> list[str]:
    """A `retry:` too short to spread reconnects: its jitter is a quarter of it."""
    retry = settings.sse_retry_ms
    if retry >= MIN_SPREAD_RETRY_MS:
        return []
    return [f"SSE_RETRY_MS={retry}: after a drop every browser comes back within "
            f"{retry * 5 // 4} ms, all together: {MIN_SPREAD_RETRY_MS} or more spreads a "
            f"reconnect storm (the default is 3000)"]


def master_warnings(settings: Settings | None) -> list[str]:
    """Every warning the master says at start and on SIGHUP (and `--check-config`): the .env's
    odd lines, variables it does not know, and settings_warnings. SettingsError when the .env
    cannot be read."""
    return [*env_file_warnings(), *unknown_variables(),
            *(settings_warnings(settings) if settings is not None else ())]


def limit_warnings(settings: Settings) -> list[str]:
    """Limits that can never refuse anything: one per address (or subject) above the whole
    instance's, which refuses first."""
    pairs = [("SSE_MAX_CLIENTS_PER_IP", settings.sse_max_clients_per_ip, "SSE_MAX_CLIENTS",
              settings.sse_max_clients),
             ("HTTP_MAX_PENDING_PER_IP", settings.http_max_pending_per_ip, "HTTP_MAX_PENDING",
              settings.http_max_pending),
             ("SSE_MAX_CLIENTS_PER_SUBJECT", settings.sse_max_clients_per_subject,
              "SSE_MAX_CLIENTS", settings.sse_max_clients)]
    return [f"{name}={value} is above {whole_name}={whole}: the instance's limit refuses "
            f"first, so this one never does; lower it to at most {whole} (or raise "
            f"{whole_name})" for name, value, whole_name, whole in pairs if value > whole]


def auth_warnings(settings: Settings) -> list[str]:
    """What subscriber auth (when on) will not do as an operator may expect."""
    found = []
    if settings.auth_ticket_secret is None:
        found.append("AUTH_TICKET_SECRET is not set: stream tickets are signed with a random "
                     "secret of this instance and work only on the instance that issued them; "
                     "set the same AUTH_TICKET_SECRET on every instance")
    if settings.auth_cookie_name and "*" in settings.cors_allowed_origins:
        found.append("AUTH_COOKIE_NAME is set but CORS_ALLOWED_ORIGINS=*: browsers send the "
                     "cookie only to the gateway's own origin; list the pages' origins in "
                     "CORS_ALLOWED_ORIGINS to let them connect with credentials")
    return found


def _covers_everything(networks) -> bool:
    """Some address family wholly covered, by one network or by pieces (0.0.0.0/1 and
    128.0.0.0/1)."""
    for version in (4, 6):
        pieces = [n for n in networks if n.version == version]
        if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(pieces)):
            return True
    return False


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False                    # a name other than localhost: it may be any address
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


# -- names that look like ours but are not ---------------------------------------------------

PREFIXES = ("KAFKA_", "SSE_", "GRPC_", "HTTP_", "ADMIN_", "CORS_", "RATE_LIMIT_", "LOG_",
            "AUTH_", "WORKER")
# Names of other software under the same prefixes: scripts/kafka-local, gRPC's C core, proxies.
FOREIGN_PREFIXES = ("KAFKA_LOCAL_", "GRPC_PYTHON_", "GRPC_GO_", "GRPC_XDS_", "GRPC_EXPERIMENTAL_")
FOREIGN = frozenset({
    "HTTP_PROXY", "GRPC_VERBOSITY", "GRPC_TRACE", "GRPC_POLL_STRATEGY", "GRPC_DNS_RESOLVER",
    "GRPC_ENABLE_FORK_SUPPORT", "GRPC_SSL_CIPHER_SUITES", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "GRPC_NOT_USE_SYSTEM_SSL_ROOTS", "GRPC_ABORT_ON_LEAKS", "GRPC_EXPERIMENTS",
    "GRPC_STACKTRACE_MINLOGLEVEL", "GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS",
})


def unknown_variables(environ=None, env_file=".env") -> list[str]:
    """One warning per variable that looks like one of ours but is not, naming the closest;
    and per variable of other software that does not do what it looks like."""
    in_file = set(read_env_file(env_file) if env_file else ())
    environ = os.environ if environ is None else environ
    names = {name for name in in_file | set(environ) if is_name(name)}
    known = list(VARIABLES) + [f"{name}_FILE" for name in SECRETS]
    warnings = [f"{name} in {env_file} is not read by gRPC's core library, which reads the "
                "process environment: export it before starting the gateway"
                for name in sorted(in_file - set(environ)) if _grpc_core_reads(name)]
    if "WEB_CONCURRENCY" in names and "WORKERS" not in names:
        warnings.append("WEB_CONCURRENCY is ignored: the gateway sets gunicorn's workers from "
                        "WORKERS (empty: one per CPU)")
    for name in sorted(names):
        if name != name.upper() and name.upper() in known:
            warnings.append(f"variable {name} is ignored: the names are upper case "
                            f"({name.upper()})")
            continue
        if (name in known or name in FOREIGN or name == INSTANCE_DIR
                or not name.startswith(PREFIXES)
                or name.startswith(FOREIGN_PREFIXES)):
            continue
        closest = difflib.get_close_matches(name, known, n=1, cutoff=0.0)[0]
        note = ""
        if name.endswith("_FILE") and name.removesuffix("_FILE") in VARIABLES:
            note = f" only {one_of(list(SECRETS))} may be read from a file"
        warnings.append(f"unknown variable {name} is ignored (did you mean {closest}?{note})")
    return warnings


def _grpc_core_reads(name: str) -> bool:
    return name.startswith("GRPC_") and (name in FOREIGN or name.startswith(FOREIGN_PREFIXES))
