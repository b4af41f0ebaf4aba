"""Members and roles (R2, R22; ASVS V8.2.1, V8.3.1, V8.3.2, V7.4.x), over HTTP.

The role matrix: a viewer cannot write, a contributor cannot invite, an admin cannot touch
an owner, nobody grants a role above their own, the last owner stays. A role change kills
the member's access tokens at once; a removal kills every credential they hold there.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from plexus.audit.events import AuditEventType
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.identity import ApiKey, AuthSession, Invitation
from plexus.workspaces.invitations import invitation_email

from auth_helpers import PASSWORD, add_member, login, tokens
from workspace_helpers import (
    API,
    INVITATIONS,
    audit_events,
    env_vars_fixture,  # noqa: F401 - a fixture
    invite,
    members_path,
    owner_fixture,  # noqa: F401 - a fixture
    people_fixture,  # noqa: F401 - a fixture
    problem,
    problem_code,
    role_of,
    team_fixture,  # noqa: F401 - a fixture
    token_pair,
    workspace_path,
)

ME = f"{API}/me"


def set_role(client, actor, target, role):
    return client.patch(
        members_path(actor.workspace_id, target.user_id),
        json={"role": str(role)},
        headers=actor.headers,
    )


def remove(client, actor, target):
    return client.delete(members_path(actor.workspace_id, target.user_id), headers=actor.headers)


# Reading ----------------------------------------------------------------------------------


def test_every_member_can_list_the_members_without_secrets(client, team):
    """V8.2.3: no hash, token or secret in the member list."""
    viewer = team[Role.VIEWER]
    response = client.get(members_path(viewer.workspace_id), headers=viewer.headers)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert {m["email"]: m["role"] for m in listed} == {p.email: str(r) for r, p in team.items()}
    for member in listed:
        assert set(member) == {"user_id", "email", "display_name", "role", "joined_at"}


def test_read_one_member(client, team):
    editor = team[Role.EDITOR]
    response = client.get(
        members_path(editor.workspace_id, team[Role.ADMIN].user_id), headers=editor.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"


def test_an_unknown_member_is_404(client, owner):
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(
            method,
            members_path(owner.workspace_id, 987_654),
            json={"role": "viewer"} if method == "PATCH" else None,
            headers=owner.headers,
        )
        assert problem_code(response, 404) == "not-found"


# The role matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CONTRIBUTOR, Role.EDITOR])
def test_below_admin_cannot_change_or_remove_members(client, team, role):
    """V8.2.1: member:update and member:remove are an admin's."""
    actor = team[role]
    target = team[Role.VIEWER] if role is not Role.VIEWER else team[Role.CONTRIBUTOR]
    assert problem_code(set_role(client, actor, target, Role.VIEWER), 403) == "permission-denied"
    assert problem_code(remove(client, actor, target), 403) == "permission-denied"
    assert role_of(client.app.state.runtime, target.user_id, target.workspace_id) is not None


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CONTRIBUTOR, Role.EDITOR])
def test_below_admin_cannot_invite(client, team, role):
    """A viewer cannot write; a contributor (or editor) cannot invite."""
    response = client.post(
        INVITATIONS, json={"email": "new@example.com", "role": "viewer"}, headers=team[role].headers
    )
    assert problem_code(response, 403) == "permission-denied"


def test_viewer_cannot_write_anything_here(client, team):
    viewer = team[Role.VIEWER]
    path = workspace_path(viewer.workspace_id)
    refused = [
        client.patch(path, json={"name": "x"}, headers=viewer.headers),
        set_role(client, viewer, team[Role.EDITOR], Role.VIEWER),
        remove(client, viewer, team[Role.EDITOR]),
        client.post(
            INVITATIONS, json={"email": "n@example.com", "role": "viewer"}, headers=viewer.headers
        ),
        client.get(INVITATIONS, headers=viewer.headers),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)


def test_admin_cannot_touch_an_owner(client, runtime, team, people):
    """Only owners change or remove owners, or grant the owner role."""
    admin, owner = team[Role.ADMIN], team[Role.OWNER]
    assert problem_code(set_role(client, admin, owner, Role.VIEWER), 403) == "permission-denied"
    assert problem_code(remove(client, admin, owner), 403) == "permission-denied"
    assert (
        problem_code(set_role(client, admin, team[Role.EDITOR], Role.OWNER), 403)
        == "permission-denied"
    )
    assert problem_code(set_role(client, admin, admin, Role.OWNER), 403) == "permission-denied"
    response = client.post(
        INVITATIONS, json={"email": "boss@example.com", "role": "owner"}, headers=admin.headers
    )
    assert problem_code(response, 403) == "permission-denied"
    assert role_of(runtime, owner.user_id, owner.workspace_id) == "owner"
    assert role_of(runtime, admin.user_id, admin.workspace_id) == "admin"


def test_admin_manages_roles_up_to_their_own(client, runtime, team):
    admin = team[Role.ADMIN]
    promoted = set_role(client, admin, team[Role.VIEWER], Role.ADMIN)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    demoted = set_role(client, admin, team[Role.EDITOR], Role.CONTRIBUTOR)
    assert demoted.status_code == 200, demoted.text
    assert role_of(runtime, team[Role.EDITOR].user_id, admin.workspace_id) == "contributor"


def test_owner_makes_another_owner(client, runtime, team):
    response = set_role(client, team[Role.OWNER], team[Role.ADMIN], Role.OWNER)
    assert response.status_code == 200, response.text
    assert role_of(runtime, team[Role.ADMIN].user_id, team[Role.ADMIN].workspace_id) == "owner"


def test_the_last_owner_can_be_neither_demoted_nor_removed(client, runtime, owner):
    assert problem_code(set_role(client, owner, owner, Role.ADMIN), 409) == "last-owner"
    assert problem_code(remove(client, owner, owner), 409) == "last-owner"
    assert role_of(runtime, owner.user_id, owner.workspace_id) == "owner"


def test_with_two_owners_one_may_step_down(client, runtime, team, people):
    owner = team[Role.OWNER]
    second = people("second@example.com", role=Role.OWNER, workspace_id=owner.workspace_id)
    assert set_role(client, owner, owner, Role.ADMIN).status_code == 200
    # The last owner standing is protected again.
    assert problem_code(set_role(client, second, second, Role.ADMIN), 409) == "last-owner"
    assert problem_code(remove(client, second, second), 409) == "last-owner"
    assert role_of(runtime, second.user_id, owner.workspace_id) == "owner"


def test_an_unknown_role_is_422(client, team):
    response = set_role(client, team[Role.OWNER], team[Role.EDITOR], "superuser")
    assert problem_code(response, 422) == "validation-failed"


# Role changes apply at once -------------------------------------------------------------


def test_a_demoted_admins_token_is_refused_at_once(client, runtime, team):
    """V8.3.2: the admin's existing token dies on its next request (token epoch, 401);
    signed in again, they hold the new role's rights only."""
    owner, admin = team[Role.OWNER], team[Role.ADMIN]
    path = workspace_path(admin.workspace_id)
    before = client.patch(path, json={"name": "By the admin"}, headers=admin.headers)
    assert before.status_code == 200, before.text

    assert set_role(client, owner, admin, Role.VIEWER).status_code == 200

    assert problem(client.get(ME, headers=admin.headers), 401)
    assert problem(client.patch(path, json={"name": "Again"}, headers=admin.headers), 401)
    admin.relogin(client)
    me = client.get(ME, headers=admin.headers).json()
    assert me["role"] == "viewer"
    assert "workspace:update" not in me["permissions"]
    assert client.get(path, headers=admin.headers).status_code == 200
    again = client.patch(path, json={"name": "Again"}, headers=admin.headers)
    assert problem_code(again, 403) == "permission-denied"
    refused = client.post(
        INVITATIONS, json={"email": "n@example.com", "role": "viewer"}, headers=admin.headers
    )
    assert problem_code(refused, 403) == "permission-denied"


def test_a_role_change_is_audited(client, runtime, team):
    owner, editor = team[Role.OWNER], team[Role.EDITOR]
    assert set_role(client, owner, editor, Role.ADMIN).status_code == 200
    (event,) = audit_events(runtime, AuditEventType.MEMBER_ROLE_CHANGED)
    assert event.workspace_id == owner.workspace_id
    assert (event.actor_type, event.actor_id) == ("user", str(owner.user_id))
    assert (event.target_type, event.target_id) == ("user", str(editor.user_id))
    assert '"from":"editor"' in event.context
    assert '"to":"admin"' in event.context


def test_setting_the_same_role_changes_nothing(client, runtime, team):
    editor = team[Role.EDITOR]
    assert set_role(client, team[Role.OWNER], editor, Role.EDITOR).status_code == 200
    assert client.get(ME, headers=editor.headers).status_code == 200
    assert audit_events(runtime, AuditEventType.MEMBER_ROLE_CHANGED) == []


# Removal ------------------------------------------------------------------------------------


def test_a_removed_members_every_credential_dies_at_once(client, runtime, team):
    """R22, V7.4.x: the access token, the refresh token, the API keys they created and the
    invitations they sent are all dead in the same request that removed them."""
    owner, admin = team[Role.OWNER], team[Role.ADMIN]
    pair = token_pair(client, admin)
    key = client.post(
        f"{API}/api-keys", json={"name": "ci", "scopes": ["content:read"]}, headers=admin.headers
    )
    assert key.status_code == 201, key.text
    sent = invite(client, admin, "friend@example.com", Role.VIEWER)

    response = remove(client, owner, admin)
    assert response.status_code == 204, response.text

    problem(client.get(ME, headers=admin.headers), 401)
    problem(client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"}), 401)
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    problem(refreshed, 401)
    key_headers = {"Authorization": f"Bearer {key.json()['key']}"}
    problem(client.get(members_path(owner.workspace_id), headers=key_headers), 401)
    accepted = client.post(
        f"{INVITATIONS}/accept",
        json={"token": sent["token"], "display_name": "F", "password": "quartz lantern orbit 42"},
    )
    assert problem_code(accepted, 400) == "invalid-invitation"
    # Signing in again finds no membership here.
    problem(login(client, admin.email, PASSWORD, workspace_id=owner.workspace_id), 401)
    assert role_of(runtime, admin.user_id, owner.workspace_id) is None

    with unit_of_work(runtime.sessions) as session:
        sessions = session.scalars(
            select(AuthSession).where(AuthSession.user_id == admin.user_id)
        ).all()
        assert sessions
        assert all(s.revoked_at is not None for s in sessions)
        keys = session.scalars(select(ApiKey).where(ApiKey.created_by == admin.user_id)).all()
        assert keys
        assert all(k.revoked_at is not None for k in keys)
        invitation = session.get(Invitation, sent["id"])
        assert invitation.revoked_at is not None

    (event,) = audit_events(runtime, AuditEventType.MEMBER_MEMBER_REMOVED)
    assert event.target_id == str(admin.user_id)
    assert '"api_keys_revoked":1' in event.context
    assert '"invitations_revoked":1' in event.context


def test_removal_ends_sessions_in_this_workspace_only(client, runtime, team, people):
    """The removed member keeps their own workspace; only the epoch (every access token)
    is global, and a fresh sign-in there works."""
    owner = team[Role.OWNER]
    elsewhere = people("elsewhere@example.com")
    add_member(runtime, elsewhere.user_id, owner.workspace_id, Role.EDITOR)
    home_pair = token_pair(client, elsewhere)
    team_pair = tokens(client, elsewhere.email, workspace_id=owner.workspace_id)
    response = client.delete(
        members_path(owner.workspace_id, elsewhere.user_id), headers=owner.headers
    )
    assert response.status_code == 204, response.text
    problem(client.get(ME, headers=elsewhere.headers), 401)
    dead = client.post("/api/v1/auth/refresh", json={"refresh_token": team_pair["refresh_token"]})
    problem(dead, 401)
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": home_pair["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert client.get(ME, headers=headers).json()["workspace_id"] == elsewhere.workspace_id


def test_admin_removes_an_editor_and_a_member_may_leave(client, runtime, team):
    admin = team[Role.ADMIN]
    assert remove(client, admin, team[Role.EDITOR]).status_code == 204
    assert remove(client, admin, admin).status_code == 204
    assert role_of(runtime, admin.user_id, admin.workspace_id) is None


def test_demotion_revokes_invitations_the_member_may_no_longer_grant(client, runtime, team):
    """A demoted admin's pending admin invitation cannot hand the role back through another
    account; an invitation they may still grant stays; below member:invite, all go."""
    owner, admin = team[Role.OWNER], team[Role.ADMIN]
    high = invite(client, admin, "second-self@example.com", Role.ADMIN)
    low = invite(client, admin, "friend@example.com", Role.VIEWER)
    assert set_role(client, owner, admin, Role.EDITOR).status_code == 200
    with unit_of_work(runtime.sessions) as session:
        rows = {
            invitation_email(runtime, i): i.revoked_at for i in session.scalars(select(Invitation))
        }
    # Editors cannot invite at all, so both are revoked.
    assert rows["second-self@example.com"] is not None
    assert rows["friend@example.com"] is not None
    accepted = client.post(
        f"{INVITATIONS}/accept",
        json={"token": high["token"], "display_name": "Me Again", "password": PASSWORD},
    )
    assert accepted.status_code == 400
    assert low["token"] != high["token"]


def test_demoting_an_owner_to_admin_keeps_invitations_admins_may_grant(
    client, runtime, team, people
):
    owner = team[Role.OWNER]
    second = people("second-owner@example.com", role=Role.OWNER, workspace_id=owner.workspace_id)
    kept = invite(client, second, "kept@example.com", Role.ADMIN)
    gone = invite(client, second, "gone@example.com", Role.OWNER)
    assert set_role(client, owner, second, Role.ADMIN).status_code == 200
    with unit_of_work(runtime.sessions) as session:
        rows = {
            invitation_email(runtime, i): i.revoked_at for i in session.scalars(select(Invitation))
        }
    assert rows["kept@example.com"] is None
    assert rows["gone@example.com"] is not None
    assert kept["token"] != gone["token"]
