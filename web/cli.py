"""`kafka-sse-gateway`: run the gateway under gunicorn with its own configuration.

Configured by the environment and a `.env` file in the working directory, like
`gunicorn -c gunicorn.conf.py`: both apply web/serve.py's settings and hooks.
Exit status: 0, or 2 for a configuration error (one line on stderr saying what to fix), or 1
when --check-config cannot write its output.
"""
from __future__ import annotations

import argparse
import os
import sys

from gunicorn.app.base import BaseApplication

from actors.settings import Settings, SettingsError
from actors.settings.warnings import auth_warnings, master_warnings
from web.serve import refusal

PROG = "kafka-sse-gateway"


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed(PROG)
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Stream JSON events from Kafka topics to browsers over "
        "Server-Sent Events. Configured by environment variables and ./.env (see the README's "
        "Configuration); runs WORKERS gunicorn workers (default: one per CPU) as one "
        "instance, and serves HTTP on HTTP_HOST:HTTP_PORT, the gRPC management API on "
        "GRPC_HOST:GRPC_PORT and, when ADMIN_PORT is set, /metrics, /stats, /livez, "
        "/readyz and /health on ADMIN_HOST:ADMIN_PORT.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    parser.add_argument("--check-config", action="store_true",
                        help="print the effective configuration (secrets masked) and exit: "
                             "0 when valid, 2 with the error when not")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(refusal(PROG, exc), file=sys.stderr)
        return 2
    if args.check_config:
        auth = auth_warnings(settings) if settings.auth_mode != "off" else []   # a worker's
        for warning in [*master_warnings(settings), *auth]:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        try:
            print(settings.describe(), flush=True)
        except BrokenPipeError:     # `| head`: the reader has what it wanted; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError as exc:      # a full disk, /dev/full
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print(f"{PROG}: cannot write the configuration: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    GunicornRunner(settings).run()
    return 0


class GunicornRunner(BaseApplication):
    """gunicorn with web/serve.py's settings and hooks; reads no gunicorn flags or config file."""

    def __init__(self, settings: Settings):
        self.settings: Settings | None = settings
        super().__init__(usage=None, prog=PROG)

    def load_config(self):
        from web.serve import gunicorn_config
        settings, self.settings = self.settings, None     # a SIGHUP reads them again
        for key, value in gunicorn_config(settings).items():
            self.cfg.set(key, value)

    def load(self):
        from web.wsgi import app   # in the worker, after gevent has patched it
        return app


if __name__ == "__main__":
    sys.exit(main())
