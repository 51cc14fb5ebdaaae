"""actors/kafka_client.py: the bootstrap that never hangs while Kafka is down, and the fixes to
kafka-python's internals (a TLS file it cannot load, a failed attempt's socket). How the
consumer is opened is tested with the sources it opens for: tests/unit/test_kafka_source.py."""
import socket
from types import SimpleNamespace

import pytest
from kafka import errors as kafka_errors

from actors import kafka_client
from actors.kafka_client import KafkaUnreachable, connect_failures


def test_connect_failures_are_none_only_when_a_broker_accepts_connections():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert connect_failures(["127.0.0.1:1", f"127.0.0.1:{port}"], timeout=1.0) == []
    assert connect_failures([f"127.0.0.1:{port}"], timeout=1.0) == [
        f"127.0.0.1:{port}: connection refused"]                   # closed now


def test_no_reachable_broker_means_kafka_unreachable_without_waiting_for_a_bootstrap():
    settings = SimpleNamespace(kafka_brokers=["127.0.0.1:1"])
    with pytest.raises(KafkaUnreachable, match=r"no broker of 127.0.0.1:1 accepts connections "
                                               r"\(127.0.0.1:1: connection refused\); check "
                                               r"KAFKA_BROKERS and that Kafka runs"):
        kafka_client.open_consumer(settings, "live")


@pytest.mark.parametrize("error, said", [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
     "kafka-nope.invalid: the name does not resolve (DNS)"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
     "kafka-nope.invalid: DNS lookup failed (Temporary failure in name resolution)"),
    (TimeoutError(), "kafka-nope.invalid:9092: no answer in 1 s (a firewall?)")])
def test_a_broker_name_that_does_not_resolve_is_said_so(monkeypatch, error, said):
    """A name that does not resolve, a refused connection and a firewall's silence all read
    'no broker of ... accepts connections; ... that Kafka runs': the operator went checking
    whether Kafka ran (a log audit). The resolver is stood in for: a real one may be slow."""
    def connect(address, timeout):
        raise error
    monkeypatch.setattr(kafka_client.socket, "create_connection", connect)
    assert connect_failures(["kafka-nope.invalid:9092"], timeout=1.0) == [said]


def test_a_tls_file_kafka_python_cannot_load_is_a_connection_error_it_retries(
        tmp_path, monkeypatch):
    """kafka-python loads the TLS files at every connection; one missing then raised a bare
    FileNotFoundError, which ended its metadata loop for good (it goes on after Kafka errors
    only): the gateway never reconnected once the files were back (a Kafka TLS audit)."""
    from kafka.net.transport import KafkaSSLTransport
    monkeypatch.setattr(KafkaSSLTransport, "_build_ssl_context",
                        KafkaSSLTransport.__dict__["_build_ssl_context"])
    monkeypatch.setattr(kafka_client, "_TLS_RETRIED", [])
    kafka_client._tls_failures_retried()
    kafka_client._tls_failures_retried()          # once: not wrapped twice
    config = dict(KafkaSSLTransport.DEFAULT_CONFIG, ssl_cafile=str(tmp_path / "gone.pem"))
    with pytest.raises(kafka_errors.KafkaConnectionError, match="No such file") as raised:
        KafkaSSLTransport._build_ssl_context(config)
    assert isinstance(raised.value, kafka_errors.KafkaError)
    assert isinstance(raised.value.__cause__, FileNotFoundError)
    (tmp_path / "garbage.pem").write_text("half a certificate")
    with pytest.raises(kafka_errors.KafkaConnectionError):        # an ssl.SSLError
        KafkaSSLTransport._build_ssl_context(dict(config, ssl_cafile=str(tmp_path / "garbage.pem")))


def test_a_tls_file_that_cannot_be_read_is_named_before_any_bootstrap(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        settings = SimpleNamespace(kafka_brokers=[f"127.0.0.1:{server.getsockname()[1]}"],
                                   kafka_security_protocol="SSL", kafka_ssl_ca_file="",
                                   kafka_ssl_cert_file=str(tmp_path / "gone.pem"),
                                   kafka_ssl_key_file="")
        with pytest.raises(KafkaUnreachable, match=r"^KAFKA_SSL_CERT_FILE='.*gone.pem' cannot "
                                                   r"be read \(No such file or directory\)"):
            kafka_client.open_consumer(settings, "live")


def test_a_failed_connection_attempt_closes_its_socket_at_once(monkeypatch):
    """kafka-python left the socket to the cycle collector (its traceback holds it), which the
    workers run rarely: during a Kafka outage a worker gained 1.3-1.5 descriptors a second."""
    import socket as sockets
    from kafka.net import inet
    monkeypatch.setattr(inet.KafkaNetSocket, "sock_connect",
                        inet.KafkaNetSocket.__dict__["sock_connect"])
    kafka_client._failed_connects_closed()
    kafka_client._failed_connects_closed()          # once: not wrapped twice
    with sockets.socket() as spare:                 # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]

    class Net:
        async def wait_write(self, sock, timeout_at=None):
            return None

    sock = sockets.socket()
    sock.setblocking(False)
    attempt = inet.KafkaNetSocket().sock_connect(Net(), sock, ("127.0.0.1", port))
    with pytest.raises(kafka_errors.KafkaConnectionError, match="ECONNREFUSED"):
        while True:
            attempt.send(None)
    assert sock.fileno() == -1                      # closed


def test_a_kafka_python_without_the_parts_our_fixes_patch_still_opens_a_consumer(
        monkeypatch, caplog):
    """kafka-python's next minor release moves kafka.net.inet, transport and selector: each
    fix of ours that cannot reach its part is said once, and the consumer still opens (it
    raised ImportError, which read as Kafka refusing the bootstrap, for ever)."""
    import sys

    import kafka
    from actors import prompt
    fake = SimpleNamespace(_cluster=SimpleNamespace(config={"allow_auto_create_topics": True}),
                           _manager=SimpleNamespace(config={}))
    for hidden in ("kafka.net.inet", "kafka.net.transport", "kafka.net.selector"):
        monkeypatch.setitem(sys.modules, hidden, None)          # import raises ImportError
    for part in ("inet", "transport", "selector"):
        monkeypatch.delattr(kafka.net, part, raising=False)
    monkeypatch.setattr(kafka_client, "_TLS_RETRIED", [])
    monkeypatch.setattr(kafka_client, "_SAID", set(), raising=False)
    monkeypatch.setattr(prompt.gevent_hub, "patched", lambda: object())    # as under gunicorn
    monkeypatch.setattr(kafka_client, "connect_failures", lambda brokers: [])
    monkeypatch.setattr(kafka, "KafkaConsumer", lambda **kw: fake)
    monkeypatch.setattr(kafka_client, "consumer_args", lambda settings, role: {})
    monkeypatch.setattr("actors.kafka_records.install", lambda consumer: False)
    settings = SimpleNamespace(kafka_brokers=["h:1"], kafka_metadata_refresh_ms=1000)
    with caplog.at_level("WARNING"):
        assert kafka_client.open_consumer(settings, "live") is fake
        assert kafka_client.open_consumer(settings, "replay") is fake
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 3, said                                 # each once, not per consumer
    assert any("its connection attempts out of reach" in line for line in said)
    assert any("how it builds its TLS context out of reach" in line for line in said)
    assert any("network selector out of reach" in line for line in said)
    assert fake._cluster.config["allow_auto_create_topics"] is False
