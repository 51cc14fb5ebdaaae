"""The live page and the README's browser example, in headless Chromium against the real service.

Chromium and chromedriver are Debian's (scripts/install-chromium, run by scripts/test-setup);
Selenium is given both paths, so its Selenium Manager never tries to download anything.
"""
import base64
import json
import os
import shutil
import time

import pytest

from scripts.demo_producer import CATALOGUE
from tests.harness import ROOT, Service

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--lang=en-US")
SEED_QUERY = "event_types=blog.*,twitchbot.message.*"     # the README's JavaScript example
STATIC = ROOT / "web" / "static"


def _binary(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/bin/{name}"
    return found if os.access(found, os.X_OK) else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = _binary("chromium"), _binary("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed (scripts/install-chromium installs it)")
        pytest.skip("Chromium is not installed (scripts/install-chromium installs it)")
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})     # the console
    driver = webdriver.Chrome(options=options, service=DriverService(chromedriver))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def demo(topics, service, producer):
    """A service streaming one fresh topic; `publish(types)` sends one event per type, in order,
    all to partition 0 so that the order is Kafka's order too."""
    topic = topics("browser")["browser"]
    svc = service([topic], expect_partitions=3)
    counter = iter(range(10**6))

    def publish(types, **fields):
        sent = []
        for event_type in types:
            n = next(counter)
            event = {"id": f"evt-{n}", "type": event_type, "source": CATALOGUE[event_type][1],
                     "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}}
            event.update(fields)
            producer(topic, event, partition=0)
            sent.append(event)
        producer.flush()
        return sent

    svc.topic, svc.publish = topic, publish
    return svc


class PageStub:
    """The page's own files (web/static) served with /events and /tickets answered as a test
    scripts them, for what a real gateway will not do on cue (a 429, a stream cut at a given
    moment, thousands of event types). `answers[path]`: a list of Answer, used in turn (the
    last one repeats); `seen`: (monotonic time, method, path, headers) of every request."""

    def __init__(self):
        import http.server
        import threading
        stub = self
        self.answers: dict[str, list] = {"/events": [Answer.held()], "/tickets": [Answer.ticket()]}
        self.seen: list[tuple] = []
        self.closing = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                stub.seen.append((time.monotonic(), self.command, self.path, dict(self.headers)))
                if path in stub.answers:
                    queue = stub.answers[path]
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
                    return answer.send(self, stub.closing)
                name = "index.html" if path == "/" else path.removeprefix("/static/")
                file = STATIC / name
                if "/" in name or not file.is_file():
                    return Answer(404, {}, b"").send(self, stub.closing)
                kind = {"js": "text/javascript", "css": "text/css"}.get(file.suffix[1:],
                                                                         "text/html")
                Answer(200, {"Content-Type": kind}, file.read_bytes()).send(self, stub.closing)

            do_HEAD = do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self, method: str, path: str) -> list[tuple]:
        return [r for r in self.seen if r[1] == method and r[2].split("?")[0] == path]

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class Answer:
    """One scripted answer: status, headers, body; `hold`: then keep the stream open."""

    def __init__(self, status: int, headers: dict, body: bytes, hold: bool = False):
        self.status, self.headers, self.body, self.hold = status, headers, body, hold

    @classmethod
    def stream(cls, body: str, hold: bool = False) -> "Answer":
        return cls(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-store"},
                   body.encode(), hold)

    @classmethod
    def silent(cls) -> "Answer":
        """No answer at all, the connection held open (a wedged server, a black-holed path)."""
        return cls(0, {}, b"", hold=True)

    @classmethod
    def held(cls) -> "Answer":
        return cls.stream(": open\n\n", hold=True)

    @classmethod
    def ticket(cls) -> "Answer":
        return cls.json(201, {"ticket": "a-ticket", "expires_in": 30})

    @classmethod
    def json(cls, status: int, body: dict, **headers) -> "Answer":
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls(status, {"Content-Type": "application/json", **headers},
                   json.dumps(body).encode())

    def send(self, handler, closing) -> None:
        if not self.status:
            closing.wait()
            return
        handler.send_response(self.status)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        if not self.hold:
            handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        try:
            handler.wfile.write(self.body)
            handler.wfile.flush()
            while self.hold and not closing.wait(0.5):
                handler.wfile.write(b": heartbeat\n")
                handler.wfile.flush()
        except OSError:
            pass


@pytest.fixture
def stub():
    server = PageStub()
    yield server
    server.close()


# -- reading the page -----------------------------------------------------------------------
ROWS_JS = """
return [...document.querySelectorAll('#events li[data-type]')].reverse().map((li) => ({
  id: li.dataset.id, type: li.dataset.type, source: li.dataset.source,
  data: li.querySelector('.data').textContent}));
"""
COUNTS_JS = """
return Object.fromEntries([...document.querySelectorAll('#counts tr')].map(
  (tr) => [tr.dataset.type, Number(tr.querySelector('td').textContent)]));
"""


def rows(driver) -> list[dict]:
    """The listed events, oldest first."""
    return driver.execute_script(ROWS_JS)


def text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def state(driver) -> str:
    return driver.execute_script("return document.getElementById('state').dataset.state || ''")


def wait_until(driver, what: str, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            log = text(driver, "log")
            raise AssertionError(f"timed out waiting for {what}; state {state(driver)!r}, "
                                 f"rows {ids(rows(driver))}, log: {log[:600]}")
        time.sleep(0.1)


def wait_rows(driver, count: int, timeout=20.0) -> list[dict]:
    wait_until(driver, f"{count} rows", lambda: len(rows(driver)) >= count, timeout)
    time.sleep(0.3)     # and nothing more may arrive
    return rows(driver)


def open_page(driver, url: str):
    driver.get(url)
    wait_until(driver, "the stream to open", lambda: state(driver) == "open")


def apply_filters(driver, types="", sources="", history=True):
    from selenium.webdriver.common.by import By
    for element_id, value in (("event-types", types), ("sources", sources)):
        field = driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)
    box = driver.find_element(By.ID, "history")
    if box.is_selected() != history:
        box.click()
    driver.find_element(By.ID, "apply").click()
    wait_until(driver, "the new stream to open",
               lambda: state(driver) == "open" and "new filters" in text(driver, "log"))


def ids(events) -> list[str]:
    return [e["id"] for e in events]


# -- the live page ---------------------------------------------------------------------------
def test_page_loads_without_a_console_error(browser, demo):
    """Nothing the page asks for fails: no /favicon.ico 404, no script error."""
    browser.get_log("browser")                  # what earlier tests left
    open_page(browser, demo.url + "/")
    demo.publish(["blog.post.created"])
    wait_rows(browser, 1)
    time.sleep(0.5)                             # a late request's failure is logged too
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE"]
    assert errors == []


def test_page_lists_counts_and_filters_live_events(browser, demo, tmp_path):
    open_page(browser, demo.url + "/")
    assert browser.title.startswith("kafka-sse-gateway")
    labels = browser.execute_script(
        "return [...document.querySelectorAll('input')].map((i) => i.labels.length)")
    assert labels and all(labels), "every input has a label"

    sent = demo.publish(list(CATALOGUE))
    shown = wait_rows(browser, len(sent))
    assert ids(shown) == ids(sent)
    assert [(r["type"], r["source"]) for r in shown] == [(e["type"], e["source"]) for e in sent]
    assert [r["data"] for r in shown] == [json.dumps(e["data"], separators=(",", ":"))
                                          for e in sent]
    assert browser.execute_script(COUNTS_JS) == {t: 1 for t in CATALOGUE}
    assert text(browser, "total") == str(len(sent))

    # event text is shown as text, never run or parsed as markup
    evil = "<img src=x onerror=\"window.pwned=1\">"
    demo.publish(["link.clicked"], type="x." + evil, source="<b>bold</b>",
                 data={"html": "<script>window.pwned=2</script>"})
    shown = wait_rows(browser, len(sent) + 1)
    assert shown[-1]["type"] == "x." + evil and shown[-1]["source"] == "<b>bold</b>"
    assert "<script>" in shown[-1]["data"]
    assert browser.execute_script(
        "return window.pwned === undefined && !document.querySelector('#events img, #events b,"
        " #counts img')")
    screenshot = tmp_path / "live-page.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")

    # a new filter: the list starts again with the matching recent events, then the live ones
    apply_filters(browser, types="blog.*")
    assert "event_types=blog.*" in browser.current_url
    recent = [e for e in sent if e["type"].startswith("blog.")]
    wait_rows(browser, len(recent))
    more = demo.publish(list(CATALOGUE))
    wanted = recent + [e for e in more if e["type"].startswith("blog.")]
    shown = wait_rows(browser, len(wanted))
    assert ids(shown) == ids(wanted)
    assert browser.execute_script(COUNTS_JS) == {t: 2 for t in CATALOGUE if t.startswith("blog.")}

    # types and sources together, without the replay of recent events
    apply_filters(browser, types="*.created", sources="blog-service", history=False)
    assert rows(browser) == []
    latest = demo.publish(list(CATALOGUE))
    wanted = [e for e in latest if e["type"].endswith(".created") and e["source"] == "blog-service"]
    assert ids(wait_rows(browser, len(wanted))) == ids(wanted)
    assert {r["type"] for r in rows(browser)} == {"blog.post.created", "blog.comment.created",
                                                  "blog.category.created", "blog.tag.created"}

    # filters the service refuses: the page says so and stops instead of retrying forever
    from selenium.webdriver.common.by import By
    field = browser.find_element(By.ID, "event-types")
    field.clear()
    field.send_keys("<script>")
    browser.find_element(By.ID, "apply").click()
    wait_until(browser, "the refusal", lambda: state(browser) == "stopped")
    assert "refused the filters" in text(browser, "log")


class Refusing:
    """While the service is down, something on its port that answers every request 503, as a
    starting or overloaded gateway would: the browser's EventSource then gives up for good."""

    def __init__(self, port: int):
        import http.server
        import threading
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.command, self.path, self.headers.get("Last-Event-ID")))
                body = b'{"error": "unavailable", "message": "starting"}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def disconnect_the_browser(svc) -> None:
    """End the browser's stream with the management API's DisconnectClient."""
    import grpc
    from rpc import sse_pb2 as pb, sse_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
        api = sse_pb2_grpc.SSEManagementServiceStub(channel)
        listed = api.GetClients(pb.GetClientsRequest(limit=100), timeout=5).clients
        [page] = [c for c in listed if "Chrome" in c.user_agent]
        reply = api.DisconnectClient(pb.DisconnectClientRequest(client_id=page.id,
                                                                reason="browser test"), timeout=5)
        assert reply.disconnected


@pytest.mark.parametrize("outage", ["disconnect", "restart", "refusal"])
def test_page_resumes_after_the_stream_is_killed_without_losing_events(browser, demo, service,
                                                                      kafka, tmp_path, outage):
    """disconnect: gRPC DisconnectClient ends the stream; the browser reconnects by itself with
    Last-Event-ID. restart: the service stops (ending every stream) and starts again on the same
    port; the browser reconnects by itself. refusal: in between, the port answers 503, so the
    browser gives up and the page opens a new stream with ?last_event_id=."""
    svc = demo
    if outage == "disconnect":
        pytest.importorskip("rpc.sse_pb2_grpc", reason="the gRPC management API is not built")
        from tests.harness import free_port
        svc = service([demo.topic], expect_partitions=3, GRPC_PORT=free_port())
    open_page(browser, svc.url + "/?history=false")
    before = demo.publish(["blog.post.created", "link.clicked", "twitchbot.message.created"] * 2)
    assert ids(wait_rows(browser, len(before))) == ids(before)
    last_shown = text(browser, "last-id")

    restarted = Service(kafka.bootstrap, [demo.topic], tmp_path / "gunicorn-restarted.log")
    restarted.port = svc.port
    restarted.env["HTTP_PORT"] = str(svc.port)
    if outage == "disconnect":
        disconnect_the_browser(svc)
    else:
        svc.stop()
    wait_until(browser, "the page to notice", lambda: state(browser) != "open")
    while_down = demo.publish(["link.created", "blog.comment.created"] * 3)
    try:
        if outage == "refusal":
            stub = Refusing(svc.port)
            try:
                wait_until(browser, "the page to retry on its own",
                           lambda: "retrying in" in text(browser, "log"))
            finally:
                stub.close()
            assert ("GET", "/events?unnamed=1&history=false", last_shown) in stub.seen
            assert ("HEAD", f"/events?unnamed=1&history=false&last_event_id={last_shown}",
                    None) in stub.seen
        if outage != "disconnect":
            restarted.start(expect_partitions=3)
        wait_until(browser, "the page to reconnect", lambda: text(browser, "reconnects") == "1",
                   timeout=40)
        assert state(browser) == "open"
        after = demo.publish(["twitchbot.stream.started", "link.deleted"] * 2)
        expected = before + while_down + after
        assert ids(wait_rows(browser, len(expected))) == ids(expected)
        log = browser.execute_script(
            "return [...document.querySelectorAll('#log li')].map((li) => li.textContent)"
            ".reverse().join('\\n')")
        assert "stream lost after" in log and "reconnected: resuming after" in log
        browser.save_screenshot(str(tmp_path / f"resumed-after-{outage}.png"))
        print(f"connection log ({outage}):\n{log}")
    finally:
        restarted.stop()


# -- the README's JavaScript example, run in the page's origin -------------------------------
SEED_EXAMPLE_JS = """
const [query, name] = arguments;
const got = window.seed[name] = {post: [], message: [], any: [], errors: 0, open: false};
// The README's example (on this page's origin instead of localhost:8084), with each
// console.log replaced by collecting the event's id.
const eventSource = new EventSource('/events?' + query);
window.seedSources.push(eventSource);
eventSource.onopen = () => { got.open = true; };

eventSource.addEventListener('blog.post.created', (event) => {
  const data = JSON.parse(event.data);
  got.post.push(data.id);
});

eventSource.addEventListener('twitchbot.message.created', (event) => {
  const data = JSON.parse(event.data);
  got.message.push(data.id);
});

eventSource.onmessage = (event) => {
  const data = JSON.parse(event.data);
  got.any.push(data.id);
};

eventSource.onerror = (error) => { got.errors += 1; };
"""


def test_readme_javascript_example_named_listeners_and_onmessage(browser, demo):
    open_page(browser, demo.url + "/")
    browser.execute_script("window.seed = {}; window.seedSources = [];")
    browser.execute_script(SEED_EXAMPLE_JS, SEED_QUERY, "named")
    browser.execute_script(SEED_EXAMPLE_JS, SEED_QUERY + "&unnamed=1", "unnamed")
    wait_until(browser, "both example streams to open", lambda: browser.execute_script(
        "return window.seed.named.open && window.seed.unnamed.open"))

    sent = demo.publish(list(CATALOGUE) * 2)
    matching = [e for e in sent if e["type"].startswith(("blog.", "twitchbot.message."))]
    of_type = {t: ids(e for e in sent if e["type"] == t)
               for t in ("blog.post.created", "twitchbot.message.created")}
    wait_until(browser, "the example's events", lambda: browser.execute_script(
        "const s = window.seed; return s.named.post.length + s.named.message.length === 4"
        " && s.unnamed.any.length >= arguments[0]", len(matching)))
    time.sleep(0.5)     # and nothing more may arrive
    seed = browser.execute_script(
        "window.seedSources.forEach((s) => s.close()); return window.seed")

    # named events (the default): each listener gets its type; onmessage gets none of them
    assert seed["named"]["post"] == of_type["blog.post.created"]
    assert seed["named"]["message"] == of_type["twitchbot.message.created"]
    assert seed["named"]["any"] == []
    # ?unnamed=1: onmessage gets every matching event; the named listeners get none
    assert seed["unnamed"]["any"] == ids(matching)
    assert seed["unnamed"]["post"] == [] and seed["unnamed"]["message"] == []
    assert seed["named"]["errors"] == seed["unnamed"]["errors"] == 0


# -- the page against a scripted gateway ---------------------------------------------------------
def sse_events(events) -> str:
    return "".join(f"id: {e['id']}\ndata: {json.dumps(e)}\n\n" for e in events)


def test_per_type_table_stays_bounded_however_many_types_arrive(browser, stub):
    """A producer emitting thousands of distinct types: the table keeps at most 50 rows
    (the most counted, then the most recent), the rest is counted in one "other types" row, and
    every event is counted once."""
    events = []
    for n in range(3000):
        kind = "hot.type" if n % 3 == 0 else "warm.type" if n % 10 == 1 else f"cold.{n}"
        events.append({"id": f"evt-{n}", "type": kind, "source": "s",
                       "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}})
    stub.answers["/events"] = [Answer.stream(sse_events(events), hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "every event", lambda: text(browser, "total") == str(len(events)))
    limit = 50                      # MAX_TYPES in app.js
    counts = browser.execute_script(COUNTS_JS)
    kept = browser.execute_script("return page.counts.size")
    assert 2 < len(counts) <= limit and kept <= 10_000          # MAX_TRACKED
    assert counts["hot.type"] == 1000 and counts["warm.type"] == 200
    other = browser.execute_script(
        "const row = document.getElementById('counts-other');"
        " return row.hidden ? null : Number(row.querySelector('td').textContent)")
    assert other == len(events) - sum(counts.values())
    assert f"cold.{len(events) - 1}" in counts, "the newest type has a row"

    browser.find_element("id", "clear").click()
    assert browser.execute_script(COUNTS_JS) == {}
    assert browser.execute_script("return document.getElementById('counts-other').hidden")


def test_per_type_table_shows_true_counts_when_more_types_than_rows_keep_coming(
        browser, stub):
    """Live page audit: 100 types taking turns (10 events each): a type that lost its row to
    a newer one came back counting from 0, so every row said 1 or 2, whatever the type's
    count; and each new type was a layout of its own (10,000 types at 2,000/s: tasks of
    2.7 s). The table shows the most counted types with their whole counts."""
    events = [{"id": f"evt-{n}", "type": f"many.{n % 100:03d}", "source": "s",
               "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}} for n in range(1000)]
    events += [{"id": f"hot-{n}", "type": "hot.type", "source": "s",
                "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}} for n in range(30)]
    stub.answers["/events"] = [Answer.stream(sse_events(events), hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "every event", lambda: text(browser, "total") == str(len(events)))
    wait_until(browser, "the table", lambda: browser.execute_script(COUNTS_JS).get("hot.type"))
    counts = browser.execute_script(COUNTS_JS)
    assert len(counts) == 50 and counts.pop("hot.type") == 30
    assert set(counts.values()) == {10}, counts
    other = browser.execute_script(
        "return Number(document.getElementById('counts-other').querySelector('td').textContent)")
    assert other == 51 * 10


def test_odd_events_are_listed_bounded_and_at_the_time_they_came(browser, stub):
    """Live page audit: a type (or source) of 120,000 characters made a row 153,541 px tall;
    "x 5" as timestamp was shown as 2001-05-01; data `null` threw in the page."""
    long = "t" * 5000
    frames = (f"id: 1\ndata: {json.dumps({'type': long, 'source': long, 'timestamp': 'x 5'})}"
              "\n\nid: 2\ndata: null\n\n")
    stub.answers["/events"] = [Answer.stream(frames, hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "both events", lambda: text(browser, "total") == "2")
    wait_until(browser, "both rows", lambda: len(rows(browser)) == 2)
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#events li[data-type]')].map((li) => ["
        " li.querySelector('.type').textContent.length,"
        " li.querySelector('.source').textContent.length,"
        " li.querySelector('time').dateTime, li.dataset.type.length])")
    when, = [row[2] for row in shown if row[0] > 100]
    assert all(row[0] <= 201 and row[1] <= 201 and row[3] <= 2001 for row in shown), shown
    assert not when.startswith("2001"), when
    assert rows(browser)[-1]["type"] == "(not an object)"


def test_listed_rows_keep_a_bounded_part_of_big_events(browser, stub):
    """The list keeps its last 500 rows; a row must not keep all of a big event's data too (an
    event may be SSE_MAX_EVENT_BYTES, 256 KiB: 500 of them held 100 M characters in tooltips,
    about 110 MB of the tab's memory, for tooltips nobody can read whole)."""
    big = "é" * 20_000
    events = [{"id": f"evt-{n}", "type": "big.one", "source": "s",
               "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n, "text": big}}
              for n in range(520)]
    stub.answers["/events"] = [Answer.stream(sse_events(events), hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "every event", lambda: text(browser, "total") == str(len(events)),
               timeout=60)
    kept = browser.execute_script(
        "return [...document.querySelectorAll('#events li')].map((li) => li.textContent.length"
        " + [...li.querySelectorAll('[title]')].reduce((n, e) => n + e.title.length, 0))")
    assert len(kept) == 500 and max(kept) <= 2500, max(kept)
    first = browser.execute_script("return document.querySelector('#events .data').title")
    assert first.startswith('{"n":519,"text":"éé') and first.endswith("…")


HOSTILE = [
    "<img src=x onerror=\"window.pwned=1\">", "<script>window.pwned=2</script>",
    "<svg onload=window.pwned=3>", "\"><iframe src=javascript:window.pwned=4>",
    "' onmouseover='window.pwned=5", "javascript:window.pwned=6", "<a href=x>link</a>",
    "<style>*{display:none}</style>", "<!--", "]]><b>cdata</b>", "&lt;b&gt;entity&lt;/b&gt;",
    "<math><mi xlink:href=x>m</mi></math>", "<template><img src=x onerror=window.pwned=7>",
    "<details open ontoggle=window.pwned=8>", "<body onload=window.pwned=9>",
    "<input autofocus onfocus=window.pwned=10>", "<object data=x>", "<base href=//evil/>",
    "<meta http-equiv=refresh content=0;url=//evil>", "{{constructor.constructor('x')()}}",
    "${window.pwned=11}", "\u202eevil\u202c", "\u0000nul", "a" * 5000 + "<b>late</b>",
    "<noscript><p title=\"</noscript><img src=x onerror=window.pwned=12>\">",
    "<video><source onerror=window.pwned=13>", "<form><button formaction=x>b</button></form>",
    "<table><tr><td>cell</td></tr></table>", "<li>item</li>", "<tr><th>row</th></tr>",
]
ALLOWED_TAGS = {"events": {"LI", "TIME", "SPAN"}, "counts": {"TR", "TH", "TD"}, "log": {"LI"}}


def test_hostile_text_in_every_field_stays_text(browser, stub):
    """Every string an event, a gap or a refusal can carry, with markup in it: shown as text,
    never parsed (no element the page did not make, no script run), verbatim."""
    body = []
    for n, evil in enumerate(HOSTILE):
        event = {"id": evil, "type": evil, "source": evil, "timestamp": evil,
                 "data": {evil: evil, "n": n}}
        body.append(f"id: {json.dumps(evil)[1:-1]}\ndata: {json.dumps(event)}\n\n")
        gap = {"reason": evil, "partitions": []}
        body.append(f"id: gap-{n}\nevent: gap\ndata: {json.dumps(gap)}\n\n")
    stub.answers["/events"] = [Answer.stream("".join(body), hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "every event", lambda: text(browser, "total") == str(len(HOSTILE)))
    shown = rows(browser)
    kept = [h if len(h) <= 2000 else h[:2000] + "…" for h in HOSTILE]   # TITLE_CHARS of a name
    assert [r["type"] for r in shown] == kept and [r["source"] for r in shown] == kept
    assert set(browser.execute_script(COUNTS_JS)) == set(kept)
    notices = browser.execute_script(
        "return [...document.querySelectorAll('#events li.notice')].map((li) => li.textContent)")
    assert [n.split("(", 1)[1].rsplit(")", 1)[0] for n in reversed(notices)] == HOSTILE
    assert_only_the_page_s_elements(browser)

    stub.answers["/events"] = [Answer.json(400, {"error": "bad_request", "message": HOSTILE[0]})]
    from selenium.webdriver.common.by import By
    browser.find_element(By.ID, "apply").click()
    wait_until(browser, "the refusal", lambda: state(browser) == "stopped")
    assert f"the service refused the filters: {HOSTILE[0]}" in text(browser, "log")
    assert_only_the_page_s_elements(browser)

    claims = base64.urlsafe_b64encode(json.dumps({"sub": HOSTILE[0]}).encode()).decode()
    browser.execute_script("window.liveAuth.useToken(arguments[0])", f"e30.{claims}.sig")
    wait_until(browser, "the token", lambda: text(browser, "token-state").startswith("for "))
    assert text(browser, "token-state") == f"for {HOSTILE[0]}"
    assert browser.execute_script("return document.getElementById('token-state').children"
                                  ".length") == 0
    assert_only_the_page_s_elements(browser)


def assert_only_the_page_s_elements(driver):
    assert driver.execute_script("return window.pwned") is None
    for where, allowed in ALLOWED_TAGS.items():
        tags = set(driver.execute_script(
            f"return [...document.querySelectorAll('#{where} *')].map((e) => e.tagName)"))
        assert tags <= allowed, (where, tags - allowed)


def event_block(n: int) -> str:
    event = {"id": f"evt-{n}", "type": "blog.post.created", "source": "blog-service",
             "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}}
    return f"id: evt-{n}\ndata: {json.dumps(event)}\n\n"


def test_page_resumes_after_a_close_without_retry_then_a_503(browser, stub):
    """The gateway ends the stream (no `retry:` line): the browser resumes by itself with
    Last-Event-ID. The next reconnect is answered 503 with Retry-After: 2: the browser gives up,
    the page asks with HEAD, waits at least 2 s and resumes with ?last_event_id=. Every event
    shown once, in order."""
    unavailable = Answer.json(503, {"error": "unavailable", "message": "starting"},
                              Retry_After="2")
    stub.answers["/events"] = [Answer.stream(event_block(1)),
                               Answer.stream("retry: 500\n" + event_block(2)),
                               unavailable, unavailable,
                               Answer.stream(event_block(3), hold=True)]
    browser.get(stub.url + "/?history=false")
    wait_until(browser, "the last stream", lambda: len(rows(browser)) == 3, timeout=20)
    assert ids(rows(browser)) == ["evt-1", "evt-2", "evt-3"]
    assert state(browser) == "open" and text(browser, "reconnects") == "2"
    seen = [(method, path, headers.get("Last-Event-ID"))
            for _, method, path, headers in stub.seen if path.startswith("/events")]
    assert seen == [("GET", "/events?unnamed=1&history=false", None),
                    ("GET", "/events?unnamed=1&history=false", "evt-1"),
                    ("GET", "/events?unnamed=1&history=false", "evt-2"),
                    ("HEAD", "/events?unnamed=1&history=false&last_event_id=evt-2", None),
                    ("GET", "/events?unnamed=1&history=false&last_event_id=evt-2", None)]
    head, again = [r[0] for r in stub.seen if r[2].startswith("/events")][3:]
    assert again - head >= 1.95


@pytest.mark.parametrize("status, code, message", [
    (414, "uri_too_long", "Request Line is too large (9033 > 8190)"),
    (431, "request_header_fields_too_large",
     "Error parsing headers: 'limit request headers fields size'")])
def test_page_stops_with_the_message_of_a_request_too_long_for_the_server(browser, stub, status,
                                                                          code, message):
    """A long filter list (or the resume's ?last_event_id= on top of one) over gunicorn's
    limits: the page took the 414 or 431 for a passing failure and retried for ever."""
    stub.answers["/events"] = [Answer.json(status, {"error": code, "message": message})]
    browser.get(stub.url + "/?history=false")
    wait_until(browser, "the page to stop", lambda: state(browser) == "stopped", timeout=8)
    assert f"the service refused the request: {message}" in text(browser, "log")


def test_page_restored_by_the_back_button_resumes_its_stream(browser, stub):
    """The page closes its stream on pagehide (which lets the browser keep it in its back/forward
    cache); back on it, it must resume from where its list is, not show "live" over a closed
    stream."""
    stub.answers["/events"] = [Answer.stream("retry: 500\n" + event_block(1), hold=True),
                               Answer.stream(event_block(2), hold=True)]
    browser.get(stub.url + "/?history=false")
    wait_until(browser, "the first event", lambda: len(rows(browser)) == 1)
    browser.execute_script("window.kept = true")
    browser.get(stub.url + "/static/style.css")
    browser.back()
    wait_until(browser, "the page back", lambda: browser.execute_script(
        "return document.readyState === 'complete' && Boolean(document.getElementById('state'))"))
    assert browser.execute_script("return window.kept"), "not restored from the cache: no test"
    wait_until(browser, "the resumed stream", lambda: len(rows(browser)) == 2)
    assert ids(rows(browser)) == ["evt-1", "evt-2"]
    assert state(browser) == "open" and text(browser, "reconnects") == "1"
    assert browser.execute_script("return page.stream.readyState") == 1
    opened = [path for _, method, path, _ in stub.seen if path.startswith("/events")]
    assert opened == ["/events?unnamed=1&history=false",
                      "/events?unnamed=1&history=false&last_event_id=evt-1"]


def test_page_keeps_up_with_a_burst_of_thousands_of_events(browser, stub):
    """30,000 events at once (a resume's replay, a busy topic): all counted within seconds, the
    list showing the newest 500 in order. Listing each one as it came (a new time formatter,
    a highlight animation and a layout per event) took 44 s (84 s on a loaded machine): the
    page fell ever further behind any stream of more than about 700 events/s."""
    events = [{"id": f"evt-{n}", "type": f"burst.{n % 20}", "source": "s",
               "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n, "text": "x" * 150}}
              for n in range(30_000)]
    stub.answers["/events"] = [Answer.stream(sse_events(events), hold=True)]
    browser.get(stub.url + "/")
    wait_until(browser, "every event counted", lambda: text(browser, "total") == "30000",
               timeout=30)
    wait_until(browser, "the newest drawn", lambda: text(browser, "last-id") == "evt-29999")
    assert ids(rows(browser)) == ids(events[-500:])
    assert browser.execute_script(COUNTS_JS) == {f"burst.{n}": 1500 for n in range(20)}


def test_page_gives_up_on_a_question_that_gets_no_answer(browser, stub):
    """The stream is refused (503), and the HEAD that asks why gets no answer at all (a wedged
    worker, a path that drops packets): the page must not wait for it forever, showing
    "reconnecting" over nothing; it gives up on it and tries again."""
    stub.answers["/events"] = [Answer.stream("retry: 200\n" + event_block(1)),
                               Answer.json(503, {"error": "unavailable", "message": "x"}),
                               Answer.silent(),
                               Answer.stream(event_block(2), hold=True)]
    browser.get(stub.url + "/?history=false")
    wait_until(browser, "the page to resume", lambda: len(rows(browser)) == 2, timeout=30)
    assert ids(rows(browser)) == ["evt-1", "evt-2"] and state(browser) == "open"
    assert [r[1] for r in stub.seen if r[2].startswith("/events")] == ["GET", "GET", "HEAD", "GET"]
