"""R1, V10.4.5, V10.4.8, V7.4.1: refresh tokens rotate on every use; reuse ends the family."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.base import utcnow
from plexus.models.identity import RefreshToken, SecurityEvent

from auth_helpers import PASSWORD, create_user, tokens

EMAIL = "grace@example.com"


def _refresh(client, token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def _me(client, access: str):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})


def test_refresh_rotates_and_the_new_pair_works(client, runtime):
    create_user(runtime, EMAIL)
    first = tokens(client, EMAIL)
    response = _refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "Bearer"
    assert _me(client, second["access_token"]).status_code == 200
    assert _refresh(client, second["refresh_token"]).status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(client, runtime):
    """V10.4.5: RT1 gives RT2; replaying RT1 is refused and kills RT2 and the access tokens,
    with an audit event and a security event."""
    create_user(runtime, EMAIL)
    first = tokens(client, EMAIL)
    second = _refresh(client, first["refresh_token"]).json()
    replay = _refresh(client, first["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["type"] == "urn:plexus:problem:unauthorized"
    assert _refresh(client, second["refresh_token"]).status_code == 401
    assert _me(client, second["access_token"]).status_code == 401
    assert _me(client, first["access_token"]).status_code == 401
    with unit_of_work(runtime.sessions) as session:
        kinds = session.scalars(select(SecurityEvent.kind)).all()
        audited = session.scalars(
            select(AuditEvent.event).where(AuditEvent.event == "auth:refresh_token:reused")
        ).all()
    assert "refresh_token_reused" in kinds
    assert len(audited) == 1
    # Another login is unaffected.
    assert _me(client, tokens(client, EMAIL)["access_token"]).status_code == 200


def test_twenty_parallel_uses_of_one_refresh_token_yield_exactly_one_success(client, runtime):
    """V2.3.4: a refresh token is spent atomically, even under a race."""
    create_user(runtime, EMAIL)
    refresh = tokens(client, EMAIL)["refresh_token"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _i: _refresh(client, refresh).status_code, range(20)))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) == {200, 401}, statuses


def test_refresh_family_ends_at_its_absolute_lifetime(client, runtime):
    """V10.4.8: the chain of refresh tokens stops at the family's maximum age."""
    create_user(runtime, EMAIL)
    current = tokens(client, EMAIL)["refresh_token"]
    lifetime = runtime.settings.refresh_family_lifetime_seconds
    step = runtime.settings.refresh_token_idle_seconds // 2
    start = utcnow()
    elapsed = 0
    while elapsed + step < lifetime:
        elapsed += step
        with time_machine.travel(start + timedelta(seconds=elapsed), tick=False):
            response = _refresh(client, current)
            assert response.status_code == 200, elapsed
            current = response.json()["refresh_token"]
    with time_machine.travel(start + timedelta(seconds=lifetime + 1), tick=False):
        assert _refresh(client, current).status_code == 401


def test_idle_refresh_token_expires(client, runtime):
    create_user(runtime, EMAIL)
    refresh = tokens(client, EMAIL)["refresh_token"]
    idle = runtime.settings.refresh_token_idle_seconds
    with time_machine.travel(utcnow() + timedelta(seconds=idle + 5), tick=False):
        assert _refresh(client, refresh).status_code == 401


def test_logout_kills_access_and_refresh_token(client, runtime):
    """V7.4.1: after logout the access token and the refresh token are both refused."""
    create_user(runtime, EMAIL)
    pair = tokens(client, EMAIL)
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert _me(client, pair["access_token"]).status_code == 401
    assert _refresh(client, pair["refresh_token"]).status_code == 401


def test_logout_everywhere_ends_every_session(client, runtime):
    """V7.4.4, R22: logging out everywhere ends all of the user's sessions at once."""
    create_user(runtime, EMAIL)
    one, two = tokens(client, EMAIL), tokens(client, EMAIL)
    response = client.post(
        "/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {one['access_token']}"}
    )
    assert response.status_code == 200
    assert response.json()["sessions_ended"] == 2
    for pair in (one, two):
        assert _me(client, pair["access_token"]).status_code == 401
        assert _refresh(client, pair["refresh_token"]).status_code == 401


def test_refresh_tokens_are_stored_hashed_and_random(client, runtime):
    """V7.2.3, V11.5.1: refresh tokens carry 256 random bits and only their HMAC is stored."""
    create_user(runtime, EMAIL)
    seen = {tokens(client, EMAIL)["refresh_token"] for _ in range(8)}
    assert len(seen) == 8
    assert all(len(t) >= 43 for t in seen)
    with unit_of_work(runtime.sessions) as session:
        stored = session.scalars(select(RefreshToken.token_hash)).all()
        count = session.scalar(select(func.count()).select_from(RefreshToken))
    assert count == 8
    assert not seen & set(stored)
    dump = json.dumps(stored)
    assert not any(t in dump for t in seen)


def test_password_change_ends_every_other_session_and_keeps_this_one(client, runtime):
    """V7.4.3, R22: after a password change, other sessions' access and refresh tokens are
    dead at once; the session that made the change gets a fresh access token."""
    create_user(runtime, EMAIL)
    here, elsewhere = tokens(client, EMAIL), tokens(client, EMAIL)
    response = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new river of quiet lamps"},
        headers={"Authorization": f"Bearer {here['access_token']}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sessions_ended"] == 1
    assert _me(client, elsewhere["access_token"]).status_code == 401
    assert _refresh(client, elsewhere["refresh_token"]).status_code == 401
    # The epoch moved, so even this session's old access token is replaced...
    assert _me(client, here["access_token"]).status_code == 401
    assert _me(client, body["access_token"]).status_code == 200
    # ...while its refresh token still works, and the old password no longer does.
    assert _refresh(client, here["refresh_token"]).status_code == 200
    assert (
        client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}).status_code
        == 401
    )
