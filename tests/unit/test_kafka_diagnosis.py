"""actors/kafka_diagnosis.py: kafka-python's failure lines, as logged against the project's
secure broker (scripts/kafka-local, KAFKA_LOCAL_MODE=secure), turned into reasons that say
what to fix."""
import datetime as dt

import pytest

from actors import kafka_diagnosis
from actors.settings import Settings

# Verbatim from kafka-python 3.0 against a real broker. A broker that hangs up is logged by
# kafka.net.connection ("Connection lost"), then by kafka.net.manager ("Bootstrap ... failed").
def _lost(version="unknown", node="bootstrap-0"):
    return (f"<KafkaConnection node_id={node} broker_version={version} (disconnected)>: "
            "Connection lost: KafkaConnectionError: socket disconnected")


PLAINTEXT_TO_TLS = _lost()                       # our ApiVersions request went unanswered
AFTER_API_VERSIONS = _lost("(4, 3)")             # answered, then the next request refused
BOOTSTRAP_CONNECTION = ("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: "
                        "socket disconnected (backoff 0.04 secs)")
BOOTSTRAP_ATTEMPT = ("Bootstrap attempt to bootstrap-0 failed: KafkaConnectionError: socket "
                     "disconnected (backoff 1.74 secs)")
TLS_TO_PLAINTEXT = ("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: Handshake "
                    "failed: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of "
                    "protocol (_ssl.c:1006) (backoff 0.10 secs)")
CERT_UNKNOWN = ("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: [SSL: "
                "SSLV3_ALERT_CERTIFICATE_UNKNOWN] sslv3 alert certificate unknown (_ssl.c:2580) "
                "(backoff 2.33 secs)")
LOST = _lost("(4, 3)", node="1")                 # a broker of the cluster went away later


def _verify_failed(why: str) -> str:
    return ("Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: Handshake failed: "
            f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {why} (_ssl.c:1006) "
            "(backoff 0.05 secs)")


def _settings(protocol, mechanism="", **more):
    sasl = {"kafka_sasl_mechanism": mechanism, "kafka_sasl_username": "u",
            "kafka_sasl_password": "p"} if mechanism else {}
    return Settings.defaults(kafka_security_protocol=protocol, **sasl, **more)


@pytest.mark.parametrize("protocol, use", [("PLAINTEXT", "SSL"), ("SASL_PLAINTEXT", "SASL_SSL")])
def test_a_tls_listener_reached_without_tls_is_named(protocol, use):
    mechanism = "PLAIN" if protocol.startswith("SASL") else ""
    reason = kafka_diagnosis.explain(PLAINTEXT_TO_TLS, _settings(protocol, mechanism))
    assert reason.startswith("the broker closed the connection at the first request")
    assert f"KAFKA_SECURITY_PROTOCOL={protocol}" in reason and use in reason


@pytest.mark.parametrize("protocol, use", [("SSL", "PLAINTEXT"), ("SASL_SSL", "SASL_PLAINTEXT")])
def test_a_plaintext_listener_reached_with_tls_is_named(protocol, use):
    mechanism = "PLAIN" if protocol.startswith("SASL") else ""
    reason = kafka_diagnosis.explain(TLS_TO_PLAINTEXT, _settings(protocol, mechanism))
    assert reason.startswith("TLS: the broker closed the connection during the handshake")
    assert f"KAFKA_SECURITY_PROTOCOL={protocol}" in reason and use in reason


def test_a_sasl_listener_reached_without_sasl_is_named():
    reason = kafka_diagnosis.explain(AFTER_API_VERSIONS, _settings("SSL"))
    assert reason.startswith("the broker closed the connection before answering")
    assert "KAFKA_SECURITY_PROTOCOL=SSL" in reason and "SASL_SSL" in reason


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_a_login_the_broker_hangs_up_on_is_a_failed_authentication(protocol):
    # Kafka 4 closes the connection after a wrong password without answering the request.
    reason = kafka_diagnosis.explain(AFTER_API_VERSIONS, _settings(protocol, "SCRAM-SHA-512"))
    assert reason.startswith("authentication failed (SCRAM-SHA-512)")
    assert "KAFKA_SASL_USERNAME" in reason and "TLS" not in reason


@pytest.mark.parametrize("text", [AFTER_API_VERSIONS, "SaslAuthenticationFailedError: "
                                                      "Authentication failed"])
def test_a_refused_oauthbearer_login_points_to_the_token_not_to_a_password(text, tmp_path):
    """It said 'check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD', two variables the settings
    refuse with OAUTHBEARER (a Kafka TLS/SASL audit)."""
    token = tmp_path / "token"
    token.write_text("x.y.z")
    settings = Settings.defaults(kafka_security_protocol="SASL_SSL",
                                 kafka_sasl_mechanism="OAUTHBEARER",
                                 kafka_sasl_oauth_token_file=str(token))
    reason = kafka_diagnosis.explain(text, settings)
    assert reason.startswith("authentication failed (OAUTHBEARER)")
    assert "KAFKA_SASL_OAUTH_TOKEN_FILE" in reason and "PASSWORD" not in reason


def test_a_login_refused_with_or_without_an_answer_is_one_reason():
    """Kafka hangs up on a wrong password, or answers SaslAuthenticationFailed: two texts for
    one cause made a second 'kafka still unreachable' line (a CI simulation)."""
    settings = _settings("SASL_SSL", "SCRAM-SHA-512")
    assert (kafka_diagnosis.explain(AFTER_API_VERSIONS, settings)
            == kafka_diagnosis.explain("SaslAuthenticationFailedError: x", settings))


def test_the_handler_keeps_those_causes_before_any_settings_are_known():
    for line in (PLAINTEXT_TO_TLS, AFTER_API_VERSIONS, TLS_TO_PLAINTEXT, CERT_UNKNOWN):
        assert kafka_diagnosis.explain(line) is not None


def test_a_connection_lost_later_is_not_taken_for_a_wrong_protocol():
    assert kafka_diagnosis.explain(LOST, _settings("PLAINTEXT")) is None


def test_the_bootstrap_summary_lines_do_not_hide_the_connection_line_before_them():
    import logging
    kafka_diagnosis.install()
    kafka_diagnosis.latest()
    for name, line in (("kafka.net.connection", AFTER_API_VERSIONS),
                       ("kafka.net.manager", BOOTSTRAP_CONNECTION),
                       ("kafka.net.manager", BOOTSTRAP_ATTEMPT),
                       ("kafka.net.manager", "Bootstrap failed: Unable to bootstrap from [...]")):
        logging.getLogger(name).error(line)
    reason = kafka_diagnosis.latest(_settings("SASL_PLAINTEXT", "PLAIN"))
    assert reason.startswith("authentication failed (PLAIN)")


@pytest.mark.parametrize("why, says", [
    ("self-signed certificate in certificate chain", "not signed by the CA in KAFKA_SSL_CA_FILE"),
    ("unable to get local issuer certificate", "not signed by the CA in KAFKA_SSL_CA_FILE"),
    ("certificate has expired", "the broker's certificate has expired"),
    ("certificate is not yet valid", "the broker's certificate is not valid yet"),
    ("Hostname mismatch, certificate is not valid for 'kafka-1'.", "KAFKA_SSL_CHECK_HOSTNAME"),
    ("IP address mismatch, certificate is not valid for '10.0.0.7'.", "KAFKA_SSL_CHECK_HOSTNAME"),
])
def test_a_certificate_that_fails_verification_says_why(why, says):
    reason = kafka_diagnosis.explain(_verify_failed(why), _settings("SSL", kafka_ssl_ca_file="c"))
    assert reason.startswith("TLS: certificate verify failed: ") and says in reason


def test_without_a_ca_file_an_unknown_issuer_points_to_kafka_ssl_ca_file():
    reason = kafka_diagnosis.explain(_verify_failed("unable to get local issuer certificate"),
                                     _settings("SSL"))
    assert "not signed by a CA this system trusts: set KAFKA_SSL_CA_FILE" in reason


def _certificate(path, not_before, not_after):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_an_expired_or_not_yet_valid_client_certificate_is_named(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    expired = _certificate(tmp_path / "expired.pem", now - 30 * day, now - day)
    future = _certificate(tmp_path / "future.pem", now + day, now + 30 * day)
    current = _certificate(tmp_path / "current.pem", now - day, now + day)
    reason = kafka_diagnosis.explain(CERT_UNKNOWN, _settings("SSL", kafka_ssl_cert_file=expired))
    assert reason.startswith("TLS: the broker rejected the client certificate: it expired on "
                             f"{(now - day):%Y-%m-%d}") and "KAFKA_SSL_CERT_FILE" in reason
    reason = kafka_diagnosis.explain(CERT_UNKNOWN, _settings("SSL", kafka_ssl_cert_file=future))
    assert reason.startswith("TLS: the broker rejected the client certificate: it is valid only "
                             f"from {(now + day):%Y-%m-%d}")
    reason = kafka_diagnosis.explain(CERT_UNKNOWN, _settings("SSL", kafka_ssl_cert_file=current))
    assert reason == ("TLS: the broker rejected the client certificate (KAFKA_SSL_CERT_FILE="
                      f"{current!r}): is it signed by a CA the broker trusts?")
    assert kafka_diagnosis.explain(CERT_UNKNOWN, _settings("SSL", kafka_ssl_cert_file=str(
        tmp_path / "gone.pem"))).startswith("TLS: the broker rejected the client certificate")


def test_a_rejected_certificate_when_none_is_set_asks_for_one():
    reason = kafka_diagnosis.explain(CERT_UNKNOWN, _settings("SSL"))
    assert reason == ("TLS: the broker requires a client certificate "
                      "(set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE)")


@pytest.mark.parametrize("cut", [
    "<KafkaSSLTransport [127.0.0.1:9093<-4711]>: Abort (KafkaTimeoutError: SASL Authentication "
    "timed out)",
    "Bootstrap connection to bootstrap-0 failed: KafkaTimeoutError: Connection timed out "
    "(backoff 1.87 secs)",
])
def test_a_refusal_is_not_hidden_by_the_attempt_the_bootstrap_deadline_cut_short(cut):
    """kafka-python retries a refused login until its bootstrap time-out, which cuts the last
    attempt short: that time-out is not the reason (seen against the secure broker)."""
    import logging
    kafka_diagnosis.install()
    kafka_diagnosis.forget()
    logging.getLogger("kafka.net.connection").error(AFTER_API_VERSIONS)
    logging.getLogger("kafka.net.transport").error(cut)
    reason = kafka_diagnosis.latest(_settings("SASL_SSL", "SCRAM-SHA-512"))
    assert reason.startswith("authentication failed (SCRAM-SHA-512)")
    logging.getLogger("kafka.net.transport").error(cut)      # a later outage: its own reason
    assert kafka_diagnosis.latest() == "the broker did not answer in time"


@pytest.mark.parametrize("reason, refused", [
    ("authentication failed (PLAIN): check KAFKA_SASL_PASSWORD", True),
    ("TLS: certificate verify failed: ...", True),
    ("the broker closed the connection at the first request", True),
    ("broker unreachable (connection refused)", False),
    ("the broker did not answer in time", False),
])
def test_a_refusal_is_a_broker_saying_no_not_one_down_or_slow(reason, refused):
    assert kafka_diagnosis.refusal(reason) is refused
