"""The `.env` reader (actors/settings/dotenv.py): a value is taken as written, one pair of
quotes around it removed; never a character of the value itself (a secret may end in a
quote)."""
import pytest

from actors.settings import Settings, env_file_warnings, read_env_file


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


@pytest.mark.parametrize("line", ["export\tLOG_LEVEL=DEBUG", "export \t LOG_LEVEL=DEBUG"])
def test_export_and_a_tab_is_an_export_too(tmp_path, line):
    """`export<TAB>NAME=value` was read as a variable named "export\\tNAME", ignored without a
    word (the configuration audit)."""
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    assert read_env_file(env) == {"LOG_LEVEL": "DEBUG"}


def test_a_name_that_is_no_variable_name_is_warned_of(tmp_path):
    env = tmp_path / ".env"
    env.write_text("HTTP PORT=9000\nexported_LOG_LEVEL=DEBUG\nLOG_LEVEL=DEBUG\n")
    [warned] = env_file_warnings(env)
    assert "line 1" in warned and "'HTTP' is followed by a space" in warned and "ignored" in warned


def test_a_variable_set_twice_in_the_file_is_warned_of_with_both_lines(tmp_path):
    """The last line won, silently: a WORKERS=3 followed further down by WORKERS=1 took an
    instance to one worker on the next SIGHUP (the configuration audit)."""
    env = tmp_path / ".env"
    env.write_text("WORKERS=37\nLOG_LEVEL=INFO\n\nexport WORKERS=29\n")
    assert read_env_file(env)["WORKERS"] == "29"
    [warned] = env_file_warnings(env)
    assert "WORKERS" in warned and "lines 1 and 4" in warned and "line 4 is taken" in warned
    shown = warned.replace(str(env), "")
    assert "37" not in shown and "29" not in shown      # values are never shown


@pytest.mark.parametrize("line, named", [
    ("AUTH_TICKET_SECRET Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eHh4eHh4eHh4eHg=",     # `=` of base64
     "'AUTH_TICKET_SECRET' is followed by a space"),
    ("KAFKA_SASL_PASSWORD\tS3cretPassword=", "'KAFKA_SASL_PASSWORD' is followed by a tab"),
    ("GRPC_AUTH_TOKEN:0123456789abcdef0123=", "no variable name before its `=`"),
])
def test_a_line_whose_name_runs_into_its_value_shows_nothing_of_the_value(tmp_path, line,
                                                                          named):
    """A `.env` line missing its `=` after a secret's name, but with one in the secret: the
    name the reader saw ran up to that `=`, and both the .env warning and the unknown-variable
    warning printed it, with the secret."""
    from actors.settings.warnings import unknown_variables
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    secret = line.split(":")[-1].split()[-1].rstrip("=")
    said = env_file_warnings(env) + unknown_variables(environ={}, env_file=env)
    assert said and not any(secret[:8] in warning for warning in said), said
    assert read_env_file(env) == {}
    assert any(named in warning and "the line is ignored" in warning for warning in said), said


@pytest.mark.parametrize("line, said", [
    ("HTTP-PORT=9000", "'HTTP-PORT' is not a variable name"),
    ("1PASSWORD=x", "'1PASSWORD' is not a variable name (letters, digits and _, not "),
    ("VGhpc0lzQVNlY3JldFRoYXRXcmFwcGVk+Zm9v/YmFy==", "no variable name before its `=`"),
])
def test_a_mistyped_name_is_shown_and_a_stray_half_of_a_secret_is_not(tmp_path, line, said):
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    [warned] = env_file_warnings(env)
    assert said in warned and "VGhpc0lz" not in warned, warned
