"""Hostile values a configuration audit set one variable at a time: each is refused in one
line naming the variable and what to do (never a traceback, a hang or a secret shown), or
taken as the README says."""
import os
import threading

import pytest

from tests.unit.test_settings import load, pki, problems  # noqa: F401 - pki: a fixture


def refused_in_time(**environ) -> str:
    """`problems`, in a thread given 5 s: a start that hangs on a file is a finding too."""
    said: list = []
    runner = threading.Thread(target=lambda: said.append(problems(**environ)), daemon=True)
    runner.start()
    runner.join(5)
    assert said, f"{environ}: still reading after 5 s (a hang)"
    return said[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


# -- files: regular ones, of a sane size -------------------------------------------------------

@pytest.mark.parametrize("environ", [
    {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{f}"},
    {"GRPC_AUTH_TOKEN_FILE": "{f}"},
    {"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "RS256", "AUTH_JWT_PUBLIC_KEY_FILE": "{f}"},
])
def test_a_named_pipe_given_as_a_file_is_refused_not_waited_on(fifo, environ):
    """Opening a FIFO waits for a writer: the start (or a SIGHUP in the master) hung for ever."""
    name = next(key for key, value in environ.items() if value == "{f}")
    text = refused_in_time(**{key: value.format(f=fifo) for key, value in environ.items()})
    assert f"{name}='{fifo}': cannot read the file (a named pipe, not a regular file)" in text, text


@pytest.mark.parametrize("name, extra", [
    ("GRPC_AUTH_TOKEN_FILE", {}),
    ("KAFKA_SSL_CERT_FILE", {"KAFKA_SECURITY_PROTOCOL": "SSL"}),
    ("GRPC_TLS_CERT_FILE", {"GRPC_TLS_KEY_FILE": "/dev/zero"}),
])
def test_a_device_given_as_a_file_is_refused_not_read_whole(name, extra):
    """/dev/zero was read to the end of memory: a MemoryError traceback after 1.5 GB."""
    text = refused_in_time(**{name: "/dev/zero", **extra})
    assert f"{name}='/dev/zero': cannot read the file (a device, not a regular" in text, text


def test_a_file_larger_than_any_key_or_secret_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.pem"
    with open(big, "wb") as file:
        file.truncate(2 << 20)
    text = problems(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=str(big),
                    GRPC_AUTH_TOKEN_FILE=str(big))
    for name in ("KAFKA_SSL_CA_FILE", "GRPC_AUTH_TOKEN_FILE"):
        assert f"{name}='{big}': cannot read the file (2048 KiB, more than any key" in text, text
    with open(big, "r+b") as file:
        file.truncate((1 << 20) + 1)
    assert "(1025 KiB, more than" in problems(GRPC_AUTH_TOKEN_FILE=str(big))
    with open(big, "r+b") as file:
        file.truncate(1 << 20)
    assert "KiB" not in problems(GRPC_AUTH_TOKEN_FILE=str(big))    # its content, not its size


def test_a_path_with_a_nul_character_is_refused_in_one_line(tmp_path):
    text = problems(GRPC_AUTH_TOKEN_FILE=f"{tmp_path}/a\0b", KAFKA_SECURITY_PROTOCOL="SSL",
                    KAFKA_SSL_CA_FILE=f"{tmp_path}/c\0d")
    assert text.count("not a path: it holds a NUL character") == 2, text


def test_an_empty_oauth_token_file_is_refused_at_the_start(tmp_path):
    """Accepted, then every authentication with Kafka failed with 'no token'."""
    (tmp_path / "token").write_text("\n")
    text = problems(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="OAUTHBEARER",
                    KAFKA_SASL_OAUTH_TOKEN_FILE=str(tmp_path / "token"))
    assert f"KAFKA_SASL_OAUTH_TOKEN_FILE='{tmp_path / 'token'}': the file is empty" in text
    (tmp_path / "token").write_bytes(b"\xfftoken\n")     # read as UTF-8 at every login
    text = problems(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="OAUTHBEARER",
                    KAFKA_SASL_OAUTH_TOKEN_FILE=str(tmp_path / "token"))
    assert "cannot read the file (not UTF-8 text)" in text, text


def test_a_private_key_given_as_the_jwt_public_key_is_refused(pki):  # noqa: F811
    """The gateway would hold the issuer's signing key: whoever reads it makes tokens."""
    text = problems(AUTH_MODE="required", AUTH_JWT_ALGORITHMS="RS256",
                    AUTH_JWT_PUBLIC_KEY_FILE=pki["key"])
    assert "holds a private key" in text and "-pubout" in text, text


def test_a_secret_from_a_file_that_fails_to_parse_names_the_file_not_the_variable(tmp_path):
    (tmp_path / "token").write_text("has a space in it, sixteen+ chars")
    text = problems(GRPC_AUTH_TOKEN_FILE=str(tmp_path / "token"))
    assert f"GRPC_AUTH_TOKEN_FILE='{tmp_path / 'token'}': its content: expected printable" \
           in text, text
    assert "sixteen" not in text


def test_a_grpc_token_too_long_for_grpc_metadata_is_refused():
    """gRPC refuses metadata over 16 KB: every call with the right token was refused."""
    text = problems(GRPC_AUTH_TOKEN="t" * 20_000)
    assert "GRPC_AUTH_TOKEN=<hidden>: at most 4096 characters" in text, text
    assert load(GRPC_AUTH_TOKEN="t" * 4096).grpc_auth_token == "t" * 4096


# -- listen addresses --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["HTTP_HOST", "ADMIN_HOST", "GRPC_HOST"])
@pytest.mark.parametrize("host, said", [
    ("\u200b", "ASCII"),                      # gunicorn's bind: a TypeError traceback
    ("caf\u00e9.example", "ASCII"),
    ("127.1", "write the address in full"),   # Python binds it, gRPC does not
    ("0", "write the address in full"),
    ("2130706433", "write the address in full"),
    ("[::1", "brackets"),                     # gunicorn: "'' is not a valid port number"
    ("::1]", "brackets"),
    ("[127.0.0.1]", "brackets"),
    ("a b", "one address"),
    ("010.0.0.1", "write the address in full"),      # octal to inet_aton
    ("h" * 300, "longer than any host name"),
])
def test_a_listen_host_python_or_grpc_would_misread_is_refused(name, host, said):
    text = problems(**{name: host})
    assert text.startswith(f"invalid configuration: {name}=") and said in text, text


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "[::1]", "localhost",
                                  "gateway-1.internal", "fe80::1%eth0", "0xcafe.be",
                                  "0xbad.cafe", "1.2.3.4.nip.io", "123456789012"])
def test_listen_hosts_written_in_full_are_taken(host):
    assert load(HTTP_HOST=host).http_host == host


# -- what a refusal shows ----------------------------------------------------------------------

@pytest.mark.parametrize("name, value, said", [
    ("KAFKA_BROKERS", "https://alice:S3cretPW@kafka:9092", "without a scheme"),
    ("KAFKA_BROKERS", "alice:S3cretPW@kafka:9092", "no user or password"),
    ("KAFKA_BROKERS", "k1:9092,alice:Zm9v+S3cretPW/YmF6==@kafka:9092", "no user or password"),
    ("KAFKA_BROKERS", "https://alice:pa/S3cretPW@kafka:9092", "without a scheme"),
    ("CORS_ALLOWED_ORIGINS", "https://alice:S3cretPW@app.example.com", "never holds a user"),
    ("CORS_ALLOWED_ORIGINS", "https://alice:p#S3cretPW@app.example.com", "not an origin"),
    ("AUTH_JWKS_URL", "https://alice:pa/S3cretPW@keys.example.com/jwks", "expected an http"),
    ("AUTH_JWKS_URL", "https://alice:S3cretPW@keys.example.com/jwks", "without a user"),
    ("TRUSTED_PROXIES", "10.0.0.0/8,alice:S3cretPW@x", "not a network"),
])
def test_a_password_in_a_list_entry_is_never_shown_and_the_diagnosis_is_right(name, value, said):
    text = problems(**{name: value})
    assert "S3cretPW" not in text and "alice" not in text and said in text, text


def test_a_path_is_shown_whole_an_at_sign_in_it_is_no_credential():
    """systemd keeps a template unit's credentials in /run/credentials/<unit>@<instance>..."""
    path = "/run/credentials/gateway@blue.service/grpc_token"
    for name in ("GRPC_AUTH_TOKEN_FILE", "GRPC_TLS_CERT_FILE"):
        assert f"{name}='{path}': cannot read the file" in problems(**{name: path})


@pytest.mark.parametrize("name, value", [
    ("KAFKA_BROKERS", "x" * 10_240),
    ("HTTP_HOST", "h" * 10_240),
    ("CORS_ALLOWED_ORIGINS", "https://" + "o" * 10_240 + "/path"),
    ("KAFKA_TOPICS", "t*" * 5_000),
    ("GRPC_TLS_CERT_FILE", "p" * 10_240),
    ("TRUSTED_PROXIES", "z" * 10_240),
    ("AUTH_JWT_ALGORITHMS", "A" * 10_240),
])
def test_a_very_long_value_is_shown_shortened_in_its_error(name, value):
    text = problems(**{name: value})
    assert len(text) < 1_500, f"{len(text)} characters: {text[:300]}"


@pytest.mark.parametrize("name", ["SSE_HEARTBEAT_SECONDS", "HTTP_PORT"])
def test_a_number_of_thousands_of_digits_gets_the_usual_message(name):
    text = problems(**{name: "9" * 5_000})
    assert "expected a whole number between" in text and "set_int_max_str_digits" not in text


@pytest.mark.parametrize("name", ["CORS_ALLOWED_ORIGINS", "AUTH_JWKS_URL"])
def test_a_url_python_cannot_split_gets_the_usual_message(name):
    text = problems(**{name: "http://[::1"})
    assert "Invalid IPv6 URL" not in text, text
    assert text.startswith(f"invalid configuration: {name}='http://[::1': ") and (
        "expected an http" in text or "scheme://host[:port]" in text), text


@pytest.mark.parametrize("retry, warned", [("0", True), ("499", True), ("500", False),
                                           ("3000", False)])
def test_a_retry_too_short_to_spread_reconnects_is_warned_of(retry, warned):
    """SSE_RETRY_MS=0 was taken silently: every stream opened with `retry: 0` (a quarter of 0
    adds no jitter), so dropped clients came back at once, as one wave."""
    from actors.settings.warnings import settings_warnings
    said = [line for line in settings_warnings(load(SSE_RETRY_MS=retry))
            if line.startswith("SSE_RETRY_MS=")]
    assert bool(said) is warned, said
