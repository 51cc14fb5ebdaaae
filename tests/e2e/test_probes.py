"""Starting it wrong fails loudly; probes for orchestrators; the admin listener.

Real gunicorn, real Kafka. The Kafka-down test runs its own broker, so stopping it disturbs
no other test.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import LocalKafka, ROOT, Service, free_port, free_port_pair, http_json

pytestmark = pytest.mark.e2e

GUNICORN = Path(sys.executable).with_name("gunicorn")


def _run_until_exit(args, cwd, env, timeout=20.0):
    """Run a command that should refuse to start; its exit status and output (or a failure)."""
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        pytest.fail(f"still running after {timeout} s, i.e. it started:\n{output[-3000:]}")
    return process.returncode, output


def _env(kafka, port, **more):
    return {**os.environ, "KAFKA_BROKERS": kafka.bootstrap, "KAFKA_TOPICS": "probes.unused",
            "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "GRPC_PORT": "0",
            "PYTHONPATH": str(ROOT), **more}


def test_serving_the_app_without_the_hooks_fails_at_startup(kafka, tmp_path):
    """Issue 13: `gunicorn -k gevent web.wsgi:app` used to start and answer 503 forever."""
    port = free_port()
    code, output = _run_until_exit(
        [str(GUNICORN), "-k", "gevent", "-b", f"127.0.0.1:{port}", "web.wsgi:app"],
        cwd=tmp_path, env=_env(kafka, port))
    assert code != 0
    assert "kafka-sse-gateway" in output and "gunicorn -c gunicorn.conf.py" in output, output
    assert "Traceback" not in output, output


def _wait_for(check, timeout, what):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last[0]:
            return last
        time.sleep(0.3)
    pytest.fail(f"{what} not seen in {timeout} s (last: {last})")


@pytest.fixture
def own_kafka():
    broker = LocalKafka(free_port_pair())
    broker.start()
    yield broker
    broker.reset()


def _create_topic(bootstrap, name):
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()


def test_readyz_names_missing_topics(service, tmp_path):
    svc = service(["probes.missing"])
    status, body = _wait_for(lambda: _status(svc.url + "/readyz", 503), 30, "/readyz 503")
    assert "KAFKA_TOPICS" in body["reason"], body
    assert http_json(svc.url + "/livez")[0] == 200


def test_livez_stays_up_and_readyz_follows_kafka(own_kafka, tmp_path):
    _create_topic(own_kafka.bootstrap, "probes.down")
    svc = Service(own_kafka.bootstrap, ["probes.down"], tmp_path / "gunicorn.log").start(1)
    try:
        status, body = _wait_for(lambda: _status(svc.url + "/readyz"), 30, "/readyz 200")
        assert body["status"] == "ready"
        assert http_json(svc.url + "/livez")[0] == 200

        own_kafka.stop()
        status, body = _wait_for(lambda: _status(svc.url + "/readyz", 503), 90, "/readyz 503")
        assert "kafka" in body["reason"].lower(), body
        assert http_json(svc.url + "/livez")[0] == 200
        assert http_json(svc.url + "/health")[0] == 503      # unchanged: follows Kafka

        own_kafka.start()
        _wait_for(lambda: _status(svc.url + "/readyz"), 90, "/readyz 200 again")
        assert http_json(svc.url + "/livez")[0] == 200
    finally:
        svc.stop()


def _status(url, want=200):
    try:
        status, body = http_json(url, timeout=3)
    except OSError as exc:
        return False, str(exc)
    return status == want, body


def _get(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_admin_listener_takes_metrics_and_stats_off_the_public_port(kafka, topics, tmp_path):
    admin_port = free_port()
    svc = Service(kafka.bootstrap, [topics("admin")["admin"]], tmp_path / "gunicorn.log",
                  ADMIN_HOST="127.0.0.1", ADMIN_PORT=admin_port).start(3)
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        status, text = _get(admin + "/metrics")
        assert status == 200 and "sse_clients" in text
        assert _get(admin + "/stats")[0] == 200
        _wait_for(lambda: _status(admin + "/readyz"), 30, "admin /readyz 200")
        assert _get(admin + "/livez")[0] == 200
        assert _get(admin + "/events")[0] == 404            # the admin port serves no streams

        for path in ("/metrics", "/stats"):
            status, text = _get(svc.url + path)
            assert status == 404, (path, status, text)
            assert "ADMIN_PORT" in text
        assert _get(svc.url + "/readyz")[0] == 200          # probes stay on the public port too
        assert _get(svc.url + "/health")[0] == 200
        assert _get(admin + "/health")[0] == 200            # with Kafka's details (unit tests)
    finally:
        svc.stop()


def test_without_admin_listener_public_port_serves_metrics(service, topics):
    svc = service([topics("probes")["probes"]])
    assert _get(svc.url + "/metrics")[0] == 200
    assert _get(svc.url + "/stats")[0] == 200
    assert _get(svc.url + "/livez")[0] == 200
