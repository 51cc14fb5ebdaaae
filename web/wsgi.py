"""The WSGI entry point gunicorn loads (`web.wsgi:app`); the actors start in post_worker_init.

Served without the gateway's gunicorn hooks (web/serve.py) nothing would ever start the actors
and every answer would be 503: refuse to load instead, saying how to start it.
"""
from gunicorn.errors import AppImportError

from actors.settings import HOW_TO_START
from web import create_app
from web.serve import hooks_applied, worker_settings

if not hooks_applied():
    raise AppImportError("kafka-sse-gateway: web.wsgi:app needs the actor system that the "
                         f"gateway's gunicorn hooks start; {HOW_TO_START}")

app = create_app(worker_settings())   # the master's: never .env read again here
