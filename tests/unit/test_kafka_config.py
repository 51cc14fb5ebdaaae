import logging
import os
import socket

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.net.sasl import get_sasl_mechanism
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka.net.transport import KafkaSSLTransport
from kafka.record import MemoryRecords, MemoryRecordsBuilder

from actors.kafka_config import ROLES, available_codecs, client_args, consumer_args
from actors.settings import Settings
from actors.settings.warnings import clear_text_warnings
from tests.unit.pki import KEY_PASSWORD, make_pki


def load(**environ):
    return Settings.from_env(environ=environ, env_file=None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("first-token\n")
    return path


@pytest.fixture
def configurations(pki, token_file):
    """One Settings for each way of connecting."""
    sasl = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SSL_CA_FILE": pki["ca"]}
    return {
        "plaintext": load(),
        "sasl_plain": load(**sasl, KAFKA_SASL_MECHANISM="PLAIN"),
        "scram_512": load(**sasl, KAFKA_SASL_MECHANISM="SCRAM-SHA-512"),
        "scram_256_cleartext": load(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                                    KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
                                    KAFKA_SASL_USERNAME="alice", KAFKA_SASL_PASSWORD="pw"),
        "oauth": load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="OAUTHBEARER",
                      KAFKA_SASL_OAUTH_TOKEN_FILE=str(token_file)),
        "mutual_tls": load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=pki["ca"],
                           KAFKA_SSL_CERT_FILE=pki["cert"], KAFKA_SSL_KEY_FILE=pki["key_encrypted"],
                           KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD, KAFKA_SSL_CHECK_HOSTNAME="false"),
    }


def test_plaintext_defaults_for_each_role():
    settings = load(KAFKA_BROKERS="k1:9092,k2:9093")
    host = socket.gethostname()
    for role in ROLES:
        assert consumer_args(settings, role) == {
            "bootstrap_servers": ["k1:9092", "k2:9093"],
            "client_id": f"kafka-sse-gateway-{host}-{role}",
            "security_protocol": "PLAINTEXT",
            "isolation_level": "read_committed",
            "fetch_max_bytes": 1048576,
            "max_partition_fetch_bytes": 262144,
            "metrics_enabled": False,
        }


def test_fetch_sizes_and_isolation_follow_the_settings():
    settings = load(KAFKA_FETCH_MAX_BYTES="100000", KAFKA_MAX_PARTITION_FETCH_BYTES="2000",
                    KAFKA_ISOLATION_LEVEL="read_uncommitted", KAFKA_CLIENT_ID="web-7")
    live, replay = consumer_args(settings, "live"), consumer_args(settings, "replay")
    assert (live["fetch_max_bytes"], live["max_partition_fetch_bytes"]) == (100000, 2000)
    assert (replay["fetch_max_bytes"], replay["max_partition_fetch_bytes"]) == (100000, 2000)
    assert live["isolation_level"] == replay["isolation_level"] == "read_uncommitted"
    assert (live["client_id"], replay["client_id"]) == ("web-7-live", "web-7-replay")


def test_sasl_ssl_with_scram_gives_tls_and_credentials(configurations, pki):
    args = client_args(configurations["scram_512"], "replay")
    assert args == {
        "bootstrap_servers": ["localhost:9092"],
        "client_id": f"kafka-sse-gateway-{socket.gethostname()}-replay",
        "security_protocol": "SASL_SSL",
        "ssl_cafile": pki["ca"], "ssl_certfile": None, "ssl_keyfile": None, "ssl_password": None,
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", "sasl_plain_password": "pw",
    }


def test_sasl_plaintext_gives_no_tls_arguments(configurations):
    args = client_args(configurations["scram_256_cleartext"], "live")
    assert not any(key.startswith("ssl_") for key in args)
    assert args["sasl_mechanism"] == "SCRAM-SHA-256"


def test_mutual_tls_arguments_build_kafka_pythons_tls_context(configurations, pki):
    args = client_args(configurations["mutual_tls"], "live")
    assert (args["ssl_certfile"], args["ssl_keyfile"]) == (pki["cert"], pki["key_encrypted"])
    assert (args["ssl_password"], args["ssl_check_hostname"]) == (KEY_PASSWORD, False)
    assert "sasl_mechanism" not in args
    config = {**KafkaSSLTransport.DEFAULT_CONFIG,
              **{k: v for k, v in args.items() if k in KafkaSSLTransport.DEFAULT_CONFIG}}
    context = KafkaSSLTransport._build_ssl_context(config)   # loads CA, certificate and key
    assert context.check_hostname is False and len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("name", ["sasl_plain", "scram_512", "scram_256_cleartext", "oauth"])
def test_kafka_python_accepts_the_sasl_arguments(configurations, name):
    args = client_args(configurations[name], "live")
    mechanism = get_sasl_mechanism(args["sasl_mechanism"])(host="broker", **args)
    first = mechanism.auth_bytes()
    if name == "sasl_plain":
        assert first == b"alice\0alice\0pw"
    elif name == "oauth":
        assert first == b"n,,\x01auth=Bearer first-token\x01\x01"
    else:
        assert first.startswith(b"n,,n=alice,r=")


def test_the_oauth_token_is_read_again_when_the_file_changes(configurations, token_file, caplog):
    provider = client_args(configurations["oauth"], "live")["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert provider.token() == "first-token" and provider.extensions() == {}
    token_file.write_text("second-token-longer\n")
    assert provider.token() == "second-token-longer"
    token_file.unlink()
    with caplog.at_level(logging.WARNING, logger="actors.kafka_config"):
        assert provider.token() == "second-token-longer"   # the last good one
        assert provider.token() == "second-token-longer"
    assert len(caplog.records) == 1 and str(token_file) in caplog.records[0].getMessage()
    token_file.write_text("third\n")
    assert provider.token() == "third"


def test_an_oauth_token_file_replaced_by_a_pipe_is_not_waited_on(configurations, token_file):
    """Opening a named pipe waits for a writer: the worker's Kafka client would hang."""
    import threading
    provider = client_args(configurations["oauth"], "live")["sasl_oauth_token_provider"]
    assert provider.token() == "first-token"
    token_file.unlink()
    os.mkfifo(token_file)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(provider.token()), daemon=True)
    reader.start()
    reader.join(5)
    assert got == ["first-token"]       # the last good one, at once


def test_an_oauth_token_file_that_never_held_a_token_fails_clearly(configurations, token_file):
    token_file.write_text("\n")
    provider = client_args(configurations["oauth"], "live")["sasl_oauth_token_provider"]
    with pytest.raises(RuntimeError, match="KAFKA_SASL_OAUTH_TOKEN_FILE=.*no token"):
        provider.token()


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown Kafka client role 'backfill'"):
        client_args(load(), "backfill")


def test_every_argument_is_one_kafka_python_knows(configurations):
    for settings in configurations.values():
        for role in ROLES:
            assert set(consumer_args(settings, role)) <= set(KafkaConsumer.DEFAULT_CONFIG)
            connection = set(client_args(settings, role))
            assert connection <= set(KafkaAdminClient.DEFAULT_CONFIG)
            assert connection <= set(KafkaProducer.DEFAULT_CONFIG)


def test_kafka_python_constructs_a_consumer_from_the_arguments(configurations):
    """No broker listens there; with api_version given, construction does not wait for one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = configurations["plaintext"].replace(kafka_brokers=(f"127.0.0.1:{port}",))
    args = consumer_args(settings, "replay")
    consumer = KafkaConsumer(**args, api_version=(2, 8))
    try:
        assert {key: consumer.config[key] for key in args} == args
    finally:
        consumer.close()


def test_every_compression_codec_decodes_a_record_batch():
    assert available_codecs() == ["gzip", "snappy", "lz4", "zstd"]
    for codec in (1, 2, 3, 4):   # gzip, snappy, lz4, zstd as in a record batch's attributes
        builder = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=1 << 20)
        for i in range(50):
            builder.append(timestamp=1_700_000_000_000 + i, key=b"k", value=b'{"n": %d}' % i,
                           headers=[("h", b"v")])
        builder.close()
        batch = MemoryRecords(builder.buffer()).next_batch()
        assert batch.compression_type == codec
        assert [r.value for r in batch] == [b'{"n": %d}' % i for i in range(50)]


def test_the_codec_packages_are_installed_with_the_gateway():
    import configparser
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(__file__), "..", "..", "setup.cfg"))
    required = config["options"]["install_requires"]
    for package in ("python-snappy", "lz4", "zstandard"):
        assert f"\n{package}>=" in required


# -- credentials in clear ----------------------------------------------------------------------
CLEAR = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "alice",
         "KAFKA_SASL_PASSWORD": "pw", "KAFKA_BROKERS": "kafka-1.internal:9092,127.0.0.1:9092"}


@pytest.mark.parametrize("mechanism, says", [
    ("PLAIN", "sends KAFKA_SASL_PASSWORD"), ("OAUTHBEARER", "sends the OAUTHBEARER token")])
def test_a_secret_sent_in_clear_to_another_machine_is_warned_about(mechanism, says, token_file):
    environ = {**CLEAR, "KAFKA_SASL_MECHANISM": mechanism}
    if mechanism == "OAUTHBEARER":
        del environ["KAFKA_SASL_USERNAME"], environ["KAFKA_SASL_PASSWORD"]
        environ["KAFKA_SASL_OAUTH_TOKEN_FILE"] = str(token_file)
    [warning] = clear_text_warnings(load(**environ))
    assert says in warning and "in clear text" in warning
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in warning and "pw" not in warning


@pytest.mark.parametrize("changes", [
    {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},                    # the password never travels
    {"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_BROKERS": "127.0.0.1:9092,[::1]:9093,localhost:9"},
])
def test_no_warning_when_nothing_secret_leaves_the_machine_in_clear(changes):
    assert clear_text_warnings(load(**{**CLEAR, **changes})) == []


def test_no_warning_over_tls_or_without_sasl(pki):
    assert clear_text_warnings(load()) == []
    assert clear_text_warnings(load(**{**CLEAR, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                       "KAFKA_SSL_CA_FILE": pki["ca"],
                                       "KAFKA_SASL_MECHANISM": "PLAIN"})) == []


def test_a_tls_file_that_cannot_be_read_now_is_named_with_its_variable(configurations, pki,
                                                                       tmp_path):
    from actors.kafka_config import unreadable_tls_file
    assert unreadable_tls_file(configurations["mutual_tls"]) == ""
    assert unreadable_tls_file(configurations["plaintext"]) == ""
    gone = str(tmp_path / "key.pem")
    settings = configurations["mutual_tls"].replace(kafka_ssl_key_file=gone)
    assert unreadable_tls_file(settings) == (
        f"KAFKA_SSL_KEY_FILE={gone!r} cannot be read (No such file or directory): no connection "
        "to Kafka until it can; restore the file or correct the setting")
