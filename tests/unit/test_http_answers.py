"""Answers of the HTTP surface that are neither a stream nor an error handler's: a plain
OPTIONS, werkzeug's redirect for a path with `//`. Every one is JSON or has no body at all,
like the service's other answers (README, Error answers)."""
import threading

import pytest

from actors.gateway import Gateway
from actors.limiter import RateLimiterActor
from actors.messages import GetHistorySize, GetStats
from actors.replies import Stats
from actors.settings import Settings
from tests.fakes import DirectRef, FakeRef, stop_all
from web import create_app


@pytest.fixture
def client():
    def build(**overrides):
        settings = Settings.defaults(**overrides)
        limiter = DirectRef(RateLimiterActor(settings=settings, clock=lambda: 0.0))
        door = Gateway(settings, broker=FakeRef({GetStats: Stats()}),
                       history=FakeRef({GetHistorySize: 0}), limiter=limiter,
                       stopping=threading.Event())
        return create_app(settings, gateway=door).test_client()
    yield build
    stop_all()


@pytest.mark.parametrize("path, allow", [
    ("/events", {"GET", "HEAD", "OPTIONS"}), ("/stats", {"GET", "HEAD", "OPTIONS"}),
    ("/health", {"GET", "HEAD", "OPTIONS"}), ("/", {"GET", "HEAD", "OPTIONS"}),
    ("/static/app.js", {"GET", "HEAD", "OPTIONS"}), ("/tickets", {"POST", "OPTIONS"})])
def test_a_plain_options_gets_204_with_allow_and_no_html(client, path, allow):
    response = client().options(path, headers={"Origin": "https://app.example"})
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allow
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_preflight_has_no_content_type_either(client):
    response = client().options("/events", headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204 and "Content-Type" not in response.headers


def test_options_of_an_unknown_path_is_a_json_404(client):
    response = client().options("/nowhere")
    assert response.status_code == 404 and response.json["error"] == "not_found"


@pytest.mark.parametrize("path, location", [
    ("/static//app.js", "/static/app.js"), ("/static//app.js?v=1", "/static/app.js?v=1"),
    ("/static///index.html", "/static/index.html")])
def test_a_double_slash_is_a_json_redirect_to_the_path_without_it(client, path, location):
    response = client().get(path, headers={"Host": "evil.example"})
    assert response.status_code == 308 and response.json["error"] == "permanent_redirect"
    assert response.headers["Location"] == location      # relative: never the Host's scheme
    assert location in response.json["message"]


def test_the_redirect_keeps_the_mount_point(client):
    response = client().get("/static//app.js", environ_overrides={"SCRIPT_NAME": "/gw"})
    assert response.status_code == 308 and response.headers["Location"] == "/gw/static/app.js"


def test_head_of_events_has_the_streams_headers_and_no_content_length(client):
    """RFC 9110 9.3.2/8.6: a HEAD answer may carry Content-Length only with the GET's value; the
    GET is a stream of no known length, so none (not `0`, which says the stream is empty)."""
    app = client()
    head = app.head("/events?history=false")
    get = app.get("/events?history=false", buffered=False)
    try:
        assert head.status_code == get.status_code == 200 and head.data == b""
        assert "Content-Length" not in head.headers and "Content-Length" not in get.headers
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        assert head.headers["Cache-Control"] == get.headers["Cache-Control"] \
            == "no-cache, no-transform"      # a compressing proxy holds back the rest
    finally:
        get.close()
