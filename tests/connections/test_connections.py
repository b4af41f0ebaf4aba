"""``/api/v1/connections`` and ``/api/v1/providers`` with the sandbox platform served on
loopback: connecting, listing, checking (with refresh), disconnecting (with revocation),
permissions, validation, and that no secret ever leaves in a response."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.connections import Connection

from auth_helpers import sign_in
from connection_helpers import (
    API,
    CONNECTIONS,
    connect_sandbox,
    expire_stored_token,
    sandbox_client_fixture,  # noqa: F401 - a fixture
    sandbox_env_fixture,  # noqa: F401 - a fixture
    sandbox_fixture,  # noqa: F401 - a fixture
    sandbox_runtime_fixture,  # noqa: F401 - a fixture
    stored_connection,
)


@pytest.fixture
def owner(sandbox_runtime, sandbox_client):
    return sign_in(sandbox_runtime, sandbox_client, "owner@example.com")


def _secrets_of(runtime, connection_id: int) -> list[str]:
    from plexus.connections.calls import open_credentials

    row = stored_connection(runtime, connection_id)
    creds = open_credentials(runtime, row)
    return [s for s in (creds.access_token, creds.refresh_token) if s]


def test_providers_describe_what_they_can_do(sandbox_client, owner):
    response = sandbox_client.get(f"{API}/providers", headers=owner.headers)
    assert response.status_code == 200, response.text
    by_name = {p["name"]: p for p in response.json()["items"]}
    sandbox_info = by_name["sandbox"]
    assert sandbox_info["auth_kind"] == "none"
    assert sandbox_info["configured"] is True
    assert sandbox_info["capabilities"]["text"]["max_length"] == 500
    assert sandbox_info["capabilities"]["rate_limits"][0]["requests"] == 60
    assert sandbox_info["capabilities"]["idempotent_publish"] is True
    instagram = by_name["instagram"]["capabilities"]
    assert instagram["text"]["max_hashtags"] == 30
    assert instagram["media"]["min_aspect_ratio"] == 0.8
    assert by_name["telegram"]["capabilities"]["rich_text"] is True


def test_connect_sandbox_with_no_external_step(sandbox_client, sandbox_runtime, owner, sandbox):
    body = connect_sandbox(sandbox_client, owner.headers, "Practice")
    assert body["provider"] == "sandbox"
    assert body["status"] == "healthy"
    assert body["refreshable"] is True
    assert body["display_name"] == "Practice"
    assert sandbox.platform.count("/api/accounts") == 1
    listed = sandbox_client.get(CONNECTIONS, headers=owner.headers).json()["items"]
    assert [c["id"] for c in listed] == [body["id"]]
    # Nothing secret in any answer about it.
    for secret in _secrets_of(sandbox_runtime, body["id"]):
        assert secret not in json.dumps(body)
        assert secret not in sandbox_client.get(CONNECTIONS, headers=owner.headers).text
    events = _audit(sandbox_runtime, "connection:connection:created")
    assert len(events) == 1


def test_the_same_account_connected_again_is_one_connection(sandbox_client, owner, sandbox_runtime):
    first = connect_sandbox(sandbox_client, owner.headers)
    reconnect = sandbox_client.post(
        CONNECTIONS,
        json={"provider": "sandbox", "name": "Practice", "reconnect_id": first["id"]},
        headers=owner.headers,
    )
    # A sandbox reconnect makes a new sandbox account: refused, it is another account.
    assert reconnect.status_code == 400, reconnect.text
    assert stored_connection(sandbox_runtime, first["id"]).credentials_version == 1


def test_check_refreshes_an_expired_token_once(sandbox_client, owner, sandbox, sandbox_runtime):
    body = connect_sandbox(sandbox_client, owner.headers)
    sandbox.platform.expire_access_tokens()
    old = _secrets_of(sandbox_runtime, body["id"])
    response = sandbox_client.post(f"{CONNECTIONS}/{body['id']}/check", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["last_refreshed_at"] is not None
    assert sandbox.platform.count("/api/oauth/token") == 1
    new = _secrets_of(sandbox_runtime, body["id"])
    assert set(old).isdisjoint(new)
    assert stored_connection(sandbox_runtime, body["id"]).credentials_version == 2


def test_a_refused_refresh_token_needs_reauth_and_notifies_once(
    sandbox_client, owner, sandbox, sandbox_runtime
):
    body = connect_sandbox(sandbox_client, owner.headers)
    sandbox.platform.revoke_refresh_tokens()
    expire_stored_token(sandbox_runtime, body["id"])
    path = f"{CONNECTIONS}/{body['id']}/check"
    first = sandbox_client.post(path, headers=owner.headers)
    assert first.status_code == 409, first.text
    assert first.json()["type"].endswith("connection-needs-reauth")
    for _ in range(3):
        again = sandbox_client.post(path, headers=owner.headers)
        assert again.status_code == 409
    # One refresh attempt reached the platform; later calls never tried again.
    assert sandbox.platform.count("/api/oauth/token") == 1
    listed = sandbox_client.get(f"{CONNECTIONS}/{body['id']}", headers=owner.headers).json()
    assert listed["status"] == "needs_reauth"
    inbox = sandbox_client.get(f"{API}/me/notifications", headers=owner.headers).json()["items"]
    assert len(inbox) == 1
    assert inbox[0]["kind"] == "connection_needs_reauth"
    assert inbox[0]["subject"] == f"connection:{body['id']}"
    assert len(_audit(sandbox_runtime, "connection:connection:needs_reauth")) == 1


def test_disconnect_revokes_at_the_platform_then_deletes(
    sandbox_client, owner, sandbox, sandbox_runtime
):
    body = connect_sandbox(sandbox_client, owner.headers)
    response = sandbox_client.delete(f"{CONNECTIONS}/{body['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert sandbox.platform.count("/api/oauth/revoke") == 1
    assert sandbox.platform.revoked_count() >= 2
    assert (
        sandbox_client.get(f"{CONNECTIONS}/{body['id']}", headers=owner.headers).status_code == 404
    )
    with unit_of_work(sandbox_runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0
    assert len(_audit(sandbox_runtime, "connection:token:revoked")) == 1
    (event,) = _audit(sandbox_runtime, "connection:connection:disconnected")
    assert json.loads(event.context)["revocation"] == "revoked"


def test_a_revoked_access_token_needs_reauth_without_a_refresh(
    sandbox_client, owner, sandbox, sandbox_runtime
):
    body = connect_sandbox(sandbox_client, owner.headers)
    sandbox.platform.revoke_everything()
    response = sandbox_client.post(f"{CONNECTIONS}/{body['id']}/check", headers=owner.headers)
    assert response.status_code == 409, response.text
    assert sandbox.platform.count("/api/oauth/token") == 0
    assert stored_connection(sandbox_runtime, body["id"]).status == "needs_reauth"


def test_disconnect_keeps_the_connection_when_the_platform_is_down(
    sandbox_client, owner, sandbox, sandbox_runtime
):
    body = connect_sandbox(sandbox_client, owner.headers)
    path = f"{CONNECTIONS}/{body['id']}"
    with sandbox.platform_down():
        refused = sandbox_client.delete(path, headers=owner.headers)
        assert refused.status_code == 503, refused.text
        assert sandbox_client.get(path, headers=owner.headers).status_code == 200
        forced = sandbox_client.delete(f"{path}?force=true", headers=owner.headers)
        assert forced.status_code == 204
    events = _audit(sandbox_runtime, "connection:connection:disconnected")
    assert json.loads(events[0].context)["revoked_at_platform"] is False
    assert json.loads(events[0].context)["revocation"] == "failed"
    assert events[0].result == "failure"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_admins_manage_connections(sandbox_client, sandbox_runtime, owner, role):
    member = sign_in(
        sandbox_runtime,
        sandbox_client,
        f"{role}@example.com",
        role=role,
        workspace_id=owner.workspace_id,
    )
    refused = sandbox_client.post(
        CONNECTIONS, json={"provider": "sandbox", "name": "x"}, headers=member.headers
    )
    assert refused.status_code == 403
    body = connect_sandbox(sandbox_client, owner.headers)
    assert sandbox_client.get(CONNECTIONS, headers=member.headers).status_code == 200
    assert (
        sandbox_client.delete(f"{CONNECTIONS}/{body['id']}", headers=member.headers).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"provider": "sandbox", "name": "x", "fields": {"webhook": "y"}}, 422),
        ({"provider": "nosuch", "name": "x"}, 404),
        ({"provider": "sandbox", "name": ""}, 422),
        ({"provider": "sandbox", "name": "x", "extra": 1}, 422),
        ({"provider": "Sandbox!", "name": "x"}, 422),
        ({"provider": "sandbox", "name": "x", "fields": {"account_name": "z" * 5000}}, 422),
    ],
)
def test_bad_connect_requests_are_refused_and_store_nothing(
    sandbox_client, owner, sandbox_runtime, sandbox, payload, status
):
    response = sandbox_client.post(CONNECTIONS, json=payload, headers=owner.headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert sandbox.platform.count("/api/accounts") == 0
    with unit_of_work(sandbox_runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def _audit(runtime, event: str) -> list[AuditEvent]:
    with unit_of_work(runtime.sessions) as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        session.expunge_all()
        return rows
