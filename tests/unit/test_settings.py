import socket
from pathlib import Path

import pytest

from actors.settings import VARIABLES, Settings, SettingsError
from actors.settings.warnings import unknown_variables
from tests.unit.pki import KEY_PASSWORD, make_pki


def test_defaults_follow_the_specification():
    s = Settings.from_env(environ={}, env_file=None)
    assert (s.sse_max_clients, s.sse_heartbeat_seconds, s.sse_event_buffer_size,
            s.sse_history_size) == (1000, 30, 100, 100)
    assert (s.http_port, s.grpc_port, s.grpc_host) == (8084, 9094, "127.0.0.1")
    assert s.cors_allowed_origins == ("*",) and s.rate_limit_enabled is True
    assert s.kafka_topics[0] == "blog.posts" and s.trusted_proxies == ()


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(environ={"SSE_MAX_CLIENTS": "lots", "HTTP_PORT": "70000",
                                   "RATE_LIMIT_ENABLED": "maybe"}, env_file=None)
    text = str(err.value)
    assert "SSE_MAX_CLIENTS='lots'" in text and "HTTP_PORT='70000'" in text
    assert "RATE_LIMIT_ENABLED='maybe': expected true or false" in text


def test_wildcard_topics_are_refused_with_an_explanation():
    with pytest.raises(SettingsError, match="wildcard.*event_types"):
        Settings.from_env(environ={"KAFKA_TOPICS": "blog.*"}, env_file=None)


def test_a_topic_listed_twice_is_refused_and_names_differing_in_case_are_two_topics():
    """A repeated topic changed every stream id (each topic is written in it, in order), so a
    corrected list no longer resumed the ids given before."""
    with pytest.raises(SettingsError, match="'blog' is listed twice: list each topic once"):
        Settings.from_env(environ={"KAFKA_TOPICS": "blog, links,blog"}, env_file=None)
    settings = Settings.from_env(environ={"KAFKA_TOPICS": "blog,Blog"}, env_file=None)
    assert settings.kafka_topics == ("blog", "Blog")        # Kafka's names are case-sensitive


def test_env_file_is_read_and_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nSSE_HISTORY_SIZE=7\nexport HTTP_PORT='9000'\nLOG_LEVEL=debug\n")
    s = Settings.from_env(environ={"SSE_HISTORY_SIZE": "8"}, env_file=env)
    assert (s.sse_history_size, s.http_port, s.log_level) == (8, 9000, "DEBUG")


# -- Kafka connection settings ------------------------------------------------------------------

def load(**environ):
    return Settings.from_env(environ=environ, env_file=None)


def problems(**environ) -> str:
    with pytest.raises(SettingsError) as err:
        load(**environ)
    return str(err.value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_kafka_connection_defaults_are_todays_open_single_node():
    s = load()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", "")
    assert (s.kafka_ssl_ca_file, s.kafka_ssl_cert_file, s.kafka_ssl_key_file) == ("", "", "")
    assert s.kafka_ssl_check_hostname is True and s.kafka_isolation_level == "read_committed"
    assert (s.kafka_fetch_max_bytes, s.kafka_max_partition_fetch_bytes) == (1048576, 262144)
    assert s.kafka_client_id == f"kafka-sse-gateway-{socket.gethostname()}"


def test_valid_kafka_values_are_normalised(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok")
    s = load(KAFKA_SECURITY_PROTOCOL="sasl_ssl", KAFKA_SASL_MECHANISM="oauthbearer",
             KAFKA_SASL_OAUTH_TOKEN_FILE=str(token), KAFKA_SSL_CHECK_HOSTNAME="false",
             KAFKA_CLIENT_ID=" web-1 ", KAFKA_ISOLATION_LEVEL="READ_UNCOMMITTED",
             KAFKA_FETCH_MAX_BYTES="1048576", KAFKA_MAX_PARTITION_FETCH_BYTES="1024")
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "OAUTHBEARER")
    assert s.kafka_sasl_oauth_token_file == str(token) and s.kafka_ssl_check_hostname is False
    assert (s.kafka_client_id, s.kafka_isolation_level) == ("web-1", "read_uncommitted")
    assert (s.kafka_fetch_max_bytes, s.kafka_max_partition_fetch_bytes) == (1048576, 1024)
    for mechanism in ("PLAIN", "scram-sha-256", "SCRAM-SHA-512"):
        s = load(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM=mechanism,
                 KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD=" p w ")
        assert (s.kafka_sasl_mechanism, s.kafka_sasl_password) == (mechanism.upper(), " p w ")


def test_every_bad_kafka_value_is_named_in_one_error():
    text = problems(KAFKA_SECURITY_PROTOCOL="TLS", KAFKA_SASL_MECHANISM="GSSAPI",
                    KAFKA_ISOLATION_LEVEL="dirty", KAFKA_FETCH_MAX_BYTES="100",
                    KAFKA_MAX_PARTITION_FETCH_BYTES="lots", KAFKA_CLIENT_ID="has space",
                    KAFKA_SSL_CHECK_HOSTNAME="maybe", KAFKA_SSL_CA_FILE="/nonexistent/ca.pem")
    for expected in ("KAFKA_SECURITY_PROTOCOL='TLS': expected PLAINTEXT, SSL, SASL_PLAINTEXT "
                     "or SASL_SSL",
                     "KAFKA_SASL_MECHANISM='GSSAPI': expected PLAIN, SCRAM-SHA-256",
                     "KAFKA_ISOLATION_LEVEL='dirty': expected read_committed or read_uncommitted",
                     "KAFKA_FETCH_MAX_BYTES='100'", "KAFKA_MAX_PARTITION_FETCH_BYTES='lots'",
                     "KAFKA_CLIENT_ID='has space'", "KAFKA_SSL_CHECK_HOSTNAME='maybe'",
                     "KAFKA_SSL_CA_FILE='/nonexistent/ca.pem': cannot read the file (No such file"):
        assert expected in text


# -- secrets given as <NAME>_FILE ----------------------------------------------------------------

def test_secrets_are_read_from_files_without_one_trailing_newline(tmp_path):
    (tmp_path / "pw").write_text("kafka pw\n\n")
    (tmp_path / "token").write_text("grpc-token-from-a-file\n")
    s = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="PLAIN",
             KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "pw"),
             GRPC_AUTH_TOKEN_FILE=str(tmp_path / "token"), GRPC_AUTH_TOKEN="")
    assert (s.kafka_sasl_password, s.grpc_auth_token) == ("kafka pw\n", "grpc-token-from-a-file")


def test_secret_files_may_be_named_in_the_env_file(tmp_path):
    (tmp_path / "key-pw").write_text(KEY_PASSWORD)
    env = tmp_path / ".env"
    env.write_text(f"KAFKA_SSL_KEY_PASSWORD_FILE={tmp_path / 'key-pw'}\n")
    # the password alone is refused (no key to use it for), which proves it was read
    with pytest.raises(SettingsError, match="KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERT_FILE"):
        Settings.from_env(environ={"KAFKA_SECURITY_PROTOCOL": "SSL"}, env_file=env)


def test_a_secret_and_its_file_together_are_refused_without_showing_the_secret(tmp_path):
    (tmp_path / "pw").write_text("from-file")
    text = problems(GRPC_AUTH_TOKEN="hunter2", GRPC_AUTH_TOKEN_FILE=str(tmp_path / "pw"))
    assert "GRPC_AUTH_TOKEN and GRPC_AUTH_TOKEN_FILE are both set: keep one" in text
    assert "hunter2" not in text and "from-file" not in text


def test_an_unreadable_secret_file_names_the_variable_and_the_path(tmp_path):
    text = problems(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                    KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing"),
                    GRPC_AUTH_TOKEN_FILE=str(tmp_path))
    assert (f"KAFKA_SASL_PASSWORD_FILE='{tmp_path / 'missing'}': cannot read the file "
            "(No such file") in text
    assert f"GRPC_AUTH_TOKEN_FILE='{tmp_path}': cannot read the file (Is a directory)" in text
    assert "needs KAFKA_SASL_PASSWORD" not in text     # one problem per cause


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_an_empty_secret_file_is_refused_not_taken_for_no_secret(tmp_path, content):
    """An empty GRPC_AUTH_TOKEN turns the management API's authentication off: a token file
    left empty (a secret not mounted yet, a failed template) must not do so silently."""
    (tmp_path / "empty").write_text(content)
    text = problems(GRPC_AUTH_TOKEN_FILE=str(tmp_path / "empty"))
    assert f"GRPC_AUTH_TOKEN_FILE='{tmp_path / 'empty'}': the file is empty" in text
    text = problems(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="PLAIN",
                    KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "empty"))
    assert f"KAFKA_SASL_PASSWORD_FILE='{tmp_path / 'empty'}': the file is empty" in text
    assert "needs KAFKA_SASL_PASSWORD" not in text     # one problem per cause


def test_a_secret_that_fails_to_parse_is_not_echoed(monkeypatch):
    def picky(raw):
        raise ValueError("expected 32 characters")
    monkeypatch.setitem(VARIABLES, "GRPC_AUTH_TOKEN", ("", picky, "token"))
    text = problems(GRPC_AUTH_TOKEN="hunter2")
    assert "GRPC_AUTH_TOKEN=<hidden>: expected 32 characters" in text and "hunter2" not in text


# -- settings that must fit together ------------------------------------------------------------

@pytest.mark.parametrize("environ, expected", [
    ({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_MECHANISM=PLAIN needs KAFKA_SECURITY_PROTOCOL SASL_SSL or SASL_PLAINTEXT "
     "(it is PLAINTEXT)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, "
     "SCRAM-SHA-512 or OAUTHBEARER)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
      "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_MECHANISM=SCRAM-SHA-256 needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "u"},
     "KAFKA_SASL_MECHANISM=PLAIN needs KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
     "KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_FILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SASL_OAUTH_TOKEN_FILE": __file__},
     "KAFKA_SASL_OAUTH_TOKEN_FILE is set but not used by KAFKA_SASL_MECHANISM=PLAIN"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_USERNAME": "u"},
     "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=SSL uses no SASL"),
])
def test_sasl_settings_that_do_not_fit_are_refused(environ, expected):
    assert expected in problems(**environ)


def test_the_password_never_appears_in_a_consistency_error():
    text = problems(KAFKA_SASL_MECHANISM="PLAIN", KAFKA_SASL_USERNAME="u",
                    KAFKA_SASL_PASSWORD="hunter2")
    assert "hunter2" not in text


def test_tls_files_with_a_protocol_without_tls_are_refused(pki):
    text = problems(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="PLAIN",
                    KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p", KAFKA_SSL_CA_FILE=pki["ca"])
    assert ("KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS "
            "(SSL or SASL_SSL do)") in text


def test_a_certificate_without_its_key_and_a_key_without_its_certificate_are_refused(pki):
    assert (f"KAFKA_SSL_CERT_FILE={pki['cert']!r} holds no private key: set KAFKA_SSL_KEY_FILE"
            in problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=pki["cert"]))
    assert ("KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE (the client certificate)"
            in problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_KEY_FILE=pki["key"]))


def test_mutual_tls_files_that_fit_are_accepted(pki):
    s = load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=pki["ca"],
             KAFKA_SSL_CERT_FILE=pki["cert"], KAFKA_SSL_KEY_FILE=pki["key"])
    assert (s.kafka_ssl_cert_file, s.kafka_ssl_key_file) == (pki["cert"], pki["key"])
    s = load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=pki["combined"])
    assert s.kafka_ssl_key_file == ""   # the key is in the certificate file
    s = load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=pki["cert"],
             KAFKA_SSL_KEY_FILE=pki["key_encrypted"], KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD)
    assert s.kafka_ssl_key_password == KEY_PASSWORD


@pytest.mark.parametrize("key, password, expected", [
    ("key_encrypted", "wrong-pw",
     "cannot decrypt the key: wrong or missing KAFKA_SSL_KEY_PASSWORD"),
    ("key_encrypted", "", "cannot decrypt the key: wrong or missing KAFKA_SSL_KEY_PASSWORD"),
    ("other_key", "", "the key does not belong to the certificate"),
    ("ca", "", "not a PEM certificate and key"),
])
def test_a_key_that_cannot_be_used_is_refused_at_startup(pki, key, password, expected):
    text = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=pki["cert"],
                    KAFKA_SSL_KEY_FILE=pki[key], KAFKA_SSL_KEY_PASSWORD=password)
    assert (f"KAFKA_SSL_CERT_FILE={pki['cert']!r}, KAFKA_SSL_KEY_FILE={pki[key]!r}: "
            f"{expected}") in text
    assert "wrong-pw" not in text


@pytest.mark.parametrize("text", ["not a certificate\n",
                                  "-----BEGIN CERTIFICATE-----\nAAAAgarbage\n"
                                  "-----END CERTIFICATE-----\n"])
def test_a_ca_file_that_is_not_pem_is_refused(tmp_path, text):
    """The second (a PEM block of garbage) was said '... file (None)' (a Kafka TLS audit)."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text(text)
    said = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=str(bogus))
    assert f"KAFKA_SSL_CA_FILE={str(bogus)!r}: not a PEM certificate file" in said
    assert "None" not in said


def test_unreadable_tls_files_name_the_variable_and_the_path(tmp_path):
    text = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=str(tmp_path / "c.pem"),
                    KAFKA_SSL_KEY_FILE=str(tmp_path / "k.pem"),
                    KAFKA_SASL_OAUTH_TOKEN_FILE=str(tmp_path / "t"))
    for name, file in (("KAFKA_SSL_CERT_FILE", "c.pem"), ("KAFKA_SSL_KEY_FILE", "k.pem"),
                       ("KAFKA_SASL_OAUTH_TOKEN_FILE", "t")):
        assert (f"{name}='{tmp_path / file}': cannot read the file "
                "(No such file or directory)") in text


def test_value_errors_and_consistency_errors_come_in_one_message():
    text = problems(HTTP_PORT="0", KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert "HTTP_PORT='0'" in text and "needs KAFKA_SASL_MECHANISM" in text


# -- unknown variables ---------------------------------------------------------------------------

def test_a_typo_is_named_with_the_closest_known_variable():
    assert unknown_variables({"KAFKA_SASL_PASWORD": "x", "PATH": "/bin"}, env_file=None) == [
        "unknown variable KAFKA_SASL_PASWORD is ignored (did you mean KAFKA_SASL_PASSWORD?)"]
    assert unknown_variables({"SSE_MAX_CLIENT": "1", "GRPC_AUTH_TOKN": "t"}, env_file=None) == [
        "unknown variable GRPC_AUTH_TOKN is ignored (did you mean GRPC_AUTH_TOKEN?)",
        "unknown variable SSE_MAX_CLIENT is ignored (did you mean SSE_MAX_CLIENTS?)"]


def test_known_names_secret_files_and_other_softwares_variables_are_not_warned_about():
    environ = {name: "" for name in VARIABLES}
    environ.update({"KAFKA_SASL_PASSWORD_FILE": "/x", "GRPC_AUTH_TOKEN_FILE": "/x",
                    "KAFKA_LOCAL_PORT": "19092", "KAFKA_LOCAL_HOME": "/tmp/k",
                    "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "api", "HTTP_PROXY": "http://p:3128",
                    "HOME": "/root", "TOPICS": "x"})
    assert unknown_variables(environ, env_file=None) == []


def test_other_softwares_variables_in_the_env_file_are_said_not_to_reach_them(tmp_path):
    env = tmp_path / ".env"
    env.write_text("GRPC_VERBOSITY=debug\nGRPC_TRACE=api\nKAFKA_LOCAL_PORT=19092\n")
    assert unknown_variables({"GRPC_TRACE": "api"}, env_file=env) == [
        f"GRPC_VERBOSITY in {env} is not read by gRPC's core library, which reads the "
        "process environment: export it before starting the gateway"]


def test_web_concurrency_is_said_to_be_ignored_and_workers_named(tmp_path):
    env = tmp_path / ".env"
    env.write_text("WEB_CONCURRENCY=4\n")
    expected = ("WEB_CONCURRENCY is ignored: the gateway sets gunicorn's workers from WORKERS "
                "(empty: one per CPU)")
    assert unknown_variables({}, env_file=env) == [expected]
    assert unknown_variables({"WEB_CONCURRENCY": "4"}, env_file=None) == [expected]
    assert unknown_variables({"WEB_CONCURRENCY": "4", "WORKERS": "4"}, env_file=None) == []


def test_a_file_variant_of_a_non_secret_says_which_may_be_files():
    [warning] = unknown_variables({"HTTP_PORT_FILE": "/p"}, env_file=None)
    assert warning.startswith("unknown variable HTTP_PORT_FILE is ignored (did you mean HTTP_PORT?")
    assert ("only KAFKA_SSL_KEY_PASSWORD, KAFKA_SASL_PASSWORD, GRPC_AUTH_TOKEN, AUTH_JWT_SECRET, "
            "AUTH_TICKET_SECRET or AUTH_TICKET_OTHER_SECRET may be read from a file") in warning


def test_unknown_names_in_the_env_file_are_found_too(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LOG_LEVLE=debug\n")
    assert unknown_variables({}, env_file=env) == [
        "unknown variable LOG_LEVLE is ignored (did you mean LOG_LEVEL?)"]


def test_a_variable_written_in_lower_case_is_named_not_silently_ignored(tmp_path):
    env = tmp_path / ".env"
    env.write_text("kafka_brokers=kafka:9092\n")
    assert unknown_variables({"http_proxy": "x", "Log_Level": "debug"}, env_file=env) == [
        "variable Log_Level is ignored: the names are upper case (LOG_LEVEL)",
        "variable kafka_brokers is ignored: the names are upper case (KAFKA_BROKERS)"]


# -- the effective configuration, secrets masked --------------------------------------------------

def test_masked_shows_every_variable_and_hides_set_secrets(tmp_path):
    (tmp_path / "pw").write_text("hunter2\n")
    s = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="PLAIN",
             KAFKA_SASL_USERNAME="alice", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "pw"),
             GRPC_AUTH_TOKEN="t0ken-of-twenty-chars", TRUSTED_PROXIES="10.0.0.0/8")
    shown = s.masked()
    assert list(shown) == list(VARIABLES)
    assert (shown["KAFKA_SASL_PASSWORD"], shown["GRPC_AUTH_TOKEN"]) == ("********", "********")
    assert shown["KAFKA_SSL_KEY_PASSWORD"] == ""    # unset: nothing to hide
    assert (shown["KAFKA_SASL_USERNAME"], shown["TRUSTED_PROXIES"]) == ("alice", "10.0.0.0/8")
    assert shown["RATE_LIMIT_ENABLED"] == "true"
    for text in (s.describe(), repr(s)):
        assert "hunter2" not in text and "t0ken" not in text
    assert "KAFKA_SASL_USERNAME=alice\n" in s.describe()


def test_masked_values_read_back_give_the_same_settings():
    s = load(KAFKA_TOPICS="a,b", TRUSTED_PROXIES="10.0.0.0/8,::1", CORS_ALLOWED_ORIGINS="https://x",
             KAFKA_SSL_CHECK_HOSTNAME="no", KAFKA_SECURITY_PROTOCOL="SSL")
    assert load(**s.masked()) == s
    assert Settings.defaults() == load(**Settings.defaults().masked())


# -- subscriber auth (issue #14) -----------------------------------------------------------------

AUTH_SECRET = "a-shared-secret-of-at-least-32-bytes!"


def _public_pem(tmp_path, kind="ec"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    private = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else \
        ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def auth_error(**env) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ=env, env_file=None)
    return str(caught.value)


def test_auth_is_off_by_default_with_nothing_to_configure():
    s = Settings.defaults()
    assert (s.auth_mode, s.auth_jwt_algorithms, s.auth_jwt_secret, s.auth_ticket_secret) == (
        "off", (), None, None)
    assert (s.auth_subject_field, s.auth_jwks_refresh_seconds, s.auth_jwt_leeway_seconds,
            s.auth_ticket_ttl_seconds, s.sse_max_clients_per_subject) == (None, 60, 30, 30, 0)
    assert (s.auth_scope_claim, s.auth_subject_claim, s.auth_cookie_name) == ("sse", "sub", "")
    assert s.auth_anonymous_scope.event_types == () and s.auth_anonymous_scope.sources == ()


def test_a_full_hs256_configuration_is_read():
    from actors.auth.subjects import SubjectField
    s = load(AUTH_MODE="Optional", AUTH_JWT_ALGORITHMS="hs256", AUTH_JWT_SECRET=AUTH_SECRET,
             AUTH_TICKET_SECRET=AUTH_SECRET[::-1], AUTH_SUBJECT_FIELD="header:user-id",
             AUTH_ANONYMOUS_SCOPE="event_types=blog.*;sources=*", AUTH_COOKIE_NAME="sse_token",
             SSE_MAX_CLIENTS_PER_SUBJECT="5", AUTH_JWT_AUDIENCE="sse", AUTH_JWT_ISSUER="https://id")
    assert (s.auth_mode, s.auth_jwt_algorithms, s.auth_jwt_secret) == (
        "optional", ("HS256",), AUTH_SECRET.encode())
    assert s.auth_subject_field == SubjectField("header", header="user-id")
    assert (s.auth_anonymous_scope.event_types, s.auth_anonymous_scope.sources) == (
        ("blog.*",), ("*",))
    assert (s.auth_cookie_name, s.sse_max_clients_per_subject) == ("sse_token", 5)


@pytest.mark.parametrize("env, words", [
    ({"AUTH_MODE": "required"}, "AUTH_MODE=required needs AUTH_JWT_ALGORITHMS"),
    ({"AUTH_MODE": "sometimes"}, "AUTH_MODE='sometimes': expected off, required or optional"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "none"}, "'none' means unsigned tokens"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS257"}, "'HS257' is not one of"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256"},
     "AUTH_JWT_ALGORITHMS=HS256 needs AUTH_JWT_SECRET (or AUTH_JWT_SECRET_FILE) of at least 32"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256", "AUTH_JWT_SECRET": "short"},
     "AUTH_JWT_SECRET=<hidden>: expected at least 32 bytes"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "RS256"},
     "needs exactly one of AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL (neither is set)"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "ES256", "AUTH_JWKS_URL": "ftp://x/jwks"},
     "AUTH_JWKS_URL='ftp://x/jwks': expected an http:// or https:// URL"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "RS256",
      "AUTH_JWKS_URL": "https://id.example/jwks", "AUTH_JWT_SECRET": AUTH_SECRET},
     "AUTH_JWT_SECRET is set but AUTH_JWT_ALGORITHMS has no HS256"),
    ({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256", "AUTH_JWT_SECRET": AUTH_SECRET,
      "AUTH_JWKS_URL": "https://id.example/jwks"},
     "AUTH_JWKS_URL is set but AUTH_JWT_ALGORITHMS has no RS/PS/ES/EdDSA"),
    ({"AUTH_SUBJECT_FIELD": "value"}, "AUTH_SUBJECT_FIELD='value': subject field 'value' is not "
                                      "one of key, header:<name> or data.<dotted.path>"),
    ({"AUTH_SUBJECT_FIELD": "data."}, "give a dotted path of keys"),
    ({"AUTH_ANONYMOUS_SCOPE": "blog.*"}, "expected event_types=<patterns>;sources=<patterns>"),
    ({"AUTH_ANONYMOUS_SCOPE": "event_types=blog.*"}, "give both event_types=... and sources="),
    ({"AUTH_ANONYMOUS_SCOPE": "event_types=a b;sources=*"}, "may only contain letters"),
    ({"AUTH_TICKET_SECRET": "0123456789"}, "AUTH_TICKET_SECRET=<hidden>: expected at least 32"),
    ({"AUTH_COOKIE_NAME": "my cookie"}, "AUTH_COOKIE_NAME='my cookie': expected a cookie name"),
    ({"AUTH_SCOPE_CLAIM": " "}, "AUTH_SCOPE_CLAIM=' ': expected the name of a JWT claim"),
    ({"SSE_MAX_CLIENTS_PER_SUBJECT": "-1"}, "SSE_MAX_CLIENTS_PER_SUBJECT='-1'"),
])
def test_auth_settings_that_cannot_work_stop_the_start_saying_what_to_do(env, words):
    assert words in auth_error(**env)


@pytest.mark.parametrize("name", ["AUTH_JWT_SECRET", "AUTH_TICKET_SECRET",
                                  "AUTH_TICKET_OTHER_SECRET"])
def test_a_secret_of_spaces_alone_is_refused(name):
    """32 spaces passed as a secret (the file form of one was refused): tickets, or tokens,
    signed with a secret anyone can guess (the configuration audit)."""
    env = {"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256",
           "AUTH_JWT_SECRET": "s" * 40, name: " " * 40}
    text = auth_error(**env)
    assert f"{name}=<hidden>" in text and "only spaces" in text


def test_a_management_token_of_spaces_alone_is_refused_not_taken_for_none():
    """It was stripped to nothing, and so no token was asked for: the API open to anyone
    who reaches it, by a setting that looks like a token."""
    text = problems(GRPC_AUTH_TOKEN=" " * 20)
    assert "GRPC_AUTH_TOKEN=<hidden>" in text and "only spaces" in text
    assert Settings.from_env(environ={"GRPC_AUTH_TOKEN": ""}, env_file=None).grpc_auth_token == ""


def test_a_short_secret_is_never_shown_in_the_error():
    text = auth_error(AUTH_JWT_SECRET="tiny-secret", AUTH_TICKET_SECRET="other-tiny")
    assert "tiny-secret" not in text and "other-tiny" not in text


def test_a_public_key_and_a_jwks_together_are_refused(tmp_path):
    key = _public_pem(tmp_path)
    text = auth_error(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="ES256",
                      AUTH_JWT_PUBLIC_KEY_FILE=str(key), AUTH_JWKS_URL="https://id/jwks")
    assert "exactly one of AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_URL (both are set)" in text


def test_a_public_key_of_another_algorithm_is_refused_at_start(tmp_path):
    key = _public_pem(tmp_path, "ec")
    text = auth_error(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="RS256",
                      AUTH_JWT_PUBLIC_KEY_FILE=str(key))
    assert f"AUTH_JWT_PUBLIC_KEY_FILE={str(key)!r} is not a public key for RS256" in text


def test_a_public_key_file_is_read_into_the_settings(tmp_path):
    key = _public_pem(tmp_path, "ed")
    s = load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="EdDSA", AUTH_JWT_PUBLIC_KEY_FILE=str(key))
    assert s.auth_jwt_public_key_pem == key.read_bytes()
    assert s.replace(auth_jwt_public_key_file="").auth_jwt_public_key_pem is None


def test_auth_consistency_is_not_checked_while_auth_is_off():
    """Off: what a mode would need is not asked for; that the variables are set is the one
    problem."""
    text = problems(AUTH_JWT_ALGORITHMS="HS256")
    assert "AUTH_JWT_ALGORITHMS set, but AUTH_MODE=off" in text and "needs" not in text


def test_auth_secrets_may_come_from_files_and_are_masked(tmp_path):
    (tmp_path / "jwt").write_text(AUTH_SECRET + "\n")
    (tmp_path / "ticket").write_text(AUTH_SECRET[::-1])
    s = load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256",
             AUTH_JWT_SECRET_FILE=str(tmp_path / "jwt"),
             AUTH_TICKET_SECRET_FILE=str(tmp_path / "ticket"))
    assert (s.auth_jwt_secret, s.auth_ticket_secret) == (AUTH_SECRET.encode(),
                                                         AUTH_SECRET[::-1].encode())
    shown = s.masked()
    assert (shown["AUTH_JWT_SECRET"], shown["AUTH_TICKET_SECRET"]) == ("********", "********")
    for text in (s.describe(), repr(s)):
        assert AUTH_SECRET not in text and AUTH_SECRET[::-1] not in text
        assert "a-shared" not in text
    assert "AUTH_MODE=required\n" in s.describe()


def test_auth_masked_values_read_back_give_the_same_settings():
    s = load(AUTH_MODE="optional", AUTH_SUBJECT_FIELD="data.user.id",
             AUTH_ANONYMOUS_SCOPE="sources=*;event_types=a,b*", AUTH_JWT_ALGORITHMS="ES256",
             AUTH_JWKS_URL="https://id.example/jwks", SSE_MAX_CLIENTS_PER_SUBJECT="3")
    shown = s.masked()
    assert shown["AUTH_SUBJECT_FIELD"] == "data.user.id"
    assert shown["AUTH_ANONYMOUS_SCOPE"] == "event_types=a,b*;sources=*"
    assert load(**shown) == s
    assert Settings.defaults().masked()["AUTH_SUBJECT_FIELD"] == ""


def test_typos_of_the_auth_variables_are_caught():
    assert unknown_variables({"AUTH_JWT_SECRT": "x", "AUTH_TICKET_SECRET_FILE": "/f",
                              "AUTH_MODE": "off"}, env_file=None) == [
        "unknown variable AUTH_JWT_SECRT is ignored (did you mean AUTH_JWT_SECRET?)"]


# -- workers (issue #15) --------------------------------------------------------------------------

def test_workers_default_to_the_cpus_this_process_may_use(monkeypatch):
    import os
    assert load().workers == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert load().workers == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(500)))
    assert load().workers == 64          # at most MAX_WORKERS, however big the machine
    assert load(WORKERS="1").workers == 1 and load(WORKERS=" 4 ").workers == 4


@pytest.mark.parametrize("value", ["0", "-1", "65", "two", "1.5"])
def test_a_workers_count_that_cannot_run_is_refused(value):
    assert f"WORKERS='{value}'" in problems(WORKERS=value)


def test_the_instance_dir_is_internal_read_but_never_listed_or_warned_about():
    s = load(SSE_INSTANCE_DIR="/dev/shm/kafka-sse-1-x")
    assert s.sse_instance_dir == "/dev/shm/kafka-sse-1-x" and load().sse_instance_dir == ""
    assert "SSE_INSTANCE_DIR" not in s.masked() and "SSE_INSTANCE_DIR" not in VARIABLES
    assert unknown_variables({"SSE_INSTANCE_DIR": "/x"}, env_file=None) == []
    assert unknown_variables({"WORKER": "2"}, env_file=None) == [
        "unknown variable WORKER is ignored (did you mean WORKERS?)"]


def test_trusted_proxies_written_as_ipv4_mapped_ipv6_trust_those_ipv4_peers():
    """Peers are compared as IPv4 (a v4 client on a dual-stack socket arrives as ::ffff:a.b.c.d
    and is read as a.b.c.d): a list in the mapped form used to trust nobody, silently."""
    from web.address import client_address
    from web.door import Door, DoorLimits
    s = load(TRUSTED_PROXIES="::ffff:10.0.0.0/104, ::ffff:192.0.2.7, 2001:db8::/32")
    for proxy in ("10.1.2.3", "::ffff:10.1.2.3", "192.0.2.7", "2001:db8::5"):
        assert client_address(proxy, "203.0.113.9", s.trusted_proxies) == "203.0.113.9", proxy
    for other in ("11.0.0.1", "192.0.2.8", "::ffff:192.0.2.8"):
        assert client_address(other, "203.0.113.9", s.trusted_proxies) != "203.0.113.9", other
    door = Door(DoorLimits(timeout=10.0, per_address=1, total=99, exempt=s.trusted_proxies))
    entered = [door.enter(object(), ("::ffff:10.9.9.9", n), 0.0)[0] for n in range(3)]
    assert entered == [True, True, True]
    everyone = load(TRUSTED_PROXIES="::/0").trusted_proxies
    assert client_address("10.1.2.3", "203.0.113.9", everyone) == "203.0.113.9"


def test_an_env_file_that_cannot_be_read_is_a_configuration_error(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_bytes(b"KAFKA_TOPICS=caf\xe9\n")            # Latin-1, not UTF-8
    for read in (Settings.from_env, unknown_variables):
        with pytest.raises(SettingsError, match=r"\.env.*cannot read the file.*UTF-8"):
            read({}, env_file=env)

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    env.write_text("KAFKA_TOPICS=a\n")
    monkeypatch.setattr(type(env), "read_text", refused)
    with pytest.raises(SettingsError, match=r"\.env.*cannot read the file \(Permission denied\)"):
        Settings.from_env({}, env_file=env)


@pytest.mark.parametrize("name", ["KAFKA_FETCH_MAX_BYTES", "KAFKA_MAX_PARTITION_FETCH_BYTES"])
def test_fetch_sizes_kafka_cannot_carry_are_refused(name):
    """Kafka's fetch request holds them as 32-bit integers: larger failed every poll."""
    assert getattr(Settings.from_env({name: "2147483647"}, env_file=None), name.lower())
    with pytest.raises(SettingsError, match=f"{name}='2147483648'"):
        Settings.from_env({name: "2147483648"}, env_file=None)


@pytest.mark.parametrize("broker", ["127.0.0.1:99999", "kafka:0", "kafka:65536"])
def test_a_broker_port_out_of_range_is_refused(broker):
    with pytest.raises(SettingsError, match="KAFKA_BROKERS=.*port"):
        Settings.from_env({"KAFKA_BROKERS": broker}, env_file=None)


@pytest.mark.parametrize("value", ["eighty", "1.5", "", "0x10"])
def test_a_number_that_is_not_one_says_what_is_expected(value):
    """The README promises the variable, the value and what is expected; not Python's words."""
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"HTTP_PORT": value}, env_file=None)
    assert f"HTTP_PORT={value!r}: expected a whole number between 1 and 65535" in str(err.value)
    assert "int()" not in str(err.value)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),                          # cgroup v2, 1.5 CPUs
    ({"cpu.max": "max 100000\n"}, 8),                             # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 8),
    ({"cpu.max": "50000 100000\n"}, 1),                           # half a CPU: one worker
    ({}, 8),                                                      # no cgroup files
])
def test_workers_default_to_the_containers_cpu_limit(monkeypatch, tmp_path, files, expected):
    """A Kubernetes CPU limit is a cgroup quota, not an affinity mask: a pod limited to two
    CPUs on a 64-CPU node started 64 workers, each with its own Kafka reader."""
    import os
    from actors.settings import variables as settings_module
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(settings_module, "CGROUP_ROOT", str(tmp_path))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert load().workers == expected
    assert load(WORKERS="5").workers == 5


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/page",
                                   "https://app.example.com?x=1", "//app.example.com",
                                   "https://app.example.com,example.org", "https://a b.example"])
def test_an_origin_a_browser_never_sends_is_refused(value):
    """An origin without its scheme, or with a path, silently matched no page's Origin: every
    cross-origin page got 403 and nothing said why."""
    assert "CORS_ALLOWED_ORIGINS=" in problems(CORS_ALLOWED_ORIGINS=value)
    assert "scheme://host[:port]" in problems(CORS_ALLOWED_ORIGINS=value)


def test_origins_as_browsers_send_them_are_accepted():
    s = load(CORS_ALLOWED_ORIGINS="https://app.example.com, http://localhost:3000,"
             "https://admin.example/,chrome-extension://abcdefghijklmnop")
    assert len(s.cors_allowed_origins) == 4 and load(CORS_ALLOWED_ORIGINS="*")


@pytest.mark.parametrize("value", ["Content-Type,X Y", "Last-Event-ID,\u00e9", "a\nb",
                                   "Content-Type;Last-Event-ID"])
def test_a_header_name_that_is_not_one_is_refused(value):
    """A newline made every preflight answer 500; other non-names could never match."""
    assert "CORS_ALLOWED_HEADERS=" in problems(CORS_ALLOWED_HEADERS=value)


@pytest.mark.parametrize("topic", ["caf\u00e9", "\u0663", "blog\u2024posts"])
def test_a_topic_name_kafka_refuses_is_refused_at_start(topic):
    """Kafka's topic names are ASCII letters, digits, '.', '_' and '-'; str.isalnum() let
    other letters and digits through, to a topic that can never exist."""
    assert f"{topic!r} is not a valid Kafka topic name" in problems(KAFKA_TOPICS=topic)


@pytest.mark.parametrize("token", ["t\u00f6ken", "tok en", "tok\ten", "tok\x7fen"])
def test_a_grpc_token_that_metadata_cannot_carry_is_refused_without_showing_it(token):
    """gRPC metadata values are printable ASCII: such a token could never be sent, so every
    management call would be refused (and grpcurl's -H fails on its client side)."""
    text = problems(GRPC_AUTH_TOKEN=token)
    assert "GRPC_AUTH_TOKEN" in text and "printable ASCII" in text and token not in text
    assert load(GRPC_AUTH_TOKEN="  s3cr3t-T0ken.~+/=  ").grpc_auth_token == "s3cr3t-T0ken.~+/="


@pytest.mark.parametrize("token", ["Zq", "hunter2", "fifteen-chars-Q"])
def test_a_grpc_token_short_enough_to_guess_is_refused_without_showing_it(token):
    """The token is all that guards the management API bound wider than loopback."""
    text = problems(GRPC_AUTH_TOKEN=token)
    assert "GRPC_AUTH_TOKEN=<hidden>: at least 16 characters" in text and token not in text
    assert "openssl rand -hex 32" in text
    assert load(GRPC_AUTH_TOKEN="sixteen-chars-xy").grpc_auth_token == "sixteen-chars-xy"


# -- what the mode would ignore ------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("AUTH_SUBJECT_FIELD", "key"), ("AUTH_JWT_ALGORITHMS", "HS256"),
    ("AUTH_JWT_SECRET", AUTH_SECRET), ("AUTH_COOKIE_NAME", "sse_token"),
    ("AUTH_JWKS_URL", "https://id.example/jwks"), ("SSE_MAX_CLIENTS_PER_SUBJECT", "3"),
    ("AUTH_TICKET_SECRET", AUTH_SECRET)])
def test_auth_variables_without_an_auth_mode_are_refused_not_ignored(name, value):
    """AUTH_MODE forgotten (off, the default): the gateway ran public, and with
    AUTH_SUBJECT_FIELD every owned event reached nobody, without a word at start."""
    text = problems(**{name: value})
    assert name in text and "AUTH_MODE=off" in text and "AUTH_MODE=required" in text
    assert AUTH_SECRET not in text


def test_auth_variables_restating_their_defaults_are_not_set():
    """.env.example lists every variable with its default: that is not a forgotten mode."""
    defaults = {name: default for name, (default, _parse, _meaning) in VARIABLES.items()}
    assert load(**defaults) == Settings.defaults()


def test_an_anonymous_scope_with_auth_required_is_refused_not_ignored():
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=AUTH_SECRET,
                    AUTH_ANONYMOUS_SCOPE="event_types=blog.*;sources=*")
    assert "AUTH_ANONYMOUS_SCOPE" in text and "AUTH_MODE=optional" in text


# -- listen addresses, origins, brokers, topics and numbers as written ---------------------------

@pytest.mark.parametrize("name", ["HTTP_HOST", "ADMIN_HOST", "GRPC_HOST"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_listen_address_is_refused_not_taken_for_every_interface(name, value):
    """gunicorn reads `:9095` as every interface: ADMIN_HOST= published /metrics and /stats
    to the network, and GRPC_HOST= left every worker without its management API."""
    assert f"{name}=" in problems(**{name: value, "ADMIN_PORT": "9095"})


@pytest.mark.parametrize("value", ["https://*.example.com", "https://app.example.*"])
def test_a_wildcard_inside_an_origin_is_refused_since_it_can_never_match(value):
    text = problems(CORS_ALLOWED_ORIGINS=value)
    assert "CORS_ALLOWED_ORIGINS=" in text and "wildcard" in text


@pytest.mark.parametrize("value", ["::1:9092", "fe80::1:9092"])
def test_an_ipv6_broker_without_brackets_is_refused(value):
    """kafka-python reads ::1:9092 as the host ::1:9092 (port 9092 default), not ::1."""
    assert "[::1]:9092" in problems(KAFKA_BROKERS=value)


@pytest.mark.parametrize("value, said", [
    ("PLAINTEXT://localhost:9092", "without a scheme; the protocol is KAFKA_SECURITY_PROTOCOL"),
    ("SASL_SSL://pkc-1.confluent.cloud:9092", "without a scheme"),
    ("localhost:9092;other:9092", "separate the brokers with commas"),
    ("localhost:9092 other:9092", "separate the brokers with commas")])
def test_a_broker_list_written_another_way_is_refused_saying_how_to_write_it(value, said):
    """A listener's PROTOCOL://host:port (Kafka's own `listeners`, many compose files) was
    told 'an IPv6 address is written in brackets' (found by a packaging audit)."""
    text = problems(KAFKA_BROKERS=value)
    assert said in text and "IPv6" not in text


def test_an_ipv6_broker_in_brackets_is_accepted():
    assert load(KAFKA_BROKERS="[::1]:9092,kafka:9093").kafka_brokers == ("[::1]:9092", "kafka:9093")


@pytest.mark.parametrize("topic", [".", ".."])
def test_the_topic_names_kafka_forbids_are_refused(topic):
    assert f"{topic!r} is not a valid Kafka topic name" in problems(KAFKA_TOPICS=topic)


@pytest.mark.parametrize("value", ["1_0", "\uff11\uff12", "\u0663"])
def test_a_number_is_written_in_ascii_digits(value):
    """int() took 1_0 for 10 and full-width or Arabic-Indic digits: WORKERS=1_0 ran ten."""
    assert "WORKERS=" in problems(WORKERS=value)
    assert "HTTP_PORT=" in problems(HTTP_PORT=value)


def test_proxies_separated_by_spaces_are_refused_with_how_to_list_them():
    text = problems(TRUSTED_PROXIES="10.0.0.0/8 192.168.0.0/16")
    assert "TRUSTED_PROXIES=" in text and "comma" in text


def test_sasl_credentials_without_sasl_say_which_protocol_to_set():
    text = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SASL_USERNAME="u")
    assert "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=SSL uses no SASL" in text
    assert "MECHANISM=:" not in text


@pytest.mark.parametrize("port", ["\u0669\u0660\u0669\u0662", "\u2079\u2070\u2079\u2072"])
def test_a_broker_port_is_written_in_ascii_digits(port):
    assert "is not host:port" in problems(KAFKA_BROKERS=f"kafka:{port}")


@pytest.mark.parametrize("host, warned", [
    ("127.evil.example", True), ("::ffff:127.0.0.1", False), ("0:0:0:0:0:0:0:1", False),
    ("[::1]", False), ("LOCALHOST", False), ("127.0.0.2", False), ("10.0.0.1", True)])
def test_a_management_api_off_loopback_is_told_by_address_not_by_its_first_characters(
        host, warned):
    from actors.settings.warnings import exposure_warnings
    assert bool(exposure_warnings(load(GRPC_HOST=host))) is warned


def test_a_secret_given_by_its_file_is_named_by_its_file_when_auth_is_off(tmp_path):
    (tmp_path / "jwt").write_text(AUTH_SECRET)
    assert "AUTH_JWT_SECRET_FILE set" in problems(AUTH_JWT_SECRET_FILE=str(tmp_path / "jwt"))


def test_an_env_file_line_that_is_not_what_it_looks_like_is_warned_of(tmp_path):
    """`NAME=value  # comment` kept the comment in the value (every token then failed the
    issuer check) and `HTTP_PORT 9000` was dropped, both without a word."""
    from actors.settings import env_file_warnings
    env = tmp_path / ".env"
    env.write_text("# a comment\nAUTH_JWT_ISSUER=https://id.example  # our IdP\n"
                   "HTTP_PORT 9000\nGRPC_AUTH_TOKEN=pa ss#word\nQUOTED='a # b'\n\n"
                   "export LOG_LEVEL=INFO\n")
    warnings = env_file_warnings(str(env))
    assert len(warnings) == 2, warnings
    assert "line 2 (AUTH_JWT_ISSUER)" in warnings[0] and "comment" in warnings[0]
    assert "line 3" in warnings[1] and "NAME=value" in warnings[1] and "ignored" in warnings[1]
    assert "IdP" not in " ".join(warnings)             # a value is never shown
    assert env_file_warnings(str(tmp_path / "missing")) == []


def test_check_config_shows_the_env_file_warnings_beside_the_error_they_explain(
        monkeypatch, tmp_path, capsys):
    from web import cli
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LOG_LEVEL=INFO # chatty\n")
    assert cli.main(["--check-config"]) == 2            # "INFO # chatty" is no level
    err = capsys.readouterr().err
    assert "LOG_LEVEL=" in err and "warning: .env line 1 (LOG_LEVEL)" in err


@pytest.mark.parametrize("proxies, warned", [
    ("0.0.0.0/1,128.0.0.0/1", True), ("::/1,8000::/1", True), ("0.0.0.0/0", True),
    ("10.0.0.0/8,0.0.0.0/1", False), ("0.0.0.0/1,128.0.0.0/2", False), ("8000::/1", False),
    ("::/1", True)])        # it holds ::ffff:0:0/96, every IPv4 address as IPv6 names it
def test_proxies_that_cover_every_address_in_pieces_are_warned_of_too(proxies, warned):
    from actors.settings.warnings import exposure_warnings
    found = [w for w in exposure_warnings(load(TRUSTED_PROXIES=proxies))
             if w.startswith("TRUSTED_PROXIES trusts every address")]
    assert bool(found) is warned


def test_a_key_password_for_a_key_that_is_not_encrypted_is_warned_of(pki):
    """OpenSSL ignores the password of a key in clear: the operator who set it believes the
    key on disk is protected."""
    from actors.settings.warnings import clear_text_warnings
    s = load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=pki["cert"],
             KAFKA_SSL_KEY_FILE=pki["key"], KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD)
    [warning] = clear_text_warnings(s)
    assert f"the private key in {pki['key']!r} is not encrypted" in warning
    assert "KAFKA_SSL_KEY_PASSWORD is unused" in warning and KEY_PASSWORD not in warning
    assert clear_text_warnings(s.replace(kafka_ssl_key_file=pki["key_encrypted"])) == []
    assert clear_text_warnings(s.replace(kafka_ssl_key_password="")) == []


@pytest.mark.parametrize("alg, needed", [("HS384", 48), ("HS512", 64)])
def test_an_hs_secret_shorter_than_its_algorithms_hash_is_refused(alg, needed):
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS=alg, AUTH_JWT_SECRET="k" * 40)
    assert (f"AUTH_JWT_ALGORITHMS={alg} needs AUTH_JWT_SECRET of at least {needed} bytes "
            f"(RFC 7518 3.2: as long as its hash); it has 40") in text
    assert "k" * 40 not in text
    load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS=alg, AUTH_JWT_SECRET="k" * needed)


def test_an_rsa_public_key_pyjwt_would_refuse_as_too_short_is_refused_at_start(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    path = tmp_path / "short.pem"
    path.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024)
                     .public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="RS256",
                    AUTH_JWT_PUBLIC_KEY_FILE=str(path))
    assert f"AUTH_JWT_PUBLIC_KEY_FILE={str(path)!r} is too short for RS256" in text
    assert "1024 bits" in text


@pytest.mark.parametrize("url", ["https://svc:hunter2pass@issuer.example/jwks",
                                 "https://hunter2pass@issuer.example:8443/jwks"])
def test_a_jwks_url_with_a_user_or_password_is_refused_without_showing_them(url):
    """urllib sends neither (it read the password as a port); the refusal must not print it."""
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="RS256", AUTH_JWKS_URL=url)
    assert "AUTH_JWKS_URL=" in text and "without a user name or password" in text
    assert "hunter2pass" not in text and "issuer.example" in text


# -- TLS of the management API ------------------------------------------------------------------
def test_the_management_api_serves_tls_with_a_certificate_and_its_key(pki):
    s = load(GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"])
    assert (s.grpc_tls_cert_file, s.grpc_tls_key_file) == (pki["server_cert"], pki["server_key"])
    assert (load().grpc_tls_cert_file, load().grpc_tls_key_file) == ("", "")    # plaintext


def test_management_tls_files_that_do_not_fit_are_refused_with_what_to_do(pki, tmp_path):
    cert, key = pki["server_cert"], pki["server_key"]
    assert ("GRPC_TLS_CERT_FILE needs GRPC_TLS_KEY_FILE (the certificate's private key)"
            in problems(GRPC_TLS_CERT_FILE=cert))
    assert ("GRPC_TLS_KEY_FILE needs GRPC_TLS_CERT_FILE (the certificate it belongs to)"
            in problems(GRPC_TLS_KEY_FILE=key))
    assert (f"GRPC_TLS_CERT_FILE={cert!r}, GRPC_TLS_KEY_FILE={pki['other_key']!r}: the key does "
            f"not belong to the certificate") in problems(GRPC_TLS_CERT_FILE=cert,
                                                          GRPC_TLS_KEY_FILE=pki["other_key"])
    encrypted = problems(GRPC_TLS_CERT_FILE=pki["cert"], GRPC_TLS_KEY_FILE=pki["key_encrypted"])
    assert "gRPC takes no key password: give it the key unencrypted" in encrypted
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    assert "not a PEM certificate and key" in problems(
        GRPC_TLS_CERT_FILE=str(tmp_path / "junk.pem"), GRPC_TLS_KEY_FILE=key)
    assert "GRPC_TLS_CERT_FILE='/nowhere.pem': cannot read the file" in problems(
        GRPC_TLS_CERT_FILE="/nowhere.pem", GRPC_TLS_KEY_FILE=key)


def test_the_management_api_can_require_client_certificates(pki, tmp_path):
    s = load(GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"],
             GRPC_TLS_CLIENT_CA_FILE=pki["ca"])
    assert s.grpc_tls_client_ca_file == pki["ca"] and load().grpc_tls_client_ca_file == ""
    assert ("GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE (client "
            "certificates are asked for in TLS only)") in problems(
                GRPC_TLS_CLIENT_CA_FILE=pki["ca"])
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for bad in (str(tmp_path / "junk.pem"), pki["key"]):
        assert (f"GRPC_TLS_CLIENT_CA_FILE={bad!r}: not a PEM CA certificate (the certificate "
                f"of the CA that issues the clients' certificates)") in problems(
            GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"],
            GRPC_TLS_CLIENT_CA_FILE=bad)


def test_client_certificates_off_loopback_need_no_token_warning(pki):
    from actors.settings.warnings import exposure_warnings
    tls = dict(GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"])
    [warning] = exposure_warnings(load(GRPC_HOST="0.0.0.0", **tls))
    assert "without GRPC_AUTH_TOKEN" in warning and "GRPC_TLS_CLIENT_CA_FILE" in warning
    assert exposure_warnings(load(GRPC_HOST="0.0.0.0", GRPC_TLS_CLIENT_CA_FILE=pki["ca"],
                                  **tls)) == []


def test_a_management_token_sent_over_the_network_in_clear_is_warned_of(pki):
    from actors.settings.warnings import exposure_warnings
    token = "t" * 20
    [warning] = exposure_warnings(load(GRPC_HOST="0.0.0.0", GRPC_AUTH_TOKEN=token))
    assert "GRPC_AUTH_TOKEN crosses the network in clear text" in warning
    assert "set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE" in warning and token not in warning
    assert exposure_warnings(load(GRPC_HOST="0.0.0.0", GRPC_AUTH_TOKEN=token,
                                  GRPC_TLS_CERT_FILE=pki["server_cert"],
                                  GRPC_TLS_KEY_FILE=pki["server_key"])) == []
    assert exposure_warnings(load(GRPC_AUTH_TOKEN=token)) == []          # loopback


def test_a_relative_path_that_cannot_be_read_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """It resolves against the directory the gateway starts in, which neither the README nor
    the error said (a packaging audit)."""
    monkeypatch.chdir(tmp_path)
    text = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE="certs/ca.pem",
                    GRPC_AUTH_TOKEN_FILE="tok")
    assert f"looked for {tmp_path / 'certs' / 'ca.pem'}" in text
    assert f"looked for {tmp_path / 'tok'}" in text


def test_the_jwks_url_is_shown_without_its_password_or_query_values():
    """--check-config prints masked(): an API key in the key server's query would reach
    whatever keeps that output (a CI log, a support ticket). A user and password are refused."""
    s = load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="ES256",
             AUTH_JWKS_URL="https://id.example:8443/jwks?api_key=k3y-s3cr3t&v=2")
    shown = s.masked()["AUTH_JWKS_URL"]
    assert shown == "https://id.example:8443/jwks?api_key=***&v=***"
    for text in (s.describe(), repr(s)):
        assert "k3y-s3cr3t" not in text
    assert load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="ES256",
                AUTH_JWKS_URL="https://id.example/jwks").masked()["AUTH_JWKS_URL"] \
        == "https://id.example/jwks"
    bare = load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="ES256",
                AUTH_JWKS_URL="https://id.example/jwks?k3y-s3cr3t&v=")
    assert bare.masked()["AUTH_JWKS_URL"] == "https://id.example/jwks?***&v=***"
    refused = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="ES256",
                       AUTH_JWKS_URL="https://id.example:0/jwks?api_key=k3y-s3cr3t")
    assert "AUTH_JWKS_URL='https://id.example:0/jwks?api_key=***'" in refused
    assert "k3y-s3cr3t" not in refused


# -- from a mutation audit: each value read exactly, each bad one refused -----------------------

def test_on_and_off_are_read_as_true_and_false():
    """RATE_LIMIT_ENABLED=off (a word the error itself does not offer, but the parser takes)
    must turn the limits off, and ACCESS_LOG=on turn the log on, not stop the start."""
    s = load(RATE_LIMIT_ENABLED="Off", ACCESS_LOG=" ON ")
    assert (s.rate_limit_enabled, s.access_log) == (False, True)


def test_a_topic_name_of_249_characters_is_taken_and_one_of_250_refused():
    """Kafka's limit is 249: a longer name could never be created or read."""
    assert load(KAFKA_TOPICS="t" * 249).kafka_topics == ("t" * 249,)
    assert "is not a valid Kafka topic name" in problems(KAFKA_TOPICS="t" * 250)


def test_star_with_a_single_origin_is_refused():
    """`*,https://app.example.com` looks like a narrowed list, but * lets every origin in."""
    assert "expected either * or a list of origins, not both" in problems(
        CORS_ALLOWED_ORIGINS="*,https://app.example.com")


def test_an_origin_with_a_fragment_is_refused():
    """A browser's Origin header never holds a #fragment: such an entry would match nothing."""
    assert "'https://app.example.com#x' is not an origin as browsers send it" in problems(
        CORS_ALLOWED_ORIGINS="https://app.example.com#x")


def test_a_client_id_of_200_characters_is_taken_and_one_of_201_refused():
    assert load(KAFKA_CLIENT_ID="c" * 200).kafka_client_id == "c" * 200
    assert "KAFKA_CLIENT_ID=" + repr("c" * 201) + ": expected up to 200 printable" in problems(
        KAFKA_CLIENT_ID="c" * 201)


def test_a_value_of_256_characters_is_shown_whole_in_the_error():
    """Only a longer one is shortened: a path of up to 256 characters is shown as given."""
    assert f"SSE_MAX_CLIENTS={'9' * 256!r}: expected" in problems(SSE_MAX_CLIENTS="9" * 256)


def test_a_key_password_with_an_encrypted_key_inside_the_certificate_file_is_taken(pki,
                                                                                   tmp_path):
    """KAFKA_SSL_CERT_FILE may hold the key too (no KAFKA_SSL_KEY_FILE); its password must not
    be refused as if it had no key to open."""
    combined = tmp_path / "combined-encrypted.pem"
    combined.write_bytes(b"".join(Path(pki[name]).read_bytes()
                                  for name in ("cert", "key_encrypted")))
    s = load(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERT_FILE=str(combined),
             KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD)
    assert (s.kafka_ssl_key_file, s.kafka_ssl_key_password) == ("", KEY_PASSWORD)


def test_an_anonymous_scope_naming_event_types_twice_is_refused():
    """The second event_types would silently replace the first: what anonymous readers may
    read must not depend on which one is written last."""
    text = problems(AUTH_MODE="optional", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET="s" * 32,
                    AUTH_ANONYMOUS_SCOPE="event_types=blog.*;sources=*;event_types=*")
    assert "AUTH_ANONYMOUS_SCOPE=" in text and "expected event_types=<patterns>;" in text


def test_none_in_any_case_is_refused_as_unsigned_tokens():
    """`None` is not a typo of an algorithm: the error must say why it is never accepted."""
    assert "'none' means unsigned tokens and is never accepted" in problems(
        AUTH_JWT_ALGORITHMS="HS256,None")


def test_an_algorithm_listed_twice_in_other_case_is_kept_once():
    s = load(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256,hs256", AUTH_JWT_SECRET="s" * 32)
    assert s.auth_jwt_algorithms == ("HS256",) and s.masked()["AUTH_JWT_ALGORITHMS"] == "HS256"


def test_a_key_password_for_a_clear_key_inside_the_certificate_file_is_warned_of(pki):
    """The key may sit in KAFKA_SSL_CERT_FILE (no KAFKA_SSL_KEY_FILE): a password for it in
    clear protects nothing there either."""
    from actors.settings.warnings import clear_text_warnings
    [warning] = clear_text_warnings(load(KAFKA_SECURITY_PROTOCOL="SSL",
                                         KAFKA_SSL_CERT_FILE=pki["combined"],
                                         KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD))
    assert f"the private key in {pki['combined']!r} is not encrypted" in warning


def test_a_management_api_turned_off_is_not_warned_of_whatever_its_host():
    """GRPC_PORT=0 listens nowhere: a warning that anyone can disconnect clients, or read the
    token, would be false."""
    from actors.settings.warnings import exposure_warnings
    assert exposure_warnings(load(GRPC_PORT="0", GRPC_HOST="0.0.0.0")) == []
    assert exposure_warnings(load(GRPC_PORT="0", GRPC_HOST="0.0.0.0",
                                  GRPC_AUTH_TOKEN="t" * 20)) == []


def test_a_file_variable_of_no_setting_is_not_told_that_only_secrets_are_read_from_files():
    """SSE_HISTORY_FILE is no <setting>_FILE: the hint about secrets in files would mislead."""
    [warning] = unknown_variables({"SSE_HISTORY_FILE": "/h"}, env_file=None)
    assert warning.startswith("unknown variable SSE_HISTORY_FILE is ignored (did you mean ")
    assert "may be read from a file" not in warning


def test_a_grpc_core_variable_under_a_foreign_prefix_in_the_env_file_is_said_not_to_reach_it(
        tmp_path):
    env = tmp_path / ".env"
    env.write_text("GRPC_PYTHON_BUILD_WITH_CYTHON=1\n")
    assert unknown_variables({}, env_file=env) == [
        f"GRPC_PYTHON_BUILD_WITH_CYTHON in {env} is not read by gRPC's core library, which "
        "reads the process environment: export it before starting the gateway"]


def test_the_masters_warnings_include_the_env_files_odd_lines(tmp_path, monkeypatch):
    """At start, on SIGHUP and with --check-config: a line without = is silently ignored."""
    from actors.settings.warnings import master_warnings
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SSE_HISTORY_SIZE 7\n")
    assert ".env line 1 is not NAME=value: it is ignored" in master_warnings(None)


def test_an_empty_security_protocol_is_refused_not_taken_for_none():
    assert "KAFKA_SECURITY_PROTOCOL='': expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" in (
        problems(KAFKA_SECURITY_PROTOCOL=""))


def test_a_claim_name_with_a_control_character_is_refused():
    """A tab pasted into AUTH_SUBJECT_CLAIM named a claim no token has: every request 401."""
    assert "AUTH_SUBJECT_CLAIM='su\\tb': expected the name of a JWT claim" in problems(
        AUTH_SUBJECT_CLAIM="su\tb")


def test_a_broker_without_a_host_is_refused():
    assert "KAFKA_BROKERS=':9092': ':9092' is not host:port" in problems(KAFKA_BROKERS=":9092")


def test_an_ipv6_origin_without_a_port_is_taken():
    """The colons inside its brackets are no port."""
    assert load(CORS_ALLOWED_ORIGINS="http://[::1]").cors_allowed_origins == ("http://[::1]",)


def test_a_value_between_two_different_quotes_is_kept_as_written(tmp_path):
    """`'secret"` is no quoted value: both quotes belong to it (a password may hold them)."""
    from actors.settings import read_env_file
    env = tmp_path / ".env"
    env.write_text("KAFKA_SASL_PASSWORD='pa\"\n")
    assert read_env_file(env) == {"KAFKA_SASL_PASSWORD": "'pa\""}


def test_the_log_level_and_format_take_only_what_the_readme_lists_in_any_case():
    """LOG_LEVEL=CRITICAL is not one of DEBUG, INFO, WARNING or ERROR; LOG_FORMAT=JSON is json."""
    assert "LOG_LEVEL='critical': expected DEBUG, INFO, WARNING or ERROR" in problems(
        LOG_LEVEL="critical")
    assert load(LOG_FORMAT=" JSON ").log_format == "json"


def test_an_anonymous_scope_with_an_empty_part_is_refused():
    """`event_types=` (nothing after it) must not pass for a scope."""
    assert "give both event_types=... and sources=..., each with at least one pattern" in (
        problems(AUTH_MODE="optional", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET="s" * 32,
                 AUTH_ANONYMOUS_SCOPE="event_types=;sources=*"))


def test_a_jwt_secret_too_short_is_said_once_not_also_said_missing():
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET="short")
    assert "AUTH_JWT_SECRET=<hidden>: expected at least 32 bytes (got 5)" in text
    assert "needs AUTH_JWT_SECRET" not in text


def test_an_env_file_that_is_a_directory_is_refused_saying_what_docker_did(tmp_path):
    """Docker makes a directory where a mounted file's host path does not exist: read as no
    file, the gateway started on defaults without a word."""
    from actors.settings import read_env_file
    (tmp_path / ".env").mkdir()
    with pytest.raises(SettingsError, match="is a directory, not a file of NAME=value lines"):
        read_env_file(tmp_path / ".env")


def test_a_variable_is_still_read_as_given_when_the_env_file_cannot_be_read(tmp_path):
    """LOG_FORMAT is read so, to say in its format why the settings are refused: a .env that
    cannot be read must be that reason, not a crash before any log line."""
    from actors.settings import raw_value
    (tmp_path / ".env").mkdir()
    assert raw_value("LOG_FORMAT", {"LOG_FORMAT": "json"}, tmp_path / ".env") == "json"


def test_settings_read_twice_alike_have_no_changed_variable():
    """A SIGHUP that changed nothing must not say that KAFKA_TOPICS (a list) changed."""
    from actors.settings import changed_variables
    assert changed_variables(load(), load()) == []
    assert changed_variables(load(), load(KAFKA_TOPICS="a,b")) == ["KAFKA_TOPICS"]
