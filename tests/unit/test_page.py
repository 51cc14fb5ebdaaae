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
                                  "/static/style.css"])
def test_the_page_and_its_files_carry_the_page_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    for name, value in PAGE_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


def test_the_page_is_the_index_file(client):
    page, index = client.get("/"), client.get("/static/index.html")
    assert page.get_data() == index.get_data() and b"/static/app.js" in page.get_data()
