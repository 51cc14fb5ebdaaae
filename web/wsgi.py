"""The WSGI entry point gunicorn loads (`web.wsgi:app`); the actors start in post_worker_init."""
from web import create_app

app = create_app()
