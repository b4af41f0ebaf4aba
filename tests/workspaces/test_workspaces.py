"""Reading and updating a workspace (R2; ASVS V8.2.1, V8.2.3, V2.2.1), over HTTP."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import update

from plexus.audit.events import AuditEventType
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.identity import AuthSession, Workspace

from auth_helpers import PASSWORD, add_member, login
from workspace_helpers import (
    API,
    audit_events,
    env_vars_fixture,  # noqa: F401 - a fixture
    owner_fixture,  # noqa: F401 - a fixture
    people_fixture,  # noqa: F401 - a fixture
    problem,
    problem_code,
    team_fixture,  # noqa: F401 - a fixture
    workspace_path,
)


def test_list_shows_the_callers_memberships_and_which_is_current(client, runtime, people):
    ada = people("ada@example.com")
    other = people("other@example.com")
    add_member(runtime, ada.user_id, other.workspace_id, Role.VIEWER)
    response = client.get(f"{API}/workspaces", headers=ada.headers)
    assert response.status_code == 200, response.text
    listed = {w["id"]: w for w in response.json()}
    assert set(listed) == {ada.workspace_id, other.workspace_id}
    assert listed[ada.workspace_id] == {
        "id": ada.workspace_id,
        "name": "Team",
        "role": "owner",
        "current": True,
    }
    assert listed[other.workspace_id]["role"] == "viewer"
    assert listed[other.workspace_id]["current"] is False


def test_list_needs_a_signed_in_caller(client):
    problem(client.get(f"{API}/workspaces"), 401)


def test_read_the_current_workspace(client, team):
    """V8.2.3: exactly the documented fields, for every role down to viewer."""
    viewer = team[Role.VIEWER]
    response = client.get(workspace_path(viewer.workspace_id), headers=viewer.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "name", "mfa_policy", "require_approval", "created_at"}
    assert body["id"] == viewer.workspace_id
    assert body["mfa_policy"] == "none"
    assert body["require_approval"] is True


def test_owner_renames_the_workspace_and_it_is_audited(client, runtime, owner):
    path = workspace_path(owner.workspace_id)
    response = client.patch(path, json={"name": "  Writers' room  "}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Writers' room"
    assert client.get(path, headers=owner.headers).json()["name"] == "Writers' room"
    (event,) = audit_events(runtime, AuditEventType.WORKSPACE_SETTINGS_UPDATED)
    assert event.workspace_id == owner.workspace_id
    assert event.actor_id == str(owner.user_id)
    assert "Writers' room" in event.context


def test_an_unchanged_value_records_nothing(client, runtime, owner):
    path = workspace_path(owner.workspace_id)
    assert client.patch(path, json={"name": "Team"}, headers=owner.headers).status_code == 200
    assert audit_events(runtime, AuditEventType.WORKSPACE_SETTINGS_UPDATED) == []


@pytest.mark.parametrize("role", [Role.EDITOR, Role.CONTRIBUTOR, Role.VIEWER])
def test_below_admin_cannot_update_the_workspace(client, team, role):
    """V8.2.1: workspace:update is an owner's and an admin's."""
    person = team[role]
    response = client.patch(
        workspace_path(person.workspace_id), json={"name": "Mine now"}, headers=person.headers
    )
    assert problem_code(response, 403) == "permission-denied"


def test_admin_can_update_the_workspace(client, team):
    admin = team[Role.ADMIN]
    response = client.patch(
        workspace_path(admin.workspace_id), json={"name": "Renamed"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 121},
        {"name": "Evil\u202eeman"},
        {"name": "line\nbreak"},
        {"name": 5},
        {"mfa_policy": "sometimes"},
        {"name": "ok", "owner": 1},
    ],
)
def test_invalid_updates_are_refused_with_422(client, owner, body):
    """V2.2.1: types, lengths, control and direction characters, unknown fields."""
    response = client.patch(workspace_path(owner.workspace_id), json=body, headers=owner.headers)
    assert problem_code(response, 422) == "validation-failed"


def test_requiring_mfa_without_having_it_is_refused(client, owner):
    """Nobody can lock themselves out: the policy would cover the owner, who has no MFA."""
    for policy in ("admins", "all"):
        response = client.patch(
            workspace_path(owner.workspace_id), json={"mfa_policy": policy}, headers=owner.headers
        )
        assert problem_code(response, 409) == "conflict"


def test_an_owner_signed_in_with_mfa_sets_the_policy(client, runtime, owner):
    """V6.3.3: the workspace setting that requires MFA; changing it is audited."""
    with time_machine.travel(time.time(), tick=True) as clock:
        started = client.post("/api/v1/me/mfa/totp", headers=owner.headers)
        assert started.status_code == 200, started.text
        totp = pyotp.TOTP(started.json()["secret"])
        confirmed = client.post(
            "/api/v1/me/mfa/totp/confirm", json={"code": totp.now()}, headers=owner.headers
        )
        assert confirmed.status_code == 200, confirmed.text
        clock.shift(30)
        challenge = login(client, owner.email, PASSWORD).json()["mfa_token"]
        signed = client.post("/api/v1/auth/mfa", json={"mfa_token": challenge, "code": totp.now()})
        assert signed.status_code == 200, signed.text
        headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        response = client.patch(
            workspace_path(owner.workspace_id), json={"mfa_policy": "admins"}, headers=headers
        )
    assert response.status_code == 200, response.text
    assert response.json()["mfa_policy"] == "admins"
    (event,) = audit_events(runtime, AuditEventType.WORKSPACE_SETTINGS_UPDATED)
    assert "mfa_policy" in event.context
    with runtime.sessions() as session:
        assert session.get(Workspace, owner.workspace_id).mfa_policy == "admins"


def test_updating_needs_a_recent_sign_in(client, owner):
    """V6.3 re-authentication: eleven minutes after signing in, the token still works but
    changing the workspace asks for the password again."""
    path = workspace_path(owner.workspace_id)
    with time_machine.travel(time.time() + timedelta(minutes=11).total_seconds()):
        assert client.get(path, headers=owner.headers).status_code == 200
        response = client.patch(path, json={"name": "Later"}, headers=owner.headers)
    assert problem_code(response, 403) == "reauthentication-required"


@pytest.mark.parametrize("workspace_id", ["0", "-1", "abc", str(2**63)])
def test_malformed_workspace_ids_are_422(client, owner, workspace_id):
    response = client.get(f"{API}/workspaces/{workspace_id}", headers=owner.headers)
    assert problem_code(response, 422) == "validation-failed"


def test_only_an_owner_lowers_the_mfa_policy(client, runtime, team):
    """An admin cannot switch off the MFA requirement an owner set (it covers owners too)."""
    owner, admin = team[Role.OWNER], team[Role.ADMIN]
    with unit_of_work(runtime.sessions) as session:
        session.execute(update(Workspace).values(mfa_policy="admins"))
        # Both signed in with a second factor (what the policy demands of them).
        session.execute(update(AuthSession).values(amr="pwd,otp"))
    path = workspace_path(owner.workspace_id)
    refused = client.patch(path, json={"mfa_policy": "none"}, headers=admin.headers)
    assert problem_code(refused, 403) == "permission-denied"
    raised = client.patch(path, json={"mfa_policy": "all"}, headers=admin.headers)
    assert raised.status_code == 200, raised.text
    lowered = client.patch(path, json={"mfa_policy": "none"}, headers=owner.headers)
    assert lowered.status_code == 200, lowered.text
