"""Logging set-up: one switch between text and JSON lines (LOG_FORMAT), one level (LOG_LEVEL)."""
from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # kafka-python logs every failed reconnect at ERROR; our consumer reports Kafka's state
    # changes once each, so its own lines are kept for LOG_LEVEL=DEBUG.
    quiet = root.level if root.level <= logging.DEBUG else logging.CRITICAL
    logging.getLogger("kafka").setLevel(quiet)
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))
