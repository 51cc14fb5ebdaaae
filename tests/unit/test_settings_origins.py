"""CORS_ALLOWED_ORIGINS entries are compared with the Origin header as browsers serialise it
(RFC 6454): no default port, no user, an ASCII (punycode) host, a real port. An entry written
otherwise passed the check and then matched no page: every cross-origin request was refused."""
import pytest

from actors.settings import Settings, SettingsError
from web.cors import cors_headers


@pytest.mark.parametrize("entry, sent", [
    ("https://app.example:443", "https://app.example"),
    ("http://app.example:80", "http://app.example"),
    ("https://user@app.example", "https://app.example"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("https://app.example:99999", None), ("https://app.example:x", None),
    ("https://app.example:0", None), ("https://app.example:", None)])
def test_an_origin_no_browser_sends_is_refused_at_start(entry, sent):
    if sent is not None:     # what happened: the page's own Origin was not allowed
        assert cors_headers(sent, (entry,)) == {}
    with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS="):
        Settings.from_env({"CORS_ALLOWED_ORIGINS": entry}, env_file=None)


@pytest.mark.parametrize("entry", ["https://app.example:8443", "http://localhost:3000",
                                   "https://xn--bcher-kva.example", "http://[::1]:8080",
                                   "HTTPS://App.Example"])
def test_origins_browsers_send_pass(entry):
    assert Settings.from_env({"CORS_ALLOWED_ORIGINS": entry},
                             env_file=None).cors_allowed_origins == (entry,)
