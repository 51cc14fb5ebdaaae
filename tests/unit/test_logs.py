"""actors/logs.py and web/access.py, without a server: JSON fields, gunicorn's dictConfig,
query secrets redacted."""
import io
import json
import logging
import logging.config
import os

from actors.logs import JsonFormatter, gunicorn_logconfig
from actors.settings import Settings
from web.access import redact


def _line(logger_name="t", **extra):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("client %s left", "c1", extra=extra)
    return json.loads(stream.getvalue())


def test_json_lines_carry_the_extra_fields_as_keys():
    entry = _line(client_id="c1", client_address="203.0.113.7", events_sent=3, reason="bye")
    assert entry["message"] == "client c1 left" and entry["level"] == "warning"
    assert entry["logger"] == "t" and entry["time"].endswith("Z")
    assert (entry["client_id"], entry["client_address"], entry["events_sent"], entry["reason"]) == (
        "c1", "203.0.113.7", 3, "bye")
    assert "args" not in entry and "msecs" not in entry


def test_a_value_json_cannot_hold_is_written_as_text():
    assert _line(filter=frozenset({"a"}))["filter"] == "frozenset({'a'})"


def test_gunicorn_logconfig_routes_gunicorn_lines_to_json():
    config = gunicorn_logconfig(Settings.defaults(log_format="json"))
    stream = io.StringIO()
    config["handlers"]["stderr"]["stream"] = stream
    root_before = logging.getLogger().handlers[:]
    try:
        logging.config.dictConfig(config)
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 42)
    finally:
        logging.getLogger().handlers[:] = root_before
    entry = json.loads(stream.getvalue())
    assert entry["logger"] == "gunicorn.error" and entry["message"] == "Booting worker with pid: 42"
    assert gunicorn_logconfig(Settings.defaults(log_format="text")) == {}


def test_query_secrets_are_redacted():
    assert redact("ticket=abc&x=1") == "ticket=REDACTED&x=1"
    assert redact("x=1&TOKEN=abc&access_token=d%20e") == "x=1&TOKEN=REDACTED&access_token=REDACTED"
    assert redact("mytoken=abc&tokens=1") == "mytoken=abc&tokens=1"


def _debug_lines_of_a_sasl_login(log_format: str, capsys) -> str:
    """What kafka-python logs at DEBUG while it logs in with SASL PLAIN, through logs.configure."""
    from kafka.protocol.parser import KafkaProtocol
    from kafka.protocol.sasl import SaslAuthenticateRequest

    from actors import logs
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    saved = root.handlers[:], root.level, kafka.level
    try:
        logs.configure(Settings.defaults(log_level="DEBUG", log_format=log_format))
        request = SaslAuthenticateRequest(version=2, auth_bytes=b"alice\x00alice\x00s3cr'et\"pw")
        logging.getLogger("kafka.net.connection").debug("%s Request %d: %s", "conn", 3, request)
        protocol = KafkaProtocol(client_id="gw-live")
        protocol.send_request(request)
        protocol.send_bytes()
        logging.getLogger("kafka.protocol.parser").debug("%s Recv: %r", "", b"\x05s3cr'et")
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        kafka.setLevel(saved[2])
    return capsys.readouterr().err


def test_debug_logs_never_show_a_sasl_password(capsys):
    for log_format in ("text", "json"):
        err = _debug_lines_of_a_sasl_login(log_format, capsys)
        assert "SaslAuthenticateRequest" in err and "Send:" in err   # still traced at DEBUG
        assert "s3cr" not in err, err


def test_the_kafka_filter_lets_a_malformed_log_call_through_to_the_handler():
    from actors.logs import KafkaSecretsFilter
    record = logging.LogRecord("kafka.net.connection", logging.DEBUG, __file__, 1,
                               "%s and %s", ("one",), None)
    assert KafkaSecretsFilter().filter(record) is True


def test_every_line_names_the_worker_process_that_wrote_it(capsys):
    """With WORKERS=2 both workers write the same lines (`kafka connecting -> connected`, a
    client's connect and disconnect): the pid tells them apart, as in gunicorn's own lines."""
    from actors import logs
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for log_format in ("text", "json"):
            logs.configure(Settings.defaults(log_format=log_format))
            logging.getLogger("actors.broker").info("kafka %s -> %s", "connecting", "connected")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text, entry = capsys.readouterr().err.splitlines()
    assert f"[{os.getpid()}] INFO" in text and text.endswith(
        "actors.broker: kafka connecting -> connected"), text
    assert json.loads(entry)["pid"] == os.getpid()


def test_a_text_line_says_its_time_zone_as_gunicorn_s_own_lines_do(capsys, monkeypatch):
    """Text lines were stamped in local time with no zone: read beside gunicorn's own lines
    (`[... +0100]`) or another host's, an hour off looked like the truth."""
    import time

    from actors import logs
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(Settings.defaults(log_format="text"))
        record = logging.makeLogRecord({"name": "actors.broker", "levelno": logging.INFO,
                                        "levelname": "INFO", "msg": "hello",
                                        "created": 1_780_000_000.25, "msecs": 250.0})
        line = root.handlers[0].format(record)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        monkeypatch.delenv("TZ")
        time.tzset()
    assert line.startswith("2026-05-28 22:26:40,250 +0200 ["), line


def test_a_text_line_cannot_be_split_or_steer_a_terminal(capsys):
    """A key server's HTTP reason (`500 \\x1b[31mFAKE`) reached the text log raw: ESC coloured
    or rewrote what the operator read, and CR/LF forged lines. Controls are now written as
    \\xNN; a traceback keeps its lines, and its controls are escaped too."""
    from actors import logs
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(Settings.defaults(log_format="text"))
        log = logging.getLogger("actors.auth.authenticator")
        log.warning("JWKS fetch failed (%s)", "HTTP Error 500: \x1b[31mFAKE\x1b[0m\r\nINFO x \x9b")
        try:
            raise ValueError("boom \x1b[2J\u2028fake line")
        except ValueError:
            log.exception("with its traceback")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(
        "JWKS fetch failed (HTTP Error 500: \\x1b[31mFAKE\\x1b[0m\\r\\nINFO x \\x9b)"), lines[0]
    assert lines[1].endswith("with its traceback") and lines[2].startswith("Traceback"), lines
    assert lines[-1] == "ValueError: boom \\x1b[2J\\u2028fake line", lines[-1]


def test_a_json_line_escapes_del_c1_and_line_separators_too():
    """json.dumps(ensure_ascii=False) escapes C0 only: DEL, C1 (8-bit CSI) and U+2028/9 went
    out raw, to a terminal tailing the log or a tool splitting it on line breaks."""
    entry = _line(bad="a\x7fb\x9bc\u2028d\u2029e")
    assert entry["bad"] == "a\x7fb\x9bc\u2028d\u2029e"          # the same text, read back
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("t.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("x \x9b y \u2028 z é")
    raw = stream.getvalue()
    assert not any(c in raw for c in "\x7f\x9b\u2028\u2029"), repr(raw)
    assert "\\u009b" in raw and "\\u2028" in raw and "é" in raw


def test_a_budgets_dropped_lines_are_counted_once_the_flood_stops(caplog):
    """125 invalid records skipped, and the log accounted for 101: the count of dropped lines
    waited for a next line, which never came once the flood stopped (a log audit)."""
    from actors.logs import LogBudget, report_unlogged
    said = []
    budget = LogBudget(1, 60.0, unlogged=said.append)
    taken = [budget.take(0.0) for _ in range(25)]
    assert taken[0] == 0 and taken[1:] == [None] * 24
    report_unlogged()               # still coming, as far as it knows: not yet
    assert said == []
    report_unlogged()               # none since the last report: said, once
    report_unlogged()
    assert said == [24]
    assert budget.take(61.0) == 0   # the next line does not count them again
