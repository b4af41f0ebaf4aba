"""Invitations (R2; ASVS V6.4.1, V2.3.4, V7.2.3, V6.2.x), over HTTP.

Tokens are random (≥128 bits), stored as a keyed hash, shown once, single-use (also under
20 parallel acceptances) and expiring; unknown, used, expired and revoked tokens all get
one answer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import time_machine

from plexus.audit.events import AuditEventType
from plexus.authz.permissions import Role

from auth_helpers import add_member, bearer
from workspace_helpers import (
    ACCEPT,
    ACCEPT_EXISTING,
    API,
    INVITATIONS,
    NEW_PASSWORD,
    accept,
    audit_events,
    counts,
    env_vars_fixture,  # noqa: F401 - a fixture
    invite,
    owner_fixture,  # noqa: F401 - a fixture
    people_fixture,  # noqa: F401 - a fixture
    problem,
    problem_code,
    role_of,
    stored_invitation,
    team_fixture,  # noqa: F401 - a fixture
    user_by_email,
    without_request_id,
)

ME = f"{API}/me"


def test_an_invitation_token_is_random_shown_once_and_stored_hashed(client, runtime, owner):
    """V7.2.3 / V6.4.1: ≥128 random bits; only an HMAC is stored; the list never shows it."""
    first = invite(client, owner, "Grace@Example.COM", Role.EDITOR)
    second = invite(client, owner, "linus@example.com", Role.VIEWER)
    token = first["token"]
    assert len(token) >= 43  # 32 bytes, base64url
    assert token != second["token"]
    assert first["email"] == "grace@example.com"
    assert first["role"] == "editor"
    assert first["invited_by"] == owner.user_id
    stored = stored_invitation(runtime, first["id"])
    assert stored.token_hash == runtime.tokens.digest("invitation", token)
    assert token not in stored.token_hash

    listed = client.get(INVITATIONS, headers=owner.headers)
    assert listed.status_code == 200, listed.text
    assert {i["id"] for i in listed.json()} == {first["id"], second["id"]}
    assert all("token" not in i for i in listed.json())
    assert token not in listed.text


def test_an_invitation_expires_after_seven_days_by_default(client, owner):
    body = invite(client, owner, "grace@example.com")
    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires - created == timedelta(days=7)
    shorter = invite(client, owner, "ada@example.com", expires_in_days=1)
    span = datetime.fromisoformat(shorter["expires_at"]) - datetime.fromisoformat(
        shorter["created_at"]
    )
    assert span == timedelta(days=1)


def test_accepting_creates_the_account_and_membership(client, runtime, owner):
    body = invite(client, owner, "grace@example.com", Role.CONTRIBUTOR)
    response = accept(client, body["token"], display_name="Grace Hopper")
    assert response.status_code == 201, response.text
    accepted = response.json()
    assert accepted["workspace_id"] == owner.workspace_id
    assert accepted["role"] == "contributor"
    user = user_by_email(runtime, "grace@example.com")
    assert user is not None
    assert user.id == accepted["user_id"]
    assert user.display_name == "Grace Hopper"
    assert user.password_hash
    assert NEW_PASSWORD not in user.password_hash
    assert user.is_instance_admin is False

    headers = bearer(client, "grace@example.com", NEW_PASSWORD)
    me = client.get(ME, headers=headers).json()
    assert me["workspace_id"] == owner.workspace_id
    assert me["role"] == "contributor"
    # No longer pending.
    assert client.get(INVITATIONS, headers=owner.headers).json() == []
    stored = stored_invitation(runtime, body["id"])
    assert stored.accepted_by == user.id

    (event,) = [
        e
        for e in audit_events(runtime, AuditEventType.INVITATION_INVITATION_ACCEPTED)
        if e.result == "success"
    ]
    assert event.workspace_id == owner.workspace_id
    assert (event.actor_type, event.actor_id) == ("user", str(user.id))
    assert audit_events(runtime, AuditEventType.USER_ACCOUNT_CREATED)
    assert audit_events(runtime, AuditEventType.INVITATION_INVITATION_CREATED)
    added = audit_events(runtime, AuditEventType.MEMBER_MEMBER_ADDED)
    assert [e.target_id for e in added] == [str(user.id)]


def test_unknown_used_expired_and_revoked_tokens_get_one_answer(client, runtime, owner):
    """V6.4.1: an invitation works once and not after expiry; no answer says which."""
    used = invite(client, owner, "used@example.com")
    assert accept(client, used["token"]).status_code == 201
    revoked = invite(client, owner, "revoked@example.com")
    assert client.delete(f"{INVITATIONS}/{revoked['id']}", headers=owner.headers).status_code == 204
    expiring = invite(client, owner, "late@example.com", expires_in_days=1)

    answers = [
        accept(client, used["token"]),
        accept(client, revoked["token"]),
        accept(client, "A" * 43),
    ]
    with time_machine.travel(datetime.now(UTC) + timedelta(days=1, minutes=1)):
        answers.append(accept(client, expiring["token"]))
    bodies = [without_request_id(problem(a, 400)) for a in answers]
    assert all(b == bodies[0] for b in bodies), bodies
    assert bodies[0]["type"] == "urn:plexus:problem:invalid-invitation"
    assert user_by_email(runtime, "revoked@example.com") is None
    assert user_by_email(runtime, "late@example.com") is None
    failures = [
        e
        for e in audit_events(runtime, AuditEventType.INVITATION_INVITATION_ACCEPTED)
        if e.result == "failure"
    ]
    reasons = sorted(e.context for e in failures)
    assert len(reasons) == 4
    assert any('"expired"' in r for r in reasons)
    assert any('"revoked"' in r for r in reasons)


def test_an_invitation_works_until_just_before_it_expires(client, owner):
    body = invite(client, owner, "grace@example.com", expires_in_days=1)
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=23, minutes=59)):
        assert accept(client, body["token"]).status_code == 201


def test_twenty_parallel_acceptances_yield_exactly_one_member(client, runtime, owner):
    """V2.3.4 / V15.4.2: one atomic conditional update decides; the rest get the one 4xx."""
    body = invite(client, owner, "grace@example.com")
    users_before, workspaces_before, members_before = counts(runtime)

    def attempt(_n: int):
        return accept(client, body["token"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [400] * 19, [r.text for r in results if r.status_code != 400]
    assert counts(runtime) == (users_before + 1, workspaces_before, members_before + 1)


def test_a_weak_password_is_refused_and_the_invitation_stays_usable(client, runtime, owner):
    """V6.2.x: the password policy applies to invited accounts; nothing is consumed."""
    body = invite(client, owner, "grace@example.com")
    weak = accept(client, body["token"], password="password1234")
    refused = problem(weak, 422)
    assert refused["errors"]
    assert all(e["field"] == "password" for e in refused["errors"])
    assert user_by_email(runtime, "grace@example.com") is None
    assert stored_invitation(runtime, body["id"]).accepted_at is None
    assert accept(client, body["token"]).status_code == 201


def test_an_existing_account_accepts_only_when_signed_in_as_itself(client, runtime, people):
    owner = people("owner@example.com")
    grace = people("grace@example.com")
    mallory = people("mallory@example.com")
    body = invite(client, owner, "grace@example.com", Role.EDITOR)

    # Without signing in: the account exists, so this path is refused (and uses nothing).
    assert problem_code(accept(client, body["token"]), 409) == "account-exists"
    # Signed in as someone else: the same answer as an invalid token.
    wrong = client.post(ACCEPT_EXISTING, json={"token": body["token"]}, headers=mallory.headers)
    assert problem_code(wrong, 400) == "invalid-invitation"
    problem(client.post(ACCEPT_EXISTING, json={"token": body["token"]}), 401)

    right = client.post(ACCEPT_EXISTING, json={"token": body["token"]}, headers=grace.headers)
    assert right.status_code == 201, right.text
    assert right.json() == {
        "workspace_id": owner.workspace_id,
        "user_id": grace.user_id,
        "role": "editor",
    }
    assert role_of(runtime, grace.user_id, owner.workspace_id) == "editor"
    assert role_of(runtime, mallory.user_id, owner.workspace_id) is None
    again = client.post(ACCEPT_EXISTING, json={"token": body["token"]}, headers=grace.headers)
    assert problem_code(again, 400) == "invalid-invitation"
    headers = bearer(client, "grace@example.com", workspace_id=owner.workspace_id)
    assert client.get(ME, headers=headers).json()["role"] == "editor"


def test_accepting_into_a_workspace_one_already_belongs_to_uses_nothing(client, runtime, people):
    owner = people("owner@example.com")
    grace = people("grace@example.com")
    body = invite(client, owner, "grace@example.com", Role.EDITOR)
    add_member(runtime, grace.user_id, owner.workspace_id, Role.VIEWER)
    response = client.post(ACCEPT_EXISTING, json={"token": body["token"]}, headers=grace.headers)
    assert problem_code(response, 409) == "conflict"
    assert stored_invitation(runtime, body["id"]).accepted_at is None
    assert role_of(runtime, grace.user_id, owner.workspace_id) == "viewer"


def test_nobody_invites_above_their_own_role(client, team):
    admin = team[Role.ADMIN]
    for role, status in ((Role.OWNER, 403), (Role.ADMIN, 201), (Role.VIEWER, 201)):
        response = client.post(
            INVITATIONS,
            json={"email": f"{role}-new@example.com", "role": role},
            headers=admin.headers,
        )
        assert response.status_code == status, response.text


def test_an_admin_cannot_revoke_an_owner_invitation(client, team):
    owner, admin = team[Role.OWNER], team[Role.ADMIN]
    body = invite(client, owner, "boss@example.com", Role.OWNER)
    refused = client.delete(f"{INVITATIONS}/{body['id']}", headers=admin.headers)
    assert problem_code(refused, 403) == "permission-denied"
    assert client.delete(f"{INVITATIONS}/{body['id']}", headers=owner.headers).status_code == 204


def test_members_and_pending_addresses_are_not_invited_twice(client, team):
    owner = team[Role.OWNER]
    member = client.post(
        INVITATIONS,
        json={"email": team[Role.EDITOR].email, "role": "viewer"},
        headers=owner.headers,
    )
    assert problem_code(member, 409) == "conflict"
    invite(client, owner, "grace@example.com")
    twice = client.post(
        INVITATIONS, json={"email": "GRACE@example.com", "role": "viewer"}, headers=owner.headers
    )
    assert problem_code(twice, 409) == "conflict"


def test_revoking_is_audited_and_happens_once(client, runtime, owner):
    body = invite(client, owner, "grace@example.com")
    path = f"{INVITATIONS}/{body['id']}"
    assert client.delete(path, headers=owner.headers).status_code == 204
    assert problem_code(client.delete(path, headers=owner.headers), 409) == "conflict"
    assert problem_code(client.delete(f"{INVITATIONS}/99999", headers=owner.headers), 404)
    (event,) = audit_events(runtime, AuditEventType.INVITATION_INVITATION_REVOKED)
    assert event.target_id == str(body["id"])
    assert client.get(INVITATIONS, headers=owner.headers).json() == []


def test_invalid_invitation_requests_are_422(client, owner):
    """V2.2.1 and V1.3.11: a malformed address (or one carrying a header) is refused."""
    for payload in (
        {"email": "not-an-address", "role": "viewer"},
        {"email": "a@example.com\r\nBcc: x@example.com", "role": "viewer"},
        {"email": "a@example.com", "role": "root"},
        {"email": "a@example.com", "role": "viewer", "expires_in_days": 0},
        {"email": "a@example.com", "role": "viewer", "expires_in_days": 31},
        {"email": "a@example.com", "role": "viewer", "extra": 1},
    ):
        response = client.post(INVITATIONS, json=payload, headers=owner.headers)
        assert problem_code(response, 422) == "validation-failed", payload
    for payload in (
        {"token": "short", "display_name": "G", "password": NEW_PASSWORD},
        {"token": "A" * 43, "display_name": "", "password": NEW_PASSWORD},
        {"token": "A" * 43, "display_name": "G", "password": "x" * 1025},
        {"token": "A" * 43},
    ):
        response = client.post(ACCEPT, json=payload)
        assert problem_code(response, 422) == "validation-failed", payload


def test_a_bad_display_name_does_not_use_the_invitation(client, runtime, owner):
    body = invite(client, owner, "grace@example.com")
    refused = accept(client, body["token"], display_name="Grace\u202eHopper")
    assert problem_code(refused, 422) == "validation-failed"
    assert stored_invitation(runtime, body["id"]).accepted_at is None


def test_inviting_is_rate_limited(client, owner):
    """V2.4.1: the invitation class (30 an hour) answers 429 with Retry-After."""
    statuses = []
    for n in range(31):
        response = client.post(
            INVITATIONS,
            json={"email": f"p{n}@example.com", "role": "viewer"},
            headers=owner.headers,
        )
        statuses.append(response.status_code)
    assert statuses[:30] == [201] * 30
    assert statuses[30] == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_accepting_is_rate_limited_per_address(client):
    statuses = [accept(client, "B" * 43).status_code for _ in range(31)]
    assert statuses[:30] == [400] * 30
    assert statuses[30] == 429
