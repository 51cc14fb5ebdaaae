"""The contract documents (web/api/): valid against the official OpenAPI 3.1 and AsyncAPI 3.0
schemas, served by the gateway, true to its routes, and true to the frames a running gateway
sends (events, the gap event, the opening position, heartbeats)."""
import json
import os
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from actors.settings import Settings
from tests.harness import http_json
from tests.sse import SSEClient
from web import create_app

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "web" / "api"
ASYNCAPI_SCHEMA = ROOT / ".cache/npm/node_modules/@asyncapi/specs/schemas/3.0.0.json"


def _doc(name):
    return json.loads((DOCS / name).read_text())


def _validator(document, pointer, cls):
    """A validator for one schema of `document` (its other $refs resolve inside it)."""
    return cls({**document, "$ref": pointer})


def _asyncapi_schema():
    if ASYNCAPI_SCHEMA.exists():
        return json.loads(ASYNCAPI_SCHEMA.read_text())
    if os.environ.get("CI") == "true":
        pytest.fail("@asyncapi/specs is missing: scripts/install-asyncapi-specs installs it")
    pytest.skip("@asyncapi/specs is not installed (scripts/install-asyncapi-specs needs npm)")


def test_openapi_document_is_valid_openapi_3_1():
    document = _doc("openapi.json")
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)          # the OpenAPI 3.1 JSON schema bundled in the package


def test_asyncapi_document_is_valid_asyncapi_3():
    schema = _asyncapi_schema()
    validator = jsonschema.Draft7Validator(schema)
    document = _doc("asyncapi.json")
    assert document["asyncapi"] == "3.0.0"
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in validator.iter_errors(document)]
    assert not errors, errors
    broken = json.loads(json.dumps(document))
    broken["operations"]["receiveEvents"]["action"] = "publish"     # an AsyncAPI 2 word
    assert list(validator.iter_errors(broken)), "the official schema should refuse this"


def test_documents_match_the_package_version_and_the_routes():
    version = metadata.version("kafka-sse-gateway")
    assert _doc("openapi.json")["info"]["version"] == version
    assert _doc("asyncapi.json")["info"]["version"] == version
    app = create_app(Settings.defaults())
    routes = {rule.rule for rule in app.url_map.iter_rules()
              if not rule.rule.startswith("/static/")}
    assert routes == set(_doc("openapi.json")["paths"])


@pytest.mark.e2e
def test_served_documents_and_real_frames_match_the_contract(topics, service, producer):
    openapi, asyncapi = _doc("openapi.json"), _doc("asyncapi.json")
    topic = topics("contract")["contract"]
    svc = service([topic], expect_partitions=3, SSE_HISTORY_SIZE="0", SSE_REPLAY_MAX_EVENTS="2",
                  SSE_HEARTBEAT_SECONDS="1")
    for name, document in (("openapi.json", openapi), ("asyncapi.json", asyncapi)):
        status, served = http_json(f"{svc.url}/{name}")
        assert status == 200 and served == document

    envelope = _validator(asyncapi, "#/components/schemas/Envelope", jsonschema.Draft7Validator)
    gap = _validator(asyncapi, "#/components/schemas/Gap", jsonschema.Draft7Validator)
    sse_id = _validator(asyncapi, "#/components/schemas/SseId", jsonschema.Draft7Validator)

    first = SSEClient(f"{svc.url}/events?history=false")
    first.read_until(lambda evs: first.parser.last_id, timeout=10)
    start_id = first.parser.last_id
    sse_id.validate(start_id)                                   # the opening position block
    producer(topic, {"id": "c1", "type": "contract.full", "source": "tests",
                     "timestamp": "2025-01-06T12:00:00Z", "data": {"n": 1}}, partition=0)
    producer(topic, {"type": "contract.minimal"}, partition=1)
    producer(topic, {"data": [1, "two", None]}, partition=2, headers=[("source", b"hdr")])
    producer(topic, {"type": "contract.more", "data": None}, partition=0)
    producer.flush()
    events = first.read_count(4, timeout=15)
    first.read_until(lambda evs: "heartbeat" in first.parser.comments, timeout=5)
    first.close()
    assert len(events) == 4
    assert "heartbeat" in first.parser.comments
    for event in events:
        body = json.loads(event["data"])
        envelope.validate(body)
        sse_id.validate(event["id"])
        assert event["event"] == body["type"]

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": start_id})
    frames = resumed.read_until(lambda evs: any(e["event"] == "gap" for e in evs), timeout=15)
    resumed.close()
    gaps = [e for e in frames if e["event"] == "gap"]
    assert gaps, f"no gap event when resuming past SSE_REPLAY_MAX_EVENTS: {frames}"
    body = json.loads(gaps[0]["data"])
    gap.validate(body)
    assert body["reason"] == "replay_limit"
    assert list(gap.iter_errors({"reason": "nope", "partitions": []})), "the schema checks nothing"

    stats = _validator(openapi, "#/components/schemas/Stats", jsonschema.Draft202012Validator)
    health = _validator(openapi, "#/components/schemas/Health", jsonschema.Draft202012Validator)
    probe = _validator(openapi, "#/components/schemas/Probe", jsonschema.Draft202012Validator)
    stats.validate(http_json(svc.url + "/stats")[1])
    health.validate(http_json(svc.url + "/health")[1])
    probe.validate(http_json(svc.url + "/livez")[1])
    probe.validate(http_json(svc.url + "/readyz")[1])
    error = _validator(openapi, "#/components/schemas/Error", jsonschema.Draft202012Validator)
    status, body = http_json(svc.url + "/events?event_types=%3Cscript%3E")
    assert status == 400
    error.validate(body)
