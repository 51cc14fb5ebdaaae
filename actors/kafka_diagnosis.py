"""Why Kafka refuses us, in a few words an operator can act on.

kafka-python retries failed connections by itself and only logs the cause (a wrong
password, a certificate it cannot verify, a listener that wants a client certificate);
its constructor then fails with a bare "unable to bootstrap". A handler on its network
loggers keeps the latest cause, so the consumer can put it into /health and one log line.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from actors.kafka_config import TLS_PROTOCOLS

_SOURCES = ("kafka.net", "kafka.conn", "kafka.client_async")

_BOOTSTRAP = "<KafkaConnection node_id=bootstrap-"
_HUNG_UP = "Connection lost: KafkaConnectionError: socket disconnected"


def _protocol(settings) -> str:
    return getattr(settings, "kafka_security_protocol", "") or "PLAINTEXT"


def _plaintext_listener(text, settings) -> str:
    """Our TLS handshake met a listener without TLS: it closed the connection at once."""
    protocol = _protocol(settings)
    plain = "SASL_PLAINTEXT" if protocol.startswith("SASL_") else "PLAINTEXT"
    return ("TLS: the broker closed the connection during the handshake: does the listener "
            f"speak TLS? (KAFKA_SECURITY_PROTOCOL={protocol}; a listener without TLS needs "
            f"{plain})")


def _first_request_refused(text, settings) -> str:
    """The broker hung up on our first request (ApiVersions) unanswered: a TLS listener reads
    it as a broken handshake."""
    protocol = _protocol(settings)
    if protocol in TLS_PROTOCOLS:
        return "the broker closed the connection at the first request"
    tls = "SASL_SSL" if protocol.startswith("SASL_") else "SSL"
    return ("the broker closed the connection at the first request: is the listener TLS? "
            f"(KAFKA_SECURITY_PROTOCOL={protocol}; a TLS listener needs {tls})")


def _refused_after_versions(text, settings) -> str:
    """ApiVersions answered, then the broker hung up: on our SASL login (Kafka closes the
    connection after a wrong password without an answer), or, without SASL, on the metadata
    request of a listener that wants SASL first."""
    protocol = _protocol(settings)
    mechanism = getattr(settings, "kafka_sasl_mechanism", "")
    if mechanism:               # the same words as a refusal Kafka answers: one reason
        return _authentication_failed(text, settings)
    sasl = "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT"
    return ("the broker closed the connection before answering: does the listener want SASL? "
            f"(KAFKA_SECURITY_PROTOCOL={protocol}; a SASL listener needs {sasl} and "
            "KAFKA_SASL_MECHANISM)")


def _credentials(mechanism: str) -> str:
    if mechanism == "OAUTHBEARER":
        return "check the token in KAFKA_SASL_OAUTH_TOKEN_FILE (not expired, for this cluster)"
    return "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"


def _authentication_failed(text, settings) -> str:
    mechanism = getattr(settings, "kafka_sasl_mechanism", "") or "SASL"
    return (f"authentication failed ({mechanism}): {_credentials(mechanism)}, and that the "
            f"listener enables {mechanism}")


def _unverified(text, settings) -> str:
    """The broker's certificate failed our checks: OpenSSL's reason, and what to change."""
    why = text.partition("certificate verify failed:")[2].partition(" (_ssl.c")[0].strip()
    if "mismatch" in why:
        hint = (f"the broker's certificate does not name the host connected to ({why}): list "
                "the brokers by a name their certificates hold (in KAFKA_BROKERS and the "
                "brokers' advertised.listeners), or set KAFKA_SSL_CHECK_HOSTNAME=false")
    elif "expired" in why:
        hint = "the broker's certificate has expired: the broker needs a renewed one"
    elif "not yet valid" in why:
        hint = ("the broker's certificate is not valid yet: check the clocks of this host and "
                "the broker")
    elif "issuer" in why or "self-signed" in why or "self signed" in why:
        hint = ("the broker's certificate is not signed by the CA in KAFKA_SSL_CA_FILE: set it "
                "to the CA that signed the brokers' certificates"
                if getattr(settings, "kafka_ssl_ca_file", "") else
                "the broker's certificate is not signed by a CA this system trusts: set "
                "KAFKA_SSL_CA_FILE to the CA that signed it")
    else:
        hint = why or "the broker's certificate was not accepted"
    return f"TLS: certificate verify failed: {hint}"


_NO_CLIENT_CERTIFICATE = ("TLS: the broker requires a client certificate "
                          "(set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE)")


def _client_certificate_rejected(text, settings) -> str:
    """The broker refused our certificate; an expired or not yet valid one is said so."""
    reason = "TLS: the broker rejected the client certificate"
    path = getattr(settings, "kafka_ssl_cert_file", "")
    if settings is not None and not path:
        return _NO_CLIENT_CERTIFICATE
    valid = _validity(path) if path else None
    if valid is None:
        return reason
    now, (start, end) = dt.datetime.now(dt.timezone.utc), valid
    if now > end:
        return (f"{reason}: it expired on {end:%Y-%m-%d %H:%M} UTC (KAFKA_SSL_CERT_FILE="
                f"{path!r}): renew it")
    if now < start:
        return (f"{reason}: it is valid only from {start:%Y-%m-%d %H:%M} UTC on "
                f"(KAFKA_SSL_CERT_FILE={path!r}): check this host's clock")
    return f"{reason} (KAFKA_SSL_CERT_FILE={path!r}): is it signed by a CA the broker trusts?"


def _validity(path: str):
    """(not before, not after) of the first certificate in a PEM file; None if unreadable."""
    try:
        from cryptography import x509
        with open(path, "rb") as file:
            cert = x509.load_pem_x509_certificate(file.read())
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    except Exception:  # noqa: BLE001 - no date to add: the plain reason is shown
        return None


# (texts that must all be in kafka-python's message, the reason shown: a format string or a
# function of the message and the settings); the first match wins.
_REASONS = (
    (("SaslAuthenticationFailed",), _authentication_failed),
    (("SASL_AUTHENTICATION_FAILED",), _authentication_failed),
    (("Authentication failed",), _authentication_failed),
    (("UnsupportedSaslMechanism",), "SASL mechanism {mechanism} is not enabled on the broker"),
    (("IllegalSaslState",), "SASL handshake refused: does the listener speak {protocol}?"),
    (("CERTIFICATE_VERIFY_FAILED",), _unverified),
    (("certificate required",), "TLS: the broker requires a client certificate"),
    (("CERTIFICATE_REQUIRED",), "TLS: the broker requires a client certificate"),
    (("bad certificate",), _client_certificate_rejected),
    (("BAD_CERTIFICATE",), _client_certificate_rejected),
    (("CERTIFICATE_UNKNOWN",), _client_certificate_rejected),
    (("CERTIFICATE_EXPIRED",), _client_certificate_rejected),
    (("unknown ca",), "TLS: the broker does not trust the client certificate's CA"),
    (("UNKNOWN_CA",), "TLS: the broker does not trust the client certificate's CA"),
    (("WRONG_VERSION_NUMBER",), "TLS: the listener does not speak TLS "
                                "(KAFKA_SECURITY_PROTOCOL={protocol})"),
    (("UNEXPECTED_EOF_WHILE_READING",), _plaintext_listener),
    (("SSLError",), "TLS: handshake failed"),
    # A bootstrap connection lost: kafka.net.connection's line says how far it got.
    ((_BOOTSTRAP, "broker_version=unknown", _HUNG_UP), _first_request_refused),
    ((_BOOTSTRAP, _HUNG_UP), _refused_after_versions),
    (("Connection refused",), "broker unreachable (connection refused)"),
    (("timed out",), "the broker did not answer in time"),
)
# The exception a bootstrap that ran out of time raises. Never taken from the log: kafka-python
# logs it after the real cause (a TLS or SASL refusal), which must stay the reason shown.
_BOOTSTRAP_TIMEOUT = ("Unable to bootstrap", "the broker did not answer in time (no handshake "
                                             "within the bootstrap time-out)")


def explain(text: str, settings=None) -> str | None:
    """A short reason for one of kafka-python's failure messages, or None if unknown."""
    mechanism = getattr(settings, "kafka_sasl_mechanism", "") or "SASL"
    for needles, reason in _REASONS:
        if all(needle in text for needle in needles):
            if callable(reason):
                return reason(text, settings)
            if "client certificate" in reason and settings is not None \
                    and not getattr(settings, "kafka_ssl_cert_file", ""):
                return _NO_CLIENT_CERTIFICATE
            return reason.format(mechanism=mechanism, protocol=_protocol(settings))
    return None


_NOT_REFUSALS = ("broker unreachable", "the broker did not answer in time")


def refusal(reason: str) -> bool:
    """True if the reason is a broker saying no (credentials, certificates, protocol), which
    retrying soon will not change; False for a broker down or slow."""
    return not reason.startswith(_NOT_REFUSALS)


_NO_THREAD = ("can't start new thread", "not Kafka: this worker cannot start a thread (can't "
              "start new thread): its user or container is at its limit of processes and "
              "threads (ulimit -u, systemd's TasksMax=, a container's pids limit); a worker "
              "uses about 8: raise the limit")


def explain_exception(text: str, settings=None) -> str | None:
    """explain() for the exception a failed bootstrap raised, the bare time-out included, and
    a thread this process could not start (no fault of Kafka's)."""
    if _NO_THREAD[0] in text:
        return _NO_THREAD[1]
    needle, reason = _BOOTSTRAP_TIMEOUT
    return explain(text, settings) or (reason if needle in text else None)


class _LatestFailure(logging.Handler):
    """The newest failure logged since the last take(); a refusal is not replaced by a broker
    down or slow (the bootstrap's time-out cuts its last retry of a refused login short)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self.text, self.refused = "", False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the client
            return
        reason = explain(message)
        if reason is not None:
            with self._lock:
                if refusal(reason) or not self.refused:
                    self.text, self.refused = message, refusal(reason)

    def take(self) -> str:
        with self._lock:
            text, self.text, self.refused = self.text, "", False
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


def forget() -> None:
    """Drop the failure kept so far (Kafka is reachable: it explains no later outage)."""
    _handler.take()
