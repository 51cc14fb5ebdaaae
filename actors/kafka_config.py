"""The kafka-python keyword arguments every Kafka client of the gateway gets from the settings.

`client_args` is what any client needs to reach the cluster (brokers, client id, TLS, SASL);
`consumer_args` adds what every consumer reads with (isolation level, fetch sizes).
kafka is imported only inside functions: gunicorn's master imports the actors package.
"""
from __future__ import annotations

import functools
import logging
import os

from actors.settings import file_trouble

logger = logging.getLogger(__name__)

# live: the consumer that streams (its warm start and look-ups too); replay: the reader of
# Last-Event-ID resumes and `since`.
ROLES = ("live", "replay")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


def client_args(settings, role: str) -> dict:
    """Connection arguments accepted by KafkaConsumer, KafkaAdminClient and KafkaProducer."""
    if role not in ROLES:
        raise ValueError(f"unknown Kafka client role {role!r}; expected one of {', '.join(ROLES)}")
    args = {
        "bootstrap_servers": list(settings.kafka_brokers),
        "client_id": f"{settings.kafka_client_id}-{role}",
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in TLS_PROTOCOLS:
        args.update(_tls_args(settings))
    if settings.kafka_sasl_mechanism:
        args.update(_sasl_args(settings))
    return args


def consumer_args(settings, role: str) -> dict:
    """client_args plus the isolation level and fetch sizes (the same for every role)."""
    return {
        **client_args(settings, role),
        "isolation_level": settings.kafka_isolation_level,
        "fetch_max_bytes": settings.kafka_fetch_max_bytes,
        "max_partition_fetch_bytes": settings.kafka_max_partition_fetch_bytes,
        "metrics_enabled": False,   # kafka-python's own sensors, per fetch: nothing reads them
    }


def _tls_args(settings) -> dict:
    return {
        "ssl_cafile": settings.kafka_ssl_ca_file or None,        # None: the system's CAs
        "ssl_certfile": settings.kafka_ssl_cert_file or None,
        "ssl_keyfile": settings.kafka_ssl_key_file or None,
        "ssl_password": settings.kafka_ssl_key_password or None,
        "ssl_check_hostname": settings.kafka_ssl_check_hostname,
    }


def unreadable_tls_file(settings) -> str:
    """The first TLS file of the settings that cannot be read now, with its variable and what
    to do; "" if none. kafka-python loads them at every connection, not once."""
    if getattr(settings, "kafka_security_protocol", "") not in TLS_PROTOCOLS:
        return ""
    for name in ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"):
        path = getattr(settings, name, "")
        trouble = file_trouble(path) if path else ""
        if trouble:
            return (f"{name.upper()}={path!r} cannot be read ({trouble}): no "
                    "connection to Kafka until it can; restore the file or correct the setting")
    return ""


def _sasl_args(settings) -> dict:
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return {"sasl_mechanism": mechanism,
                "sasl_oauth_token_provider": token_provider(settings.kafka_sasl_oauth_token_file)}
    return {"sasl_mechanism": mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password}


class TokenFile:
    """The OAUTHBEARER token in a file, read again whenever the file changes.

    kafka-python asks for the token at every (re-)authentication, so a token refreshed on
    disk (by a sidecar, a mounted secret) is used from the next connection or re-login on.
    If the file becomes unreadable or empty, the last good token is kept and one warning logged.
    """

    def __init__(self, path: str):
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    def token(self) -> str:
        try:
            stat = os.stat(self.path)
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if seen != self._seen and (trouble := file_trouble(self.path)):
                raise ValueError(trouble)       # a pipe would hold the worker, a device fill it
            if seen != self._seen:
                with open(self.path, encoding="utf-8") as file:
                    token = file.read().strip()
                if not token:
                    raise ValueError("the file is empty")
                self._seen, self._token = seen, token
        except (OSError, ValueError) as exc:
            if not self._token:
                raise RuntimeError(
                    f"KAFKA_SASL_OAUTH_TOKEN_FILE={self.path!r}: no token ({exc})") from None
            if self._seen is not None:
                logger.warning("KAFKA_SASL_OAUTH_TOKEN_FILE=%r: cannot read a new token (%s); "
                               "keeping the previous one", self.path, exc)
                self._seen = None   # warn once until the file is readable again
        return self._token

    def extensions(self) -> dict:
        return {}


def token_provider(path: str):
    """A kafka-python AbstractTokenProvider reading the token from `path`."""
    return _provider_class()(path)


@functools.cache
def _provider_class():
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class FileTokenProvider(TokenFile, AbstractTokenProvider):
        pass

    return FileTokenProvider


def available_codecs() -> list[str]:
    """The compression codecs kafka-python can decode here, for the start-up log line."""
    from kafka import codec
    checks = {"gzip": codec.has_gzip, "snappy": codec.has_snappy,
              "lz4": codec.has_lz4, "zstd": codec.has_zstd}
    return [name for name, check in checks.items() if check()]
