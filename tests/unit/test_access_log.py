"""web/access.py: what a request can put into the access log's line."""
import logging

import pytest

from web.access import AccessLog

C1 = [chr(c) for c in range(0x80, 0xA0)]


def _logged(caplog, path: str) -> logging.LogRecord:
    def app(environ, start_response):
        start_response("404 NOT FOUND", [])
        return [b""]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
               "REMOTE_ADDR": "127.0.0.1"}
    with caplog.at_level(logging.INFO, logger="web.access"):
        AccessLog(app, ())(environ, lambda *args: None).close()
    [record] = [r for r in caplog.records if r.name == "web.access"]
    return record


@pytest.mark.parametrize("path", [
    "/x\x9b2J",                       # %9B: CSI, as WSGI hands it over (latin-1)
    "/x\xc2\x9b2J",                   # %C2%9B: CSI in UTF-8, written back as UTF-8
    "/x\x9d0;title\x9c",              # OSC ... ST: a terminal's title
    "/x\x85forged line",              # NEL: a new line to some readers
])
def test_c1_controls_in_the_path_are_escaped_like_c0(caplog, path):
    """gunicorn decodes %9B and the like; on a terminal that takes 8-bit controls they act as
    ESC [ ... does (the C0 ones were escaped already)."""
    record = _logged(caplog, path)
    for text in (record.getMessage(), record.path):
        assert not any(c in text for c in C1), ascii(text)
    assert "\\x9" in record.path or "\\x85" in record.path


def test_latin_1_letters_stay_as_they_are(caplog):
    assert _logged(caplog, "/caf\xc3\xa9").path == "/caf\xc3\xa9"


def test_gunicorn_access_log_escapes_controls_in_headers(tmp_path):
    """Should anyone turn gunicorn's own access log on: header values may hold bytes
    0x80-0xFF (gunicorn refuses only C0 there), so a User-Agent could carry 8-bit CSI."""
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config

    from web.gunicorn_log import RedactingLogger
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("access_log_format", '%(a)s %(f)s %({x-custom}i)s %(U)s')
    log = RedactingLogger(cfg)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/x", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": "/x\x9b2J", "QUERY_STRING": "", "REMOTE_ADDR": "10.0.0.1",
               "HTTP_USER_AGENT": "agent\x9b2J", "HTTP_REFERER": "https://a.example/\x9d0;t\x9c"}
    req = SimpleNamespace(headers=[("X-CUSTOM", "tab\there\x85")])
    log.access(SimpleNamespace(status="200 OK", headers=[], sent=1), req, environ,
               datetime.timedelta(seconds=1))
    for handler in log.access_log.handlers:
        handler.flush()
    line = (tmp_path / "access.log").read_text(encoding="utf-8")
    assert not any(c in line for c in C1), ascii(line)
    assert "agent\\x9b2J" in line and "tab\\there\\x85" in line and "/x\\x9b2J" in line


def test_a_zone_id_never_brings_text_of_its_own_into_the_client_address(caplog):
    """`2001:db8::1%<anything>` is an IPv6 address to Python (a zone id, meaningless off the
    link): forwarded by a trusted proxy it reached the logs' client_address as written."""
    import ipaddress

    from web.address import client_address
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address("10.0.0.2", "2001:db8::1%\x9b2J", proxies) == "2001:db8::1"
    assert client_address("fe80::1%eth0", None, ()) == "fe80::1"

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b""]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "QUERY_STRING": "",
               "REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "2001:db8::1%\x9b2J"}
    with caplog.at_level(logging.INFO, logger="web.access"):
        AccessLog(app, proxies)(environ, lambda *args: None).close()
    [record] = [r for r in caplog.records if r.name == "web.access"]
    assert record.client_address == "2001:db8::1" and record.getMessage().endswith("2001:db8::1")


def test_gunicorn_builds_no_access_line_that_nothing_writes(monkeypatch):
    """LOG_FORMAT=json gives gunicorn a logconfig_dict, which gunicorn takes as an access log
    turned on, though ours keeps its access logger off: every request's line was built (and
    redacted) for nothing."""
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config

    from actors.logs import gunicorn_logconfig
    from web.gunicorn_log import RedactingLogger
    cfg = Config()
    cfg.set("logconfig_dict", gunicorn_logconfig(SimpleNamespace(log_format="json",
                                                                 log_level="INFO")))
    log = RedactingLogger(cfg)
    built: list = []
    monkeypatch.setattr(log, "atoms", lambda *args: built.append(args) or {})
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/events?ticket=abc.def", "PATH_INFO": "/x",
               "QUERY_STRING": "ticket=abc.def", "SERVER_PROTOCOL": "HTTP/1.1"}
    log.access(SimpleNamespace(status="200 OK", headers=[], sent=1), SimpleNamespace(headers=[]),
               environ, datetime.timedelta(seconds=1))
    assert built == []
