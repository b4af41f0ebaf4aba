"""R6, V3.3, V3.5, V7: browser sessions — cookie flags, CSRF, rotation, timeouts, logout."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from plexus.auth.sessions import SESSION_COOKIE
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.base import utcnow

from auth_helpers import PASSWORD, create_user, login, tokens

EMAIL = "hedy@example.com"
BASE = "https://testserver"


@pytest.fixture
def browser(app):
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def user(runtime):
    return create_user(runtime, EMAIL)


def _sign_in(browser) -> str:
    response = login(browser, EMAIL, use_cookie=True)
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def _set_cookie_header(response) -> str:
    headers = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]
    assert len(headers) == 1, headers
    return headers[0]


def test_session_cookie_has_host_prefix_and_flags(browser, user):
    """V3.3.1-V3.3.4: __Host- cookie, Secure, HttpOnly, SameSite=Lax, Path=/; the session
    value is not in the body."""
    response = login(browser, EMAIL, use_cookie=True)
    assert response.status_code == 200
    header = _set_cookie_header(response)
    name_value, *attributes = [p.strip() for p in header.split(";")]
    name, value = name_value.split("=", 1)
    flags = {a.split("=")[0].lower(): a for a in attributes}
    assert name == SESSION_COOKIE
    assert "secure" in flags
    assert "httponly" in flags
    assert flags["samesite"].lower() == "samesite=lax"
    assert flags["path"] == "Path=/"
    assert "domain" not in flags
    assert len(header) < 4096
    assert len(value) >= 43
    assert value not in response.text
    body = response.json()
    assert set(body) == {"session_id", "csrf_token", "expires_in"}


def test_cookie_session_reads_without_csrf_token(browser, user):
    _sign_in(browser)
    response = browser.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["authenticated_by"] == "session"


def test_state_change_without_csrf_token_is_refused(browser, user, runtime):
    """V3.5.1: a cookie-authenticated POST without the CSRF token gets 403 and is audited."""
    _sign_in(browser)
    response = browser.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert response.json()["type"] == "urn:plexus:problem:csrf-failed"
    assert browser.get("/api/v1/me").status_code == 200
    with unit_of_work(runtime.sessions) as session:
        events = session.scalars(select(AuditEvent.event)).all()
    assert "auth:csrf:failed" in events


def test_another_sessions_csrf_token_is_refused(app, browser, user):
    """V3.5.1: a CSRF token is bound to its own session."""
    _sign_in(browser)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as other:
        foreign = _sign_in(other)
    response = browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": foreign})
    assert response.status_code == 403


def test_foreign_origin_is_refused_even_with_the_token(browser, user):
    """V3.5.1: a state change from another site's page is refused."""
    csrf = _sign_in(browser)
    response = browser.post(
        "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, "Origin": "https://evil.test"}
    )
    assert response.status_code == 403
    assert browser.get("/api/v1/me").status_code == 200


def test_csrf_token_from_a_form_field_is_accepted(browser, user):
    """HTML forms send the synchronizer token as ``csrf_token``."""
    csrf = _sign_in(browser)
    response = browser.post("/api/v1/auth/logout", data={"csrf_token": csrf})
    assert response.status_code == 204


def test_logout_kills_the_session_server_side(browser, user):
    """V7.4.1, V14.3.1: after logout the old cookie is dead and the browser is told to
    clear its data."""
    csrf = _sign_in(browser)
    old_cookie = browser.cookies.get(SESSION_COOKIE)
    response = browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, "Origin": BASE})
    assert response.status_code == 204
    assert "cookies" in response.headers["clear-site-data"]
    replay = browser.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={old_cookie}"})
    assert replay.status_code == 401


def test_session_id_changes_at_login_and_the_old_one_dies(browser, user):
    """V7.2.4: signing in replaces whatever session the browser held (fixation)."""
    _sign_in(browser)
    first = browser.cookies.get(SESSION_COOKIE)
    _sign_in(browser)
    second = browser.cookies.get(SESSION_COOKIE)
    assert first != second
    replay = browser.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={first}"})
    assert replay.status_code == 401
    assert browser.get("/api/v1/me").status_code == 200


def test_reauthentication_rotates_the_session_cookie(browser, user):
    """R6: a privilege change (fresh authentication) rotates the session id."""
    csrf = _sign_in(browser)
    before = browser.cookies.get(SESSION_COOKIE)
    response = browser.post(
        "/api/v1/auth/reauth", json={"password": PASSWORD}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200
    assert response.json()["csrf_token"] != csrf
    after = browser.cookies.get(SESSION_COOKIE)
    assert after != before
    replay = browser.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={before}"})
    assert replay.status_code == 401


def test_idle_session_ends(browser, user, runtime):
    """V7.3.1: a session unused for the idle timeout is refused."""
    _sign_in(browser)
    idle = runtime.settings.web_session_idle_seconds
    with time_machine.travel(utcnow() + timedelta(seconds=idle + 5), tick=False):
        assert browser.get("/api/v1/me").status_code == 401


def test_active_session_ends_at_its_absolute_timeout(browser, user, runtime):
    """V7.3.2: use keeps a session alive only up to its absolute lifetime."""
    _sign_in(browser)
    start = utcnow()
    idle = runtime.settings.web_session_idle_seconds
    absolute = runtime.settings.web_session_absolute_seconds
    elapsed = 0
    while elapsed + idle // 2 < absolute:
        elapsed += idle // 2
        with time_machine.travel(start + timedelta(seconds=elapsed), tick=False):
            assert browser.get("/api/v1/me").status_code == 200, elapsed
    with time_machine.travel(start + timedelta(seconds=absolute + 1), tick=False):
        assert browser.get("/api/v1/me").status_code == 401


def test_users_list_and_end_their_sessions(client, runtime, user):
    """V7.4.5: a user sees their sessions and can end any one of them."""
    first = tokens(client, EMAIL)
    second = tokens(client, EMAIL)
    headers = {"Authorization": f"Bearer {first['access_token']}"}
    listed = client.get("/api/v1/me/sessions", headers=headers)
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    other = [s for s in sessions if not s["current"]]
    assert len(current) == 1
    assert len(other) == 1
    ended = client.delete(f"/api/v1/me/sessions/{other[0]['id']}", headers=headers)
    assert ended.status_code == 204
    second_headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.get("/api/v1/me", headers=second_headers).status_code == 401
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_nobody_ends_another_users_session(client, runtime, user):
    """V8.2.2: another user's session id is a 404."""
    create_user(runtime, "eve@example.com")
    victim = tokens(client, EMAIL)
    attacker = {"Authorization": f"Bearer {tokens(client, 'eve@example.com')['access_token']}"}
    victim_headers = {"Authorization": f"Bearer {victim['access_token']}"}
    victim_session = client.get("/api/v1/me/sessions", headers=victim_headers).json()[0]["id"]
    response = client.delete(f"/api/v1/me/sessions/{victim_session}", headers=attacker)
    assert response.status_code == 404
    assert client.get("/api/v1/me", headers=victim_headers).status_code == 200


def test_session_ids_are_long_random_and_unique(browser, user):
    """V7.2.3: session secrets carry 256 random bits; none repeats, none is a UUID."""
    seen = set()
    for _ in range(8):
        _sign_in(browser)
        value = browser.cookies.get(SESSION_COOKIE)
        assert value not in seen
        assert "-" not in value or len(value) != 36
        seen.add(value)


@pytest.mark.parametrize("token", ["é", "☃" * 43, "ÿ" * 10])
def test_a_non_ascii_csrf_token_is_a_refusal_not_an_error(browser, user, token):
    """V3.5.1, V16.5.3: a CSRF token of any characters is refused with 403, never a 500."""
    _sign_in(browser)
    response = browser.post("/api/v1/auth/logout", data={"csrf_token": token})
    assert response.status_code == 403
    assert response.json()["type"] == "urn:plexus:problem:csrf-failed"
