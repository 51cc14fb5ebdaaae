"""web/page.py: the live page and its files carry the page's headers (a strict
Content-Security-Policy, no framing, nosniff) at every address they are served from."""
import pytest

from actors.settings import Settings
from web import create_app
from web.page import PAGE_HEADERS


@pytest.fixture
def client():
    return create_app(Settings.defaults()).test_client()


@pytest.mark.parametrize("path", ["/", "/static/index.html", "/static/app.js",
                                  "/static/style.css", "/static/favicon.svg"])
def test_the_page_and_its_files_carry_the_page_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    for name, value in PAGE_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


def test_the_page_names_its_icon_so_that_no_favicon_ico_is_asked_for(client):
    icon = client.get("/static/favicon.svg")
    assert icon.mimetype == "image/svg+xml" and icon.get_data().startswith(b"<svg")
    assert b'rel="icon" href="/static/favicon.svg"' in client.get("/").get_data()


def test_the_page_is_the_index_file(client):
    page, index = client.get("/"), client.get("/static/index.html")
    assert page.get_data() == index.get_data() and b"/static/app.js" in page.get_data()


def test_a_range_past_the_end_is_416_json_with_the_file_s_length(client):
    """RFC 9110 15.5.17: a 416 for bytes says the current length (Content-Range: bytes */n)."""
    size = len(client.get("/static/app.js").get_data())
    response = client.get("/static/app.js", headers={"Range": f"bytes={size + 10}-"})
    assert response.status_code == 416
    assert response.json["error"] == "requested_range_not_satisfiable"
    assert response.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.parametrize("ranges", ["bytes=0-1,5-6", "bytes=0-0,-1", "items=0-5", "bytes=abc",
                                    "bytes=5-1", "bytes", "=0-5"])
def test_several_ranges_or_one_it_cannot_read_get_the_whole_file_not_416(client, ranges):
    """werkzeug refused several satisfiable ranges with 416, which RFC 9110 keeps for ranges
    none of which the file holds; a server without multipart answers sends the file. So it
    does for a Range it cannot read or of another unit, which RFC 9110 14.2 says to ignore."""
    whole = client.get("/static/style.css").get_data()
    answer = client.get("/static/style.css", headers={"Range": ranges})
    assert answer.status_code == 200 and answer.get_data() == whole
    one = client.get("/static/style.css", headers={"Range": "bytes=0-9"})
    assert one.status_code == 206 and one.get_data() == whole[:10]


def test_the_page_script_never_turns_text_into_markup_or_code(client):
    """Event text reaches the DOM through textContent and attributes only (the browser tests
    show it with hostile text); none of the APIs that parse a string as HTML or script."""
    script = client.get("/static/app.js").get_data(as_text=True)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(", "createContextualFragment", "DOMParser",
                 ".srcdoc", ".href", ".src ="):
        assert sink not in script, sink
    assert "textContent" in script
