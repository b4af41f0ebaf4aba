"""Security headers on every route class, CORS, and what production does not expose."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from plexus.app import create_app
from plexus.config import load_settings
from plexus.runtime import init_runtime

ROUTE_CLASSES = {
    "api": "/api/v1/",
    "health": "/healthz",
    "docs": "/api/v1/openapi.json",
    "error": "/api/v1/definitely-missing",
    "static": "/static/robots.txt",
}


def _hardening(headers) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in headers["permissions-policy"]
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "server" not in headers
    assert headers["x-request-id"]


@pytest.mark.parametrize("route_class", sorted(ROUTE_CLASSES))
def test_hardening_headers_on_every_route_class(client, route_class: str) -> None:
    """V3.4.4, V3.4.5, V3.4.6, V3.4.8, V13.4.6: headers on API, health, docs, errors, static."""
    response = client.get(ROUTE_CLASSES[route_class])
    expected = 404 if route_class == "error" else 200
    assert response.status_code == expected
    _hardening(response.headers)
    if route_class == "static":
        assert "no-store" not in response.headers.get("cache-control", "")
    else:
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("route_class", sorted(ROUTE_CLASSES))
def test_hsts_only_over_tls(app, route_class: str) -> None:
    """V3.4.1: HSTS for a year with subdomains on every response that came over TLS."""
    with TestClient(app, base_url="https://testserver") as tls_client:
        response = tls_client.get(ROUTE_CLASSES[route_class])
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    with TestClient(app, base_url="http://testserver") as plain_client:
        assert (
            "strict-transport-security" not in plain_client.get(ROUTE_CLASSES[route_class]).headers
        )


def test_authenticated_static_response_is_not_cached(client) -> None:
    """V14.2.2, V14.3.2: a response to a request carrying credentials is never cached."""
    response = client.get("/static/robots.txt", headers={"authorization": "Bearer abc.def.ghi"})
    assert response.headers["cache-control"] == "no-store"


def test_static_directory_and_dotfiles_are_not_listed(client) -> None:
    """V13.4.1, V13.4.3: no listings, no /.git or /.env, no source files."""
    for path in (
        "/static/",
        "/static",
        "/.git/HEAD",
        "/.env",
        "/static/../pyproject.toml",
        "/static/%2e%2e/app.py",
        "/app.py",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture
def cors_client(env_vars):
    env = dict(env_vars, PLEXUS_CORS_ORIGINS="https://app.example.org")
    rt = init_runtime(load_settings(environ=env))
    with TestClient(create_app(rt.settings, rt)) as client:
        yield client
    rt.dispose()


def test_foreign_origin_gets_no_cors_grant(cors_client) -> None:
    """V3.4.2: a foreign Origin is not reflected, on a simple request or a preflight."""
    simple = cors_client.get("/api/v1/", headers={"origin": "https://evil.test"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-credentials" not in simple.headers
    preflight = cors_client.options(
        "/api/v1/",
        headers={"origin": "https://evil.test", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 403
    assert preflight.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in preflight.headers


def test_listed_origin_gets_credentials(cors_client) -> None:
    simple = cors_client.get("/api/v1/", headers={"origin": "https://app.example.org"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example.org"
    assert simple.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in simple.headers["vary"]
    preflight = cors_client.options(
        "/api/v1/",
        headers={
            "origin": "https://app.example.org",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.org"


def test_no_cors_by_default(client) -> None:
    response = client.get("/api/v1/", headers={"origin": "https://app.example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_openapi_is_off_in_production(env_vars) -> None:
    """V13.4.5: API docs are not served in production unless enabled."""
    env = dict(
        env_vars,
        PLEXUS_ENV="production",
        PLEXUS_TRUSTED_PROXIES="10.0.0.1/32",
        PLEXUS_BCRYPT_ROUNDS="10",
    )
    rt = init_runtime(load_settings(environ=env))
    with TestClient(create_app(rt.settings, rt)) as client:
        assert client.get("/api/v1/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404
    rt.dispose()
    env["PLEXUS_OPENAPI_ENABLED"] = "true"
    rt = init_runtime(load_settings(environ=env))
    with TestClient(create_app(rt.settings, rt)) as client:
        assert client.get("/api/v1/openapi.json").status_code == 200
    rt.dispose()


def test_forwarded_headers_from_untrusted_peer_are_ignored(app) -> None:
    """V4.1.3: a client cannot forge its address or scheme."""
    with TestClient(app, base_url="http://testserver") as client:
        response = client.get(
            "/healthz", headers={"x-forwarded-for": "1.2.3.4", "x-forwarded-proto": "https"}
        )
    assert "strict-transport-security" not in response.headers
