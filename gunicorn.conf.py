# gunicorn settings for the gateway: `gunicorn -c gunicorn.conf.py`.
# They live in the package (web/serve.py), so this file and the `kafka-sse-gateway` command
# run the same code. The master is not patched by gevent: nothing at this level may import
# kafka, pykka, grpc or the app.
from actors.logs import error_line
from actors.settings import SettingsError, raw_value
from web.serve import gunicorn_config

try:
    globals().update(gunicorn_config())
except SettingsError as _exc:
    raise SystemExit(error_line("kafka-sse-gateway", str(_exc), raw_value("LOG_FORMAT"))) from None
