"""actors/settings.py's `.env` reader: a value is taken as written, one pair of quotes around
it removed; never a character of the value itself (a secret may end in a quote)."""
import pytest

from actors.settings import Settings, read_env_file


@pytest.mark.parametrize("line, value", [
    ("KAFKA_SASL_PASSWORD=pa'ss'", "pa'ss'"),           # quotes of the value: kept
    ("KAFKA_SASL_PASSWORD=secret\"", 'secret"'),
    ("KAFKA_SASL_PASSWORD='secret\"'", 'secret"'),      # one pair removed, the inner kept
    ("KAFKA_SASL_PASSWORD=\"'quoted'\"", "'quoted'"),
    ("KAFKA_SASL_PASSWORD=\"it's\"", "it's"),
    ("KAFKA_SASL_PASSWORD='  spaced  '", "  spaced  "),
    ("KAFKA_SASL_PASSWORD=\"", '"'),
    ("export KAFKA_SASL_PASSWORD = plain ", "plain"),
])
def test_only_a_pair_of_quotes_around_the_value_is_removed(tmp_path, line, value):
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    assert read_env_file(env) == {"KAFKA_SASL_PASSWORD": value}


def test_a_password_ending_in_a_quote_reaches_the_settings_whole(tmp_path):
    env = tmp_path / ".env"
    env.write_text("KAFKA_SASL_PASSWORD='pa\"ss\"'\n")
    settings = Settings.from_env(environ={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                          "KAFKA_SASL_USERNAME": "alice"}, env_file=env)
    assert settings.kafka_sasl_password == 'pa"ss"'


def test_a_byte_order_mark_does_not_hide_the_first_variable(tmp_path):
    """Notepad and other editors start a UTF-8 file with U+FEFF: the first name then read
    \\ufeffHTTP_PORT, was ignored and no warning named it."""
    env = tmp_path / ".env"
    env.write_bytes(b"\xef\xbb\xbfHTTP_PORT=9000\r\nLOG_LEVEL=debug\r\n")
    settings = Settings.from_env(environ={}, env_file=env)
    assert (settings.http_port, settings.log_level) == (9000, "DEBUG")
