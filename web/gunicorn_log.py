"""gunicorn's logger with credentials kept out of its lines (`logger_class` in web/serve.py).

- its access log, should anyone turn it on (`--access-logfile`, GUNICORN_CMD_ARGS): `?ticket=`
  and the like masked in the request line, path, query and referrer, and any token or ticket
  in them; the Authorization and Cookie headers never shown; control characters escaped;
- its error log: "Error handling request /events?ticket=..." and "Invalid request from ip=...:
  Invalid HTTP request line: '...'" name the request with its query, so every text argument
  is redacted the same way;
- "Invalid request from ip=..." comes once per request gunicorn cannot parse, whoever sends it
  and as fast as they like, with up to 8 KB of their request line: at most
  INVALID_LINES_PER_REPORT such lines, shortened, between two of the worker's reports
  (web/worker.py, each minute), which count the others;
- a worker killed (SIGKILL) after its WORKER TIMEOUT is not said to be "perhaps out of
  memory", gunicorn's guess for any SIGKILL.

The master imports this module: gunicorn and pure modules only.
"""
from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from actors.auth.redact import MASK, mask_credentials, redact_query
from actors.logs import CONTROLS, text_handler   # gunicorn decodes %0a, %1b, %9b in a path

# Atoms (`%(r)s`, `%({cookie}i)s`, `%({query_string}e)s` ...) that may hold a credential.
QUERY_ATOMS = ("r", "U", "f", "{raw_uri}e", "{request_uri}e", "{http_referer}e", "{referer}i")
HIDDEN_ATOMS = ("{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e",
                "{proxy-authorization}i", "{http_proxy_authorization}e")
QUERY_STRING_ATOMS = ("q", "{query_string}e")

INVALID_REQUEST = "Invalid request from ip="      # gunicorn's line for a request it cannot parse
# gunicorn's lines for a worker it aborts for its timeout, then kills (SIGKILL): its guess of a
# lack of memory is no guess then
WORKER_TIMEOUT, OUT_OF_MEMORY = "WORKER TIMEOUT (pid:%s)", " Perhaps out of memory?"
TIMEOUTS_KEPT = 64
INVALID_LINES_PER_REPORT = 10
INVALID_LINE_CHARS = 300


def redact_words(text: str) -> str:
    """Any token or ticket masked, and each space-separated word that holds a query has its
    credential values masked."""
    text = mask_credentials(text)
    if "?" not in text:
        return text
    return " ".join(redact_query(word) for word in text.split(" "))


def _clean(args: tuple) -> tuple:
    return tuple(redact_words(arg) if isinstance(arg, str) else arg for arg in args)


def _shorten(text: str) -> str:
    if len(text) <= INVALID_LINE_CHARS:
        return text
    return f"{text[:INVALID_LINE_CHARS]}... ({len(text)} characters)"


class RedactingLogger(Logger):
    unlogged = 0            # invalid requests not logged since the last report
    logged = 0              # and those logged
    timed_out: tuple = ()   # pids of the latest workers gunicorn aborted for their timeout

    def setup(self, cfg):
        """gunicorn's setup, which a SIGHUP runs again. Without `logconfig_dict` (LOG_FORMAT
        text) the JSON root handler and the propagation an earlier LOG_FORMAT=json set up are
        undone: else each line went out twice, as text and as JSON."""
        super().setup(cfg)
        if not cfg.logconfig_dict:
            self.error_log.propagate = False
            root = logging.getLogger()
            root.handlers[:] = [h for h in root.handlers
                                if type(h.formatter).__name__ != "JsonFormatter"]
            if not root.handlers:       # the master's module loggers: as a worker's lines
                root.addHandler(text_handler())
            root.setLevel(self.error_log.level)     # a SIGHUP may change LOG_LEVEL

    def report_unlogged(self) -> None:
        """The worker's report: how many invalid requests went unlogged since the last one;
        the next ones are logged again."""
        if self.unlogged:
            super().warning("%d more invalid requests since the last report, not logged (at "
                            "most %d are each minute)", self.unlogged, INVALID_LINES_PER_REPORT)
        self.unlogged = self.logged = 0

    def access(self, resp, req, environ, request_time):
        """gunicorn's access line, built only when its logger would write it: gunicorn takes
        our own `logconfig_dict` (LOG_FORMAT=json), whose access logger is off, for an access
        log, and built and redacted every request's line for nothing."""
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in QUERY_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact_words(atoms[name])
        for name in QUERY_STRING_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact_query("?" + atoms[name])[1:]
        for name in HIDDEN_ATOMS:
            if atoms.get(name):
                atoms[name] = MASK
        for name, value in atoms.items():
            if isinstance(value, str):
                atoms[name] = value.translate(CONTROLS)
        return atoms

    def critical(self, msg, *args, **kwargs):
        if msg == WORKER_TIMEOUT and args:
            self.timed_out = (*self.timed_out[-(TIMEOUTS_KEPT - 1):], args[0])
        super().critical(*_clean((msg, *args)), **kwargs)

    def error(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.endswith(OUT_OF_MEMORY) and args \
                and args[0] in self.timed_out:
            msg = (msg[:-len(OUT_OF_MEMORY)] + f" It did not answer gunicorn for "
                   f"{self.cfg.timeout} s (the WORKER TIMEOUT above: hung, or its hub held), "
                   f"no lack of memory")
        super().error(*_clean((msg, *args)), **kwargs)

    def warning(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith(INVALID_REQUEST):
            if self.logged >= INVALID_LINES_PER_REPORT:
                self.unlogged += 1
                return
            self.logged += 1
            msg, *args = _clean((msg, *args))
            super().warning(_shorten(msg), *args, **kwargs)     # masked, then cut
            return
        super().warning(*_clean((msg, *args)), **kwargs)

    def info(self, msg, *args, **kwargs):
        super().info(*_clean((msg, *args)), **kwargs)

    def debug(self, msg, *args, **kwargs):
        if self.error_log.isEnabledFor(logging.DEBUG):   # twice per request: skip when off
            super().debug(*_clean((msg, *args)), **kwargs)

    def exception(self, msg, *args, **kwargs):
        super().exception(*_clean((msg, *args)), **kwargs)

    def log(self, lvl, msg, *args, **kwargs):
        super().log(lvl, *_clean((msg, *args)), **kwargs)
