"""The live page against a gateway with AUTH_MODE=required, in headless Chromium (issue 14).

The page asks for a token, trades it for a ticket, lists only the events of its scope and
subject, and after `auth-expired` resumes with a fresh ticket from where its list is: once
with a token typed into its field, once with a token from window.liveAuth.refreshToken.
"""
import json
import re
import secrets
import time

import pytest

from tests.authtools import SECRETS_SEEN, hs256_token, log_leaks, remember
from tests.e2e.test_browser import (  # noqa: F401 - browser, stub: the shared fixtures
    Answer, browser, ids, rows, state, stub, text, wait_rows, wait_until)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCOPE = (("blog.*", "link.*"), ("*",))
SOURCES = {"blog.post.created": "blog-service", "blog.comment.created": "blog-service",
           "link.clicked": "link-service", "link.created": "link-service",
           "twitchbot.message.created": "twitchbot"}


@pytest.fixture
def guarded(topics, service, kafka):
    """A gateway that requires HS256 tokens, owners in the record key; publish(pairs) sends
    (type, owner) pairs in order to partition 0."""
    from kafka import KafkaProducer
    topic = topics("browser-auth")["browser-auth"]
    secret = remember(secrets.token_hex(24))
    svc = service([topic], expect_partitions=3, WORKERS=1, AUTH_MODE="required",
                  AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=secret,
                  AUTH_JWT_LEEWAY_SECONDS=0, AUTH_SUBJECT_FIELD="key",
                  AUTH_TICKET_SECRET=remember(secrets.token_urlsafe(40)), ACCESS_LOG="true")
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)
    counter = iter(range(10**6))

    def publish(pairs):
        sent = []
        for event_type, owner in pairs:
            n = next(counter)
            event = {"id": f"evt-{n}", "type": event_type, "source": SOURCES[event_type],
                     "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n, "owner": owner}}
            producer.send(topic, json.dumps(event).encode(), partition=0,
                          key=None if owner is None else owner.encode())
            sent.append((event, owner))
        producer.flush(timeout=10)
        return sent

    def token(sub, lifetime):
        return hs256_token(secret.encode(), sub, event_types=SCOPE[0], sources=SCOPE[1],
                           lifetime=lifetime)

    svc.publish, svc.token = publish, token
    yield svc
    producer.close(timeout=5)


MIX = [("blog.post.created", None), ("blog.comment.created", "alice"), ("link.clicked", "bob"),
       ("twitchbot.message.created", None), ("link.created", "alice"),
       ("blog.post.created", "bob"), ("link.clicked", None), ("twitchbot.message.created", "alice"),
       ("blog.comment.created", "")]          # "": an owner that is nobody


def for_alice(sent):
    return [e for e, owner in sent
            if e["type"].startswith(("blog.", "link.")) and owner in (None, "alice")]


def log_lines(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#log li')].map((li) => li.textContent)"
        ".reverse().join('\\n')")


def enter_token(driver, token):
    from selenium.webdriver.common.by import By
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "use-token").click()


def test_page_with_a_token_sees_its_own_events_and_resumes_after_auth_expired(browser, guarded,  # noqa: F811
                                                                              tmp_path):
    driver = browser
    driver.get(guarded.url + "/?history=false")
    wait_until(driver, "the page to ask for a token", lambda: state(driver) == "signin")
    assert "enter a token" in log_lines(driver)

    lifetime = 7
    first = guarded.token("alice", lifetime)
    enter_token(driver, first)
    wait_until(driver, "the stream to open with a ticket", lambda: state(driver) == "open")
    assert text(driver, "token-state").startswith("for alice")
    assert driver.execute_script("return document.getElementById('token').value") == ""
    sent = guarded.publish(MIX)
    wanted = for_alice(sent)
    assert ids(wait_rows(driver, len(wanted))) == ids(wanted)

    # the token runs out: auth-expired, the refused ticket request, the page asks for a token
    wait_until(driver, "auth-expired and the request for a new token",
               lambda: state(driver) == "signin", timeout=lifetime + 10)
    assert "stream ended: token expired" in log_lines(driver)
    while_down = guarded.publish(MIX)
    # next time an app's hook hands over the new token (set now: the next expiry may be soon)
    third = guarded.token("alice", 300)
    driver.execute_script("const fresh = arguments[0];"
                          "window.liveAuth.refreshToken = async () => fresh;", third)
    second = guarded.token("alice", lifetime)
    enter_token(driver, second)
    wait_until(driver, "the page to resume", lambda: text(driver, "reconnects") == "1")
    assert state(driver) == "open"
    wanted += for_alice(while_down)
    assert ids(wait_rows(driver, len(wanted))) == ids(wanted)

    more = guarded.publish(MIX)
    wanted += for_alice(more)
    assert ids(wait_rows(driver, len(wanted))) == ids(wanted)
    wait_until(driver, "the second auth-expired and the hook's token",
               lambda: text(driver, "reconnects") == "2", timeout=lifetime + 10)
    assert state(driver) == "open"
    after = guarded.publish(MIX)
    wanted += for_alice(after)
    shown = wait_rows(driver, len(wanted))
    assert ids(shown) == ids(wanted), "lost, repeated or foreign events"
    assert not [r for r in shown if r["type"].startswith("twitchbot.")]
    screenshot = tmp_path / "auth-page.png"
    driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    log = log_lines(driver)
    assert log.count("stream ended: token expired") == 2, log
    assert "got a new token from refreshToken()" in log

    # the tokens live in memory only: not in the DOM, the address or the browser's storage
    page = driver.execute_script(
        "return [document.documentElement.outerHTML, location.href, localStorage.length,"
        " sessionStorage.length, document.cookie]")
    for token in (first, second, third):
        assert token not in page[0] and token not in page[1]
    assert page[2:] == [0, 0, ""]
    guarded.stop()
    served = guarded.log_path.read_text(errors="replace")
    leaks = log_leaks(served, SECRETS_SEEN)
    assert not leaks, leaks
    # one ticket per stream, never a spent one again (the browser's own retry would reuse it)
    opened = [line for line in served.splitlines()
              if "GET /events?" in line and "ticket=" in line and "web.access" in line]
    assert len(opened) == 3 and all(" 200 " in line for line in opened), opened


# -- the page against a scripted gateway (tests.e2e.test_browser.PageStub) --------------------
def open_stub(driver, gateway, query="?history=false"):
    driver.get(gateway.url + "/" + query)
    wait_until(driver, "the first stream to open", lambda: state(driver) == "open")


def test_page_waits_the_retry_after_of_a_refused_ticket_request(browser, stub):  # noqa: F811
    """POST /tickets answered 429 with Retry-After: 3: the next request comes 3 s later, not
    after the page's own first back-off (1 s)."""
    stub.answers["/tickets"] = [Answer.json(429, {"error": "rate_limited", "message": "slow down"},
                                            Retry_After="3"), Answer.ticket()]
    open_stub(browser, stub)
    browser.execute_script("window.liveAuth.useToken(arguments[0])", "a.b.c")
    wait_until(browser, "the stream with a ticket", lambda: state(browser) == "open"
               and len(stub.requests("GET", "/events")) == 2, timeout=10)
    first, second = stub.requests("POST", "/tickets")
    assert second[0] - first[0] >= 2.9, second[0] - first[0]
    assert "no ticket (429): retrying in 3 s" in log_lines(browser)
    assert "ticket=a-ticket" in stub.requests("GET", "/events")[1][2]


def test_page_strips_a_pasted_bearer_prefix_from_the_token(browser, stub):  # noqa: F811
    """A token pasted as `Bearer <jwt>` (any case, any spaces around) is sent as the token: from
    the field, from liveAuth.useToken and from refreshToken."""
    stub.answers["/tickets"] = [Answer.ticket(), Answer.ticket(),
                                Answer.json(401, {"error": "unauthorized", "message": "expired"}),
                                Answer.ticket()]
    open_stub(browser, stub)
    enter_token(browser, "  Bearer a.b.c \t")
    wait_until(browser, "the first ticket", lambda: len(stub.requests("POST", "/tickets")) == 1)
    browser.execute_script("window.liveAuth.useToken(arguments[0])", "bearer\tx.y.z ")
    wait_until(browser, "the second ticket", lambda: len(stub.requests("POST", "/tickets")) == 2)
    browser.execute_script("window.liveAuth.refreshToken = async () => ' BEARER  r.s.t';"
                           "window.liveAuth.useToken('old.o.o')")
    wait_until(browser, "the stream with the hook's token", lambda: state(browser) == "open"
               and len(stub.requests("POST", "/tickets")) == 4)
    sent = [r[3].get("Authorization") for r in stub.requests("POST", "/tickets")]
    assert sent == ["Bearer a.b.c", "Bearer x.y.z", "Bearer old.o.o", "Bearer r.s.t"]
    heads = [r[3].get("Authorization") for r in stub.requests("HEAD", "/events")]
    assert all(h in (None, "Bearer r.s.t") for h in heads), heads


EXPIRED = 'event: auth-expired\ndata: {"reason":"token expired"}\n\n'


def test_page_resumes_after_auth_expired_from_the_stream_s_own_position(browser, stub):  # noqa: F811
    """The gateway's id-only blocks (the opening position; a filtered stream's position at a
    heartbeat) move the stream's last event id without an event: after auth-expired the page
    resumes from there, not from its last listed event (from nothing: history=false would lose
    what came meanwhile; from an older event: a read-back, or a false `gap`)."""
    event = {"id": "evt-1", "type": "blog.post.created", "source": "blog-service",
             "timestamp": "2025-01-06T12:00:00Z", "data": {"n": 1}}
    stub.answers["/events"] = [
        Answer.held(),                                                  # before the token
        Answer.stream("retry: 3000\n: client c1\nid: pos-A\n\n: heartbeat\n" + EXPIRED),
        Answer.stream(f"id: pos-A\n\nid: evt-1\ndata: {json.dumps(event)}\n\n"
                      ": heartbeat\nid: pos-B\n\n" + EXPIRED),
        Answer.held()]
    open_stub(browser, stub)
    browser.execute_script("window.liveAuth.useToken(arguments[0])", "a.b.c")
    wait_until(browser, "two resumes", lambda: len(stub.requests("GET", "/events")) == 4)
    wait_until(browser, "the last stream", lambda: state(browser) == "open")
    resumed = [r[2].split("&ticket=")[0] for r in stub.requests("GET", "/events")]
    assert resumed == ["/events?unnamed=1&history=false"] * 2 + [
        "/events?unnamed=1&history=false&last_event_id=pos-A",
        "/events?unnamed=1&history=false&last_event_id=pos-B"]
    assert ids(wait_rows(browser, 1)) == ["evt-1"]


def test_page_backs_off_from_streams_that_are_cut_as_soon_as_they_open(browser, stub):  # noqa: F811
    """Each stream opens and is closed at once (a gateway that keeps ending it): the page's own
    reconnects (a ticket is good once) come ever further apart, not every second forever."""
    stub.answers["/events"] = [Answer.held(), Answer.stream("retry: 3000\nid: pos-A\n\n")]
    open_stub(browser, stub)
    browser.execute_script("window.liveAuth.useToken(arguments[0])", "a.b.c")
    time.sleep(10)
    opened = [r[0] for r in stub.requests("GET", "/events") if "ticket=" in r[2]]
    gaps = [later - earlier for earlier, later in zip(opened, opened[1:], strict=False)]
    assert 4 <= len(opened) <= 5 and gaps[0] < 1.6 and gaps[1] >= 1.9 and gaps[2] >= 3.8, gaps
    assert re.search("retrying in [45] s", log_lines(browser))


def test_page_spreads_its_own_reconnects_as_the_gateway_s_retry_does(browser, stub):  # noqa: F811
    """The gateway's `retry:` carries up to a quarter of jitter so that a dropped crowd comes
    back spread out; pages that reconnect themselves (with a ticket) must not all come back
    on the same second: their wait gets up to a quarter more too (here Math.random near 1)."""
    stub.answers["/events"] = [Answer.held(), Answer.stream("retry: 3000\nid: pos-A\n\n"),
                               Answer.held()]
    open_stub(browser, stub)
    browser.execute_script("Math.random = () => 0.99; window.liveAuth.useToken('a.b.c')")
    wait_until(browser, "the reconnect", lambda: len(stub.requests("POST", "/tickets")) == 2)
    [(lost, *_)] = stub.requests("HEAD", "/events")
    waited = stub.requests("POST", "/tickets")[1][0] - lost
    assert 1.2 <= waited < 1.6, waited
