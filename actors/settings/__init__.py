"""All configuration in one place: environment variables (and an optional `.env` file).

`Settings.from_env()` validates every variable at once and raises `SettingsError`
with one line per bad variable, naming the value and what is expected, then checks that
the settings fit together. A secret may be given as `<NAME>_FILE` instead.
`Settings.masked()` shows the effective values. The package's modules: variables (each
variable: default, parser, meaning), checks (what must fit together), dotenv (the `.env`
file), warnings (what valid settings still deserve a warning).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from actors.auth.scope import Scope
from actors.auth.subjects import SubjectField
from actors.settings import checks
from actors.settings.dotenv import env_file_warnings, read_env_file
from actors.settings.variables import (
    HOW_TO_START, INSTANCE_DIR, SECRETS, VARIABLES, SettingsError, file_trouble, read_text,
    scope_text, seen_as, shown, shown_path)


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
        from_files = {name: values[f"{name}_FILE"].strip() for name in SECRETS
                      if values.get(f"{name}_FILE", "").strip()}
        values, problems, failed = _read_secret_files(values)
        parsed = {}
        for name, (default, parse, _meaning) in VARIABLES.items():
            if name in failed:
                continue
            raw = values.get(name, default)
            try:
                parsed[name.lower()] = parse(raw)
            except ValueError as exc:
                problems.append(_problem(name, raw, exc, from_files.get(name)))
        problems += checks.problems(parsed, set(from_files))
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


def _problem(name: str, raw: str, exc: ValueError, path: str | None) -> str:
    """The line of a value refused: a secret never shown, one read from a file named by it."""
    if path is not None:
        return f"{name}_FILE={shown_path(path)}: its content: {exc}"
    if name in SECRETS:
        return f"{name}=<hidden>: {exc}"
    if name.endswith("_FILE"):
        return f"{name}={shown_path(raw)}: {exc}"
    return f"{name}={shown(_query_masked(raw) if name == 'AUTH_JWKS_URL' else raw)}: {exc}"


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
        except OSError as exc:
            problems.append(f"{name}_FILE={shown_path(path)}: cannot read the file "
                            f"({exc.strerror or exc})"
                            f"{seen_as(path)}")
            continue
        if not values[name].strip():    # empty would mean "no secret": GRPC_AUTH_TOKEN off
            problems.append(f"{name}_FILE={shown_path(path)}: the file is empty; put the secret in "
                            f"it or unset {name}_FILE")
            continue
        failed.discard(name)
    return values, problems, failed


def _read_secret(path) -> str:
    text = read_text(path)
    return text[:-1] if text.endswith("\n") else text   # one trailing newline, as `echo` writes


# -- settings compared, a variable as given, the public key's bytes ----------------------------

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


def _public_key(v: dict) -> bytes | None:
    path = v.get("auth_jwt_public_key_file")
    return Path(path).read_bytes() if path else None


__all__ = ["HOW_TO_START", "INSTANCE_DIR", "SECRETS", "VARIABLES", "Settings", "SettingsError",
           "changed_variables", "env_file_warnings", "raw_value", "read_env_file", "file_trouble"]
