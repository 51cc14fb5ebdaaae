"""Why Kafka refuses us, in a few words an operator can act on.

kafka-python retries failed connections by itself and only logs the cause (a wrong
password, a certificate it cannot verify, a listener that wants a client certificate);
its constructor then fails with a bare "unable to bootstrap". A handler on its network
loggers keeps the latest cause, so the consumer can put it into /health and one log line.
"""
from __future__ import annotations

import logging
import threading

_SOURCES = ("kafka.net", "kafka.conn", "kafka.client_async")

# (text in kafka-python's message, the reason shown); the first match wins.
_REASONS = (
    ("SaslAuthenticationFailed", "authentication failed ({mechanism})"),
    ("SASL_AUTHENTICATION_FAILED", "authentication failed ({mechanism})"),
    ("Authentication failed", "authentication failed ({mechanism})"),
    ("UnsupportedSaslMechanism", "SASL mechanism {mechanism} is not enabled on the broker"),
    ("IllegalSaslState", "SASL handshake refused: does the listener speak {protocol}?"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS: certificate verify failed"),
    ("certificate required", "TLS: the broker requires a client certificate"),
    ("CERTIFICATE_REQUIRED", "TLS: the broker requires a client certificate"),
    ("bad certificate", "TLS: the broker rejected the client certificate"),
    ("BAD_CERTIFICATE", "TLS: the broker rejected the client certificate"),
    ("unknown ca", "TLS: the broker does not trust the client certificate's CA"),
    ("UNKNOWN_CA", "TLS: the broker does not trust the client certificate's CA"),
    ("WRONG_VERSION_NUMBER", "TLS: the listener does not speak TLS"),
    ("SSLError", "TLS: handshake failed"),
    ("Connection refused", "broker unreachable (connection refused)"),
    ("timed out", "the broker did not answer in time"),
)
# The exception a bootstrap that ran out of time raises. Never taken from the log: kafka-python
# logs it after the real cause (a TLS or SASL refusal), which must stay the reason shown.
_BOOTSTRAP_TIMEOUT = ("Unable to bootstrap", "the broker did not answer in time (no handshake "
                                             "within the bootstrap time-out)")


def explain(text: str, settings=None) -> str | None:
    """A short reason for one of kafka-python's failure messages, or None if unknown."""
    mechanism = getattr(settings, "kafka_sasl_mechanism", "") or "SASL"
    protocol = getattr(settings, "kafka_security_protocol", "") or "PLAINTEXT"
    for needle, reason in _REASONS:
        if needle in text:
            if "client certificate" in reason and settings is not None \
                    and not getattr(settings, "kafka_ssl_cert_file", ""):
                return ("TLS: the broker requires a client certificate "
                        "(set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE)")
            return reason.format(mechanism=mechanism, protocol=protocol)
    return None


def explain_exception(text: str, settings=None) -> str | None:
    """explain() for the exception a failed bootstrap raised, the bare time-out included."""
    needle, reason = _BOOTSTRAP_TIMEOUT
    return explain(text, settings) or (reason if needle in text else None)


class _LatestFailure(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the client
            return
        if explain(message) is not None:
            with self._lock:
                self.text = message

    def take(self) -> str:
        with self._lock:
            text, self.text = self.text, ""
        return text


_handler = _LatestFailure()


def install() -> None:
    """Listen to kafka-python's network loggers (idempotent); the level set by
    actors/logs.py still decides what reaches the log itself."""
    debug = logging.getLogger().level <= logging.DEBUG
    for name in _SOURCES:
        log = logging.getLogger(name)
        if _handler not in log.handlers:
            log.addHandler(_handler)
        log.setLevel(logging.DEBUG if debug else logging.WARNING)
        log.propagate = debug


def latest(settings=None) -> str | None:
    """The reason behind the newest failure kafka-python logged (None: nothing known); clears it."""
    text = _handler.take()
    return explain(text, settings) if text else None
