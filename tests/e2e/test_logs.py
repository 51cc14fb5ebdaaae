"""LOG_FORMAT=json: every line the running service prints is JSON with its fields as keys,
gunicorn's own lines included; ACCESS_LOG=true adds one line per request, secrets redacted."""
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

FORWARDED = "203.0.113.7"
SECRET = "s3cret-ticket-value"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _entries(svc):
    lines = [line for line in svc.log_path.read_text(errors="replace").splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line[:300]!r}")
    return entries


def _wait_for(svc, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in _entries(svc) if predicate(e)]
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"no such log line in {timeout}s; log:\n{svc.log_tail(60)}")


def test_every_line_is_json_with_fields(topics, service, producer):
    topic = topics("logs")["logs"]
    svc = service([topic], expect_partitions=3, LOG_FORMAT="json", ACCESS_LOG="true",
                  TRUSTED_PROXIES="127.0.0.1/32", SSE_HEARTBEAT_SECONDS="1")
    client = SSEClient(f"{svc.url}/events?history=false&event_types=log.*&ticket={SECRET}",
                       headers={"X-Forwarded-For": f"198.51.100.1, {FORWARDED}"})
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    producer(topic, {"id": "l1", "type": "log.written", "data": 1})
    producer.flush()
    assert len(client.read_count(1, timeout=10)) == 1
    client.close()
    assert _get(f"{svc.url}/stats?token={SECRET}&x=1") == 200
    assert _get(f"{svc.url}/no-such-page?access_token={SECRET}") == 404
    _wait_for(svc, lambda e: e.get("message", "").startswith("client ")
              and "disconnected" in e["message"])
    _wait_for(svc, lambda e: e.get("path", "").startswith("/events"))
    svc.stop()

    entries = _entries(svc)
    for entry in entries:
        assert {"time", "level", "logger", "message", "pid"} <= set(entry), entry
        assert entry["time"].endswith("Z") and entry["level"] in (
            "debug", "info", "warning", "error", "critical"), entry
    loggers = {e["logger"] for e in entries}
    assert "gunicorn.error" in loggers, f"gunicorn's own lines are missing: {loggers}"
    assert any("Booting worker" in e["message"] for e in entries)

    connected = [e for e in entries if e.get("client_id") and "connected from" in e["message"]]
    left = [e for e in entries if e.get("client_id") and "disconnected" in e["message"]]
    assert len(connected) == 1 and len(left) == 1, entries
    assert connected[0]["client_address"] == FORWARDED
    assert connected[0]["filter"] == left[0]["filter"] and "log.*" in connected[0]["filter"]
    assert left[0]["client_id"] == connected[0]["client_id"]
    assert left[0]["client_address"] == FORWARDED
    assert left[0]["events_sent"] == 1 and left[0]["reason"]

    access = {e["path"].split("?")[0]: e for e in entries if e.get("logger") == "web.access"}
    stream = access["/events"]
    assert stream["method"] == "GET" and stream["status"] == 200
    assert stream["client_address"] == FORWARDED
    assert "ticket=REDACTED" in stream["path"] and "event_types=log.*" in stream["path"]
    assert stream["duration"] > 0
    assert access["/stats"]["path"] == "/stats?token=REDACTED&x=1"
    assert access["/stats"]["status"] == 200
    assert access["/no-such-page"]["status"] == 404
    assert SECRET not in svc.log_path.read_text()


def test_text_logs_stay_text_and_access_log_is_off_by_default(topics, service):
    topic = topics("logs-text")["logs-text"]
    svc = service([topic], expect_partitions=3)
    assert _get(f"{svc.url}/stats?token={SECRET}") == 200
    svc.stop()
    text = svc.log_path.read_text()
    assert "Booting worker" in text
    assert SECRET not in text and "web.access" not in text


def test_a_misspelt_variable_is_named_once_per_instance_not_once_per_worker(
        kafka, topics, service):
    topic = topics("typo")["typo"]
    svc = service([topic], WORKERS="2", LOG_FORMAT="json", SSE_MAX_CLIENT="5")
    _wait_for(svc, lambda e: "unknown variable" in e.get("message", ""))
    time.sleep(1.0)                 # the second worker has started by now (health waits for both)
    warned = [e for e in _entries(svc) if "unknown variable SSE_MAX_CLIENT " in e.get("message", "")]
    assert len(warned) == 1, warned
    assert "did you mean SSE_MAX_CLIENTS?" in warned[0]["message"]
    assert warned[0]["level"].upper() == "WARNING"
