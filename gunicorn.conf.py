# gunicorn settings for the gateway: `gunicorn -c gunicorn.conf.py`.
# They live in the package (web/serve.py), so this file and the `kafka-sse-gateway` command
# run the same code. The master is not patched by gevent: nothing at this level may import
# kafka, pykka, grpc or the app.
from actors.settings import SettingsError
from web.serve import gunicorn_config, refusal

try:
    globals().update(gunicorn_config())
except SettingsError as _exc:
    raise SystemExit(refusal("kafka-sse-gateway", _exc)) from None
