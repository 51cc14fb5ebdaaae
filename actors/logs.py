"""Logging set-up: one switch between text and JSON lines (LOG_FORMAT), one level (LOG_LEVEL).

With LOG_FORMAT=json every line is one JSON object: time, level, logger, message, pid, plus the
fields a call passes with `extra={...}` (client_id, client_address, filter, reason,
events_sent, ...) as keys of their own. `gunicorn_logconfig(settings)` gives gunicorn's
`logconfig_dict`, so its own lines are JSON too. This module imports only the standard
library: gunicorn.conf.py calls it in the (unpatched) master.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import weakref
from collections.abc import Callable


class LogBudget:
    """At most `lines` log lines each `interval_s` for one kind of line that anyone may cause
    as often as they like. take(now) is None for a line to drop (it is counted), else how many
    were dropped before it (`more_since` words it). With `unlogged`, a count that stops
    growing is not left for a next line that may never come: report_unlogged() hands it
    there."""

    def __init__(self, lines: int, interval_s: float,
                 unlogged: Callable[[int], None] | None = None):
        self.lines, self.interval_s = lines, interval_s
        self.started = float("-inf")
        self.used = self.dropped = 0
        self.unlogged, self.last_seen = unlogged, 0
        if unlogged is not None:
            _REPORTED.add(self)

    def take(self, now: float, always: bool = False) -> int | None:
        """`always`: a line that must be logged (a new kind of fault) takes its place too."""
        if now - self.started >= self.interval_s:
            self.started, self.used = now, 0
        if self.used >= self.lines and not always:
            self.dropped += 1
            return None
        self.used += 1
        dropped, self.dropped = self.dropped, 0
        return dropped


_REPORTED: weakref.WeakSet = weakref.WeakSet()     # budgets with an `unlogged`


def report_unlogged() -> None:
    """Call now and then (a worker: every minute): each budget whose dropped lines stopped
    coming since the last call says how many there were."""
    for budget in list(_REPORTED):
        if budget.dropped and budget.dropped == budget.last_seen:
            dropped, budget.dropped = budget.dropped, 0
            budget.unlogged(dropped)
        budget.last_seen = budget.dropped


def more_since(dropped: int) -> str:
    """The tail of a LogBudget's line: how many like it were not logged."""
    return f" (+{dropped} more since the last report)" if dropped else ""


# What every LogRecord carries; anything else on a record came in through `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# The process id, as in gunicorn's own lines: each worker writes the same kinds of line.
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)-7s %(name)s: %(message)s"


# C0, DEL and C1 (8-bit ESC [ on some terminals) written as \xNN: text that came from outside
# (a request's path, a key server's answer) stays on its line and cannot steer the terminal
# of whoever reads the log.
CONTROLS = ({c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}
            | {9: "\\t", 10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})
_TRACEBACK = {c: escaped for c, escaped in CONTROLS.items() if c != 10}   # its lines kept
_ANY_CONTROL = re.compile("[" + "".join(map(chr, CONTROLS)) + "]")   # the rare line to escape
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(127, 160), 0x2028, 0x2029)}


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, its time local with the zone's offset, as gunicorn's own lines give it;
    the message on one line, its controls escaped (CONTROLS), a traceback below it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message.rstrip("\n")
        record.message = message.translate(CONTROLS) if _ANY_CONTROL.search(message) else message
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return super().formatException(ei).translate(_TRACEBACK)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = self.converter(record.created)
        return (time.strftime("%Y-%m-%d %H:%M:%S", moment)
                + f",{int(record.msecs):03d} " + time.strftime("%z", moment))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # json escapes C0 only: DEL, C1 and the line separators as \\uNNNN too
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return line if line.isascii() else line.translate(_JSON_ESCAPES)


# kafka-python at DEBUG traces every request and the raw bytes on the wire: a SASL PLAIN
# password and an OAUTHBEARER token are in its SaslAuthenticate request and in those bytes.
_AUTH_BYTES = re.compile(r"""auth_bytes=b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_WIRE_DUMPS = ("%s Send: %r", "%s Recv: %r")


class KafkaSecretsFilter(logging.Filter):
    """Keeps kafka-python's DEBUG lines, without the secrets: raw wire dumps are shown as
    their length, and `auth_bytes` of the SASL exchange as <redacted>."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka.") or record.levelno > logging.DEBUG:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg in _WIRE_DUMPS and len(args) == 2 \
                and isinstance(args[1], (bytes, bytearray, memoryview)):
            record.msg = record.msg.replace("%r", "<%d bytes>")
            record.args = (args[0], len(args[1]))
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call is the handler's to report
            return True
        if "auth_bytes=" in message:
            record.msg, record.args = _AUTH_BYTES.sub("auth_bytes=<redacted>", message), ()
        return True


def error_line(program: str, message: str, log_format: str, level: int = logging.ERROR) -> str:
    """A refusal (or a warning beside it) at start-up, before logging is set up, as LOG_FORMAT
    asks (its raw value: the settings that failed may include it)."""
    name = logging.getLevelName(level)
    if log_format.strip().lower() != "json":        # as a command line tool says it
        return f"{program}: {name.lower()}: {message}"
    return JsonFormatter().format(logging.makeLogRecord(
        {"name": program, "levelname": name, "levelno": level, "msg": message}))


def text_handler() -> logging.Handler:
    """stderr in TEXT_FORMAT, Kafka's secrets kept out."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    handler.addFilter(KafkaSecretsFilter())
    return handler


def configure(settings) -> None:
    handler: logging.Handler
    if settings.log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(KafkaSecretsFilter())
    else:
        handler = text_handler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)     # warnings become log lines (JSON too), not raw stderr
    # kafka-python logs every failed reconnect at ERROR; our consumer reports Kafka's state
    # changes once each, so its own lines are kept for LOG_LEVEL=DEBUG.
    quiet = root.level if root.level <= logging.DEBUG else logging.CRITICAL
    logging.getLogger("kafka").setLevel(quiet)
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))


def gunicorn_logconfig(settings) -> dict:
    """gunicorn's `logconfig_dict`: with LOG_FORMAT=json its own lines (master and worker)
    go through JsonFormatter on stderr; its access log stays off (ACCESS_LOG gives ours).
    Empty for text: gunicorn keeps its usual format."""
    if settings.log_format != "json":
        return {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"},
                     "null": {"class": "logging.NullHandler"}},
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": settings.log_level, "handlers": [], "propagate": True},
            # gunicorn turns its access log on whenever logconfig_dict is set: keep it off
            # (it would print query strings unredacted); ACCESS_LOG=true gives ours.
            "gunicorn.access": {"level": "CRITICAL", "handlers": ["null"], "propagate": False},
        },
    }
