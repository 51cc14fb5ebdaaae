"""AUTH_JWKS_URL is checked at start as urllib will use it: a URL it cannot fetch passed the
check, and every token with a key id was then refused (401) while each fetch logged a failure
(a port out of range, none, spaces or controls, no host: `https://None:443/jwks` was fetched)."""
import pytest

from actors.settings import Settings, SettingsError


@pytest.mark.parametrize("url", ["https://issuer.example:99999/jwks", "https://issuer.example:x/j",
                                 "https://issuer.example:0/jwks", "https://issuer.example/a b",
                                 "https://issuer.example/\x1b[2J", "https://:443/jwks",
                                 "https://user@/jwks"])
def test_a_jwks_url_urllib_cannot_fetch_is_refused_at_start(url):
    with pytest.raises(SettingsError, match="AUTH_JWKS_URL=.*expected an http:// or https://"):
        Settings.from_env({"AUTH_JWKS_URL": url}, env_file=None)


@pytest.mark.parametrize("url", ["https://issuer.example/.well-known/jwks.json",
                                 "http://127.0.0.1:8080/jwks?tenant=a",
                                 "https://[2001:db8::1]:8443/jwks"])
def test_urls_urllib_can_fetch_pass(url):
    settings = Settings.from_env({"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "RS256",
                                  "AUTH_JWKS_URL": url}, env_file=None)
    assert settings.auth_jwks_url == url
