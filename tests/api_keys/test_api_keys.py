"""API keys over HTTP (R7): issuing, scopes, expiry, rotation, revocation, address
allow-lists, tenancy and storage. Each test names the ASVS requirement it proves."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, text

from plexus.api_keys.format import generate_key, is_plexus_key
from plexus.api_keys.service import HASH_PURPOSE, MAX_USABLE_KEYS, revoke_keys_of_user
from plexus.audit.events import Actor
from plexus.authz.permissions import Permission, Role
from plexus.db import unit_of_work
from plexus.models import Base
from plexus.models.identity import ApiKey

from api_key_helpers import (
    CONTENT_PUBLISH_PATH,
    CONTENT_READ_PATH,
    KEYS_PATH,
    assert_invalid_key,
    audit_events,
    content_routes_fixture,  # noqa: F401 - a fixture
    create_key,
    deactivate,
    from_ip,
    key_header,
    owner_fixture,  # noqa: F401 - a fixture
    remove_membership,
    set_role,
    stored_key,
)
from auth_helpers import bearer, create_user, sign_in


def _soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


# Issuing -------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_never_listed(client, owner):
    """V14.2.6, V8.2.3, V14.2.2: the key is in the creation response only (which no cache
    may keep); no response ever carries it or its hash afterwards."""
    created = client.post(
        KEYS_PATH,
        json={"name": "deploy bot", "scopes": ["content:write", "content:read"]},
        headers=owner.headers,
    )
    assert created.status_code == 201
    assert "no-store" in created.headers["cache-control"]
    body = created.json()
    key = body["key"]
    assert is_plexus_key(key)
    assert key.startswith("plx_test_")  # the test environment issues test keys
    assert key.startswith(body["display_prefix"])
    assert body["scopes"] == ["content:read", "content:write"]
    assert body["status"] == "active"
    assert body["created_by"] == owner.user_id
    assert "key_hash" not in body
    listed = client.get(KEYS_PATH, headers=owner.headers)
    one = client.get(f"{KEYS_PATH}/{body['id']}", headers=owner.headers)
    for response in (listed, one):
        assert response.status_code == 200
        assert key not in response.text
        assert key[len(body["display_prefix"]) :] not in response.text
        assert "hash" not in response.text
    assert listed.json()["items"][0]["display_prefix"] == body["display_prefix"]
    assert set(one.json()) == set(body) - {"key"}


def test_creation_is_audited(client, runtime, owner):
    """V16.3.1: key creation is an audit event naming the creator and the key."""
    body = create_key(client, owner, scopes=["content:read"])
    [event] = audit_events(runtime, "api_key:key:created")
    assert (event.actor_type, event.actor_id) == ("user", str(owner.user_id))
    assert (event.target_type, event.target_id) == ("api_key", str(body["id"]))
    assert event.workspace_id == owner.workspace_id
    assert body["key"] not in event.context


def test_database_holds_only_a_keyed_hash(client, runtime, owner):
    """V14.2.4, V11.2.1: no table holds the key; the stored value is an HMAC under the
    server's token key (not a bare hash someone could compute from a leaked key)."""
    created = create_key(client, owner, scopes=["content:read"])
    key = created["key"]
    assert client.get(CONTENT_READ_PATH, headers=key_header(key)).status_code == 200
    rotated = client.post(
        f"{KEYS_PATH}/{created['id']}/rotate", json={"grace_minutes": 5}, headers=owner.headers
    ).json()
    new_key = rotated["new_key"]["key"]
    secrets = [key, new_key, key.split("_")[2], new_key.split("_")[2]]
    with unit_of_work(runtime.sessions) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                dump = repr(tuple(row))
                for secret in secrets:
                    assert secret not in dump, f"{table.name} holds a key"
        stored = session.get(ApiKey, created["id"])
        assert stored is not None
        assert stored.key_hash == runtime.tokens.digest(HASH_PURPOSE, key)
        assert stored.key_hash != hashlib.sha256(key.encode()).hexdigest()


def test_scopes_beyond_the_creators_permissions_are_refused(client, runtime):
    """V8.2.1: an admin cannot give a key workspace:delete, which only owners hold."""
    admin = sign_in(runtime, client, "admin@example.com", role=Role.ADMIN)
    response = client.post(
        KEYS_PATH,
        json={"name": "x", "scopes": ["content:read", "workspace:delete"]},
        headers=admin.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert "workspace:delete" in body["detail"]
    assert body["errors"][0]["field"] == "body.scopes"
    assert client.get(KEYS_PATH, headers=admin.headers).json()["items"] == []


def test_instance_powers_are_never_given_to_a_key(client, runtime):
    """V8.2.1: an instance administrator holds instance:keys but cannot put it on a key."""
    create_user(runtime, "root@example.com", instance_admin=True)
    headers = bearer(client, "root@example.com")
    response = client.post(
        KEYS_PATH, json={"name": "x", "scopes": ["instance:keys"]}, headers=headers
    )
    assert response.status_code == 422
    assert "instance:keys" in response.json()["detail"]


def test_members_without_the_permission_cannot_manage_keys(client, runtime, owner):
    """V8.2.1: editors hold no api_key permission: they cannot list, create or revoke."""
    editor = sign_in(
        runtime, client, "editor@example.com", role=Role.EDITOR, workspace_id=owner.workspace_id
    )
    key = create_key(client, owner)
    assert client.get(KEYS_PATH, headers=editor.headers).status_code == 403
    created = client.post(
        KEYS_PATH, json={"name": "x", "scopes": ["content:read"]}, headers=editor.headers
    )
    assert created.status_code == 403
    assert client.delete(f"{KEYS_PATH}/{key['id']}", headers=editor.headers).status_code == 403
    assert client.get(CONTENT_READ_PATH, headers=key_header(key["key"])).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "", "scopes": ["content:read"]}, "body.name"),
        ({"name": "a\nb", "scopes": ["content:read"]}, "body.name"),
        ({"name": "a\u2028b", "scopes": ["content:read"]}, "body.name"),
        ({"name": "\u202eevil", "scopes": ["content:read"]}, "body.name"),
        ({"name": "o\x85k", "scopes": ["content:read"]}, "body.name"),
        ({"name": "   ", "scopes": ["content:read"]}, "body.name"),
        ({"name": "x" * 121, "scopes": ["content:read"]}, "body.name"),
        ({"name": 5, "scopes": ["content:read"]}, "body.name"),
        ({"name": "x", "scopes": []}, "body.scopes"),
        ({"name": "x", "scopes": ["content:nuke"]}, "body.scopes.0"),
        ({"name": "x", "scopes": "content:read"}, "body.scopes"),
        ({"name": "x", "scopes": ["content:read"], "role": "owner"}, "body.role"),
        ({"name": "x", "scopes": ["content:read"], "expires_at": "2030-01-01T00:00:00"}, None),
        ({"name": "x", "scopes": ["content:read"], "expires_at": 1900000000}, None),
        ({"name": "x", "scopes": ["content:read"], "expires_at": "tomorrow"}, None),
        ({"name": "x", "scopes": ["content:read"], "allowed_networks": ["10.0.0.0/33"]}, None),
        ({"name": "x", "scopes": ["content:read"], "allowed_networks": ["not-an-ip"]}, None),
        ({"name": "x", "scopes": ["content:read"], "allowed_networks": [""]}, None),
        ({"name": "x", "scopes": ["content:read"], "allowed_networks": ["::1/129"]}, None),
        ({"name": "x", "scopes": ["content:read"], "allowed_networks": ["10.1.2.3/24"]}, None),
        (
            {"name": "x", "scopes": ["content:read"], "allowed_networks": ["10.0.0.1"] * 33},
            "body.allowed_networks",
        ),
    ],
)
def test_invalid_creation_requests_are_422_problems(client, owner, payload, field):
    """V2.2.1, V15.3.3, V15.3.5: bad names, scopes, expiries and networks are 422
    problem+json (never a 500), and extra fields are refused."""
    response = client.post(KEYS_PATH, json=payload, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    fields = [e["field"] for e in errors]
    if field is not None:
        assert field in fields
    else:
        assert any(f.startswith(("body.expires_at", "body.allowed_networks")) for f in fields)


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (timedelta(minutes=-1), "future"),
        (timedelta(days=367), "366 days"),
    ],
)
def test_expiry_must_be_in_the_future_and_bounded(client, owner, delta, reason):
    """V2.2.2: an expiry in the past or more than 366 days ahead is refused."""
    response = client.post(
        KEYS_PATH,
        json={
            "name": "x",
            "scopes": ["content:read"],
            "expires_at": (datetime.now(UTC) + delta).isoformat(),
        },
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert reason in response.json()["detail"]


def test_networks_are_stored_in_canonical_form(client, owner):
    body = create_key(
        client,
        owner,
        allowed_networks=["203.0.113.0/24", "198.51.100.7", "2001:DB8::/32", "203.0.113.0/24"],
    )
    assert body["allowed_networks"] == ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"]


def test_creating_or_rotating_needs_a_recent_sign_in(client, owner):
    """V7.5.1, V7.5.3: a token from a sign-in older than the re-authentication window
    (10 minutes) cannot create or rotate keys."""
    key = create_key(client, owner)
    later = datetime.now(UTC) + timedelta(minutes=11)
    with time_machine.travel(later, tick=False):
        created = client.post(
            KEYS_PATH, json={"name": "x", "scopes": ["content:read"]}, headers=owner.headers
        )
        rotated = client.post(f"{KEYS_PATH}/{key['id']}/rotate", json={}, headers=owner.headers)
        # The token itself is still valid: reading works.
        listed = client.get(KEYS_PATH, headers=owner.headers)
    for response in (created, rotated):
        assert response.status_code == 403
        assert response.json()["type"] == "urn:plexus:problem:reauthentication-required"
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 1


def test_an_api_key_cannot_issue_keys(client, owner):
    """V7.5.1: a key holding api_key:create still cannot create or rotate keys (no person
    is present to re-authenticate); it can list them when scoped to."""
    key = create_key(client, owner, scopes=["api_key:create", "api_key:read"])
    headers = key_header(key["key"])
    created = client.post(
        KEYS_PATH, json={"name": "x", "scopes": ["content:read"]}, headers=headers
    )
    assert created.status_code == 403
    assert created.json()["type"] == "urn:plexus:problem:reauthentication-required"
    rotated = client.post(f"{KEYS_PATH}/{key['id']}/rotate", json={}, headers=headers)
    assert rotated.status_code == 403
    assert client.get(KEYS_PATH, headers=headers).status_code == 200


def test_a_workspace_has_a_bounded_number_of_usable_keys(client, owner):
    """V2.3.2: past the quota a new key is a 409; a revoked key frees its place."""
    ids = [create_key(client, owner)["id"] for _ in range(MAX_USABLE_KEYS)]
    refused = client.post(
        KEYS_PATH, json={"name": "x", "scopes": ["content:read"]}, headers=owner.headers
    )
    assert refused.status_code == 409
    assert client.delete(f"{KEYS_PATH}/{ids[0]}", headers=owner.headers).status_code == 204
    create_key(client, owner)


# Using keys ----------------------------------------------------------------------------


def test_a_read_key_cannot_publish_and_the_denial_is_audited(client, runtime, owner):
    """V8.2.1, V10.3.2, V16.3.2: a key scoped to content:read reads but cannot reach a
    content:publish route, although its creator (an owner) could; the denial is an audit
    event naming the key and the permission."""
    key = create_key(client, owner, scopes=["content:read"])
    headers = key_header(key["key"])
    read = client.get(CONTENT_READ_PATH, headers=headers)
    assert read.status_code == 200
    assert read.json() == {"read": True, "kind": "api_key", "key": key["id"]}
    published = client.post(CONTENT_PUBLISH_PATH, headers=headers)
    assert published.status_code == 403
    assert published.json()["type"] == "urn:plexus:problem:permission-denied"
    assert client.post(CONTENT_PUBLISH_PATH, headers=owner.headers).status_code == 200
    [event] = audit_events(runtime, "api_key:scope:denied")
    assert (event.actor_type, event.actor_id) == ("api_key", str(key["id"]))
    assert (event.target_type, event.target_id) == ("permission", "content:publish")
    assert event.result == "denied"
    assert event.workspace_id == owner.workspace_id


def test_a_person_refused_a_permission_is_not_a_key_denial(client, runtime, owner):
    """note_scope_denial concerns keys only: a viewer refused publish is no key event."""
    viewer = sign_in(
        runtime, client, "viewer@example.com", role=Role.VIEWER, workspace_id=owner.workspace_id
    )
    assert client.post(CONTENT_PUBLISH_PATH, headers=viewer.headers).status_code == 403
    assert audit_events(runtime, "api_key:scope:denied") == []


def test_use_records_when_and_from_where(client, app, owner):
    """Project extra "API keys": last_used_at and the last address are recorded."""
    key = create_key(client, owner)
    assert (
        client.get(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).json()["last_used_at"] is None
    )
    assert (
        from_ip(app, "203.0.113.5")
        .get(CONTENT_READ_PATH, headers=key_header(key["key"]))
        .status_code
        == 200
    )
    shown = client.get(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).json()
    assert shown["last_used_ip"] == "203.0.113.5"
    used_at = datetime.fromisoformat(shown["last_used_at"])
    assert abs((datetime.now(UTC) - used_at).total_seconds()) < 60


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"), id="bad-checksum"),
        pytest.param(lambda _key: generate_key("test"), id="never-issued"),
        pytest.param(lambda _key: generate_key("live"), id="other-environment"),
        pytest.param(lambda key: key.replace("plx_test_", "plx_live_"), id="env-swapped"),
        pytest.param(lambda key: key + "x", id="too-long"),
        pytest.param(lambda _key: "plx_test_short", id="malformed"),
        pytest.param(lambda _key: "plx_" + "a" * 5000, id="huge"),
    ],
)
def test_every_wrong_key_gets_the_same_401(client, owner, make_key):
    """V7.2.1, V6.3.8-style uniformity: malformed, mistyped, unknown and other-environment
    keys all get one answer."""
    key = create_key(client, owner)["key"]
    assert_invalid_key(client.get(CONTENT_READ_PATH, headers=key_header(make_key(key))))


def test_a_revoked_key_is_refused_at_once_and_the_revocation_audited(client, runtime, owner):
    """V7.4.1, V10.4.9, V16.3.1: revocation is immediate, idempotent and audited once."""
    key = create_key(client, owner)
    headers = key_header(key["key"])
    assert client.get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert client.delete(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).status_code == 204
    assert_invalid_key(client.get(CONTENT_READ_PATH, headers=headers))
    assert client.delete(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).status_code == 204
    shown = client.get(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).json()
    assert shown["status"] == "revoked"
    [event] = audit_events(runtime, "api_key:key:revoked")
    assert (event.actor_type, event.actor_id) == ("user", str(owner.user_id))
    assert event.target_id == str(key["id"])
    # A revoked key cannot be rotated back to life either.
    rotated = client.post(f"{KEYS_PATH}/{key['id']}/rotate", json={}, headers=owner.headers)
    assert rotated.status_code == 409


def test_an_expired_key_is_refused(client, owner):
    """V7.3.2-style absolute lifetime: a key is refused from its expiry on, and listed as
    expired."""
    key = create_key(client, owner, expires_at=_soon(minutes=10))
    headers = key_header(key["key"])
    path = f"{KEYS_PATH}/{key['id']}"
    assert client.get(CONTENT_READ_PATH, headers=headers).status_code == 200
    assert client.get(path, headers=owner.headers).json()["status"] == "active"
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=11), tick=False):
        assert_invalid_key(client.get(CONTENT_READ_PATH, headers=headers))
        assert client.get(path, headers=owner.headers).json()["status"] == "expired"
        rotated = client.post(f"{path}/rotate", json={}, headers=bearer(client, owner.email))
        assert rotated.status_code == 409


def test_a_rotated_key_works_until_its_grace_period_ends(client, runtime, owner):
    """V11.2.2-style rotation: the new key works at once; the old one until the grace
    period ends, then 401. The rotation is audited and the old key cannot be rotated
    again."""
    key = create_key(client, owner, scopes=["content:read", "content:publish"])
    response = client.post(
        f"{KEYS_PATH}/{key['id']}/rotate", json={"grace_minutes": 30}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    new = body["new_key"]
    assert is_plexus_key(new["key"])
    assert new["key"] != key["key"]
    assert new["scopes"] == key["scopes"]
    assert body["previous_key"]["status"] == "rotating"
    assert body["previous_key"]["rotated_to_id"] == new["id"]
    old_headers, new_headers = key_header(key["key"]), key_header(new["key"])
    assert client.get(CONTENT_READ_PATH, headers=old_headers).status_code == 200
    assert client.post(CONTENT_PUBLISH_PATH, headers=new_headers).status_code == 200
    again = client.post(f"{KEYS_PATH}/{key['id']}/rotate", json={}, headers=owner.headers)
    assert again.status_code == 409
    start = datetime.now(UTC)
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert client.get(CONTENT_READ_PATH, headers=old_headers).status_code == 200
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        assert_invalid_key(client.get(CONTENT_READ_PATH, headers=old_headers))
        assert client.get(CONTENT_READ_PATH, headers=new_headers).status_code == 200
    [event] = audit_events(runtime, "api_key:key:rotated")
    assert event.target_id == str(key["id"])
    assert f'"replacement_id":{new["id"]}' in event.context


def test_rotation_with_no_grace_ends_the_old_key_at_once(client, owner):
    key = create_key(client, owner)
    response = client.post(
        f"{KEYS_PATH}/{key['id']}/rotate", json={"grace_minutes": 0}, headers=owner.headers
    )
    assert response.status_code == 201
    assert_invalid_key(client.get(CONTENT_READ_PATH, headers=key_header(key["key"])))
    new_key = response.json()["new_key"]["key"]
    assert client.get(CONTENT_READ_PATH, headers=key_header(new_key)).status_code == 200


def test_rotation_keeps_an_earlier_expiry(client, owner):
    """A grace period never extends a key past the expiry it already had."""
    key = create_key(client, owner, expires_at=_soon(minutes=10))
    body = client.post(
        f"{KEYS_PATH}/{key['id']}/rotate", json={"grace_minutes": 60}, headers=owner.headers
    ).json()
    assert body["previous_key"]["expires_at"] == key["expires_at"]
    assert body["new_key"]["expires_at"] == key["expires_at"]


@pytest.mark.parametrize("grace", [-1, 10081, "5", 1.5, None])
def test_invalid_grace_periods_are_422(client, owner, grace):
    key = create_key(client, owner)
    response = client.post(
        f"{KEYS_PATH}/{key['id']}/rotate", json={"grace_minutes": grace}, headers=owner.headers
    )
    assert response.status_code == 422


def test_rotating_needs_every_scope_of_the_key(client, runtime, owner):
    """V8.2.1: an admin cannot reissue an owner's key that holds workspace:delete."""
    key = create_key(client, owner, scopes=["workspace:delete"])
    admin = sign_in(
        runtime, client, "admin@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    response = client.post(f"{KEYS_PATH}/{key['id']}/rotate", json={}, headers=admin.headers)
    assert response.status_code == 403
    assert "workspace:delete" in response.json()["detail"]
    assert (
        client.get(f"{KEYS_PATH}/{key['id']}", headers=owner.headers).json()["status"] == "active"
    )


def test_ip_allow_list(client, app, owner):
    """V8.2.1-style contextual restriction: a key bound to networks is refused from any
    other address (and when the address is unknown)."""
    key = create_key(client, owner, allowed_networks=["203.0.113.0/24", "2001:db8::/32"])
    headers = key_header(key["key"])
    for ip in ("203.0.113.9", "2001:db8::7", "::ffff:203.0.113.10"):
        assert from_ip(app, ip).get(CONTENT_READ_PATH, headers=headers).status_code == 200, ip
    for ip in ("198.51.100.1", "203.0.114.1", "2001:db9::1", "testclient"):
        assert_invalid_key(from_ip(app, ip).get(CONTENT_READ_PATH, headers=headers))


def test_a_demoted_creator_s_key_loses_the_rights_at_once(client, runtime, owner):
    """V8.3.2 (L3): scopes are intersected with the creator's current role at every use:
    demoting the creator takes publish away from their key on its very next request,
    and restoring the role gives it back."""
    admin = sign_in(
        runtime, client, "admin@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    key = create_key(client, admin, scopes=["content:read", "content:publish"])
    headers = key_header(key["key"])
    assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 200
    set_role(runtime, admin, Role.VIEWER)
    assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 403
    assert client.get(CONTENT_READ_PATH, headers=headers).status_code == 200
    [denial] = audit_events(runtime, "api_key:scope:denied")
    assert '"reason":"creator_role"' in denial.context
    set_role(runtime, admin, Role.EDITOR)
    assert client.post(CONTENT_PUBLISH_PATH, headers=headers).status_code == 200


def test_a_removed_or_disabled_creator_s_keys_stop_working(client, runtime, owner):
    """V7.4.2, R22: a key acts for its creator; without an active membership it is dead."""
    removed = sign_in(
        runtime, client, "removed@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    disabled = sign_in(
        runtime, client, "disabled@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    removed_key = create_key(client, removed)["key"]
    disabled_key = create_key(client, disabled)["key"]
    remove_membership(runtime, removed)
    deactivate(runtime, disabled)
    assert_invalid_key(client.get(CONTENT_READ_PATH, headers=key_header(removed_key)))
    assert_invalid_key(client.get(CONTENT_READ_PATH, headers=key_header(disabled_key)))


def test_revoke_keys_of_user_revokes_and_audits_each(client, runtime, owner):
    """R22: removing a member revokes every key they created in that workspace (and no
    other key), each revocation audited."""
    admin = sign_in(
        runtime, client, "admin@example.com", role=Role.ADMIN, workspace_id=owner.workspace_id
    )
    theirs = [create_key(client, admin)["key"] for _ in range(2)]
    mine = create_key(client, owner)["key"]
    with unit_of_work(runtime.sessions) as session:
        count = revoke_keys_of_user(
            session, admin.user_id, owner.workspace_id, actor=Actor("user", str(owner.user_id))
        )
    assert count == 2
    for key in theirs:
        assert_invalid_key(client.get(CONTENT_READ_PATH, headers=key_header(key)))
    assert client.get(CONTENT_READ_PATH, headers=key_header(mine)).status_code == 200
    events = audit_events(runtime, "api_key:key:revoked")
    assert len(events) == 2
    assert all(e.actor_id == str(owner.user_id) for e in events)
    assert all('"reason":"creator_removed"' in e.context for e in events)
    with unit_of_work(runtime.sessions) as session:
        assert revoke_keys_of_user(session, admin.user_id, owner.workspace_id) == 0


# Tenancy -------------------------------------------------------------------------------


def test_another_workspace_s_key_is_a_404(client, runtime, owner):
    """V8.2.2, V8.4.1: a member of workspace B can neither see, rotate nor revoke
    workspace A's key; each attempt is a 404 that does not confirm it exists."""
    other = sign_in(runtime, client, "other@example.com")
    assert other.workspace_id != owner.workspace_id
    key = create_key(client, owner)
    path = f"{KEYS_PATH}/{key['id']}"
    missing = client.get(f"{KEYS_PATH}/999999", headers=other.headers)
    for response in (
        client.get(path, headers=other.headers),
        client.post(f"{path}/rotate", json={}, headers=other.headers),
        client.delete(path, headers=other.headers),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == missing.json()["detail"]
    assert client.get(KEYS_PATH, headers=other.headers).json()["items"] == []
    assert client.get(CONTENT_READ_PATH, headers=key_header(key["key"])).status_code == 200
    assert client.get(path, headers=owner.headers).json()["status"] == "active"


def test_a_key_acts_in_its_own_workspace_only(client, runtime, owner):
    """V8.4.1: a key listing keys sees its own workspace's keys only."""
    other = sign_in(runtime, client, "other@example.com")
    create_key(client, other)
    mine = create_key(client, owner, scopes=["api_key:read"])
    listed = client.get(KEYS_PATH, headers=key_header(mine["key"])).json()["items"]
    assert [k["id"] for k in listed] == [mine["id"]]


@pytest.mark.parametrize("key_id", ["0", "-1", "abc", str(2**63), "1e3"])
def test_bad_key_ids_are_422(client, owner, key_id):
    """V2.2.1: an id outside what the database holds is a 422, never a database error."""
    assert client.get(f"{KEYS_PATH}/{key_id}", headers=owner.headers).status_code == 422
    assert client.delete(f"{KEYS_PATH}/{key_id}", headers=owner.headers).status_code == 422


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=x"])
def test_bad_list_parameters_are_422(client, owner, query):
    assert client.get(f"{KEYS_PATH}?{query}", headers=owner.headers).status_code == 422


def test_listing_pages_newest_first(client, owner):
    ids = [create_key(client, owner, name=f"k{i}")["id"] for i in range(3)]
    first = client.get(f"{KEYS_PATH}?limit=2", headers=owner.headers).json()["items"]
    rest = client.get(f"{KEYS_PATH}?limit=2&offset=2", headers=owner.headers).json()["items"]
    assert [k["id"] for k in first + rest] == list(reversed(ids))


def test_key_permissions_never_include_instance_powers(client, runtime):
    """V8.2.1: an instance administrator's key holds no instance power, whatever its role."""
    create_user(runtime, "root@example.com", instance_admin=True)
    headers = bearer(client, "root@example.com")
    key = client.post(
        KEYS_PATH, json={"name": "x", "scopes": ["security:read"]}, headers=headers
    ).json()
    with unit_of_work(runtime.sessions) as session:
        from plexus.api_keys.service import authenticate

        principal = authenticate(session, runtime, key["key"], "203.0.113.5")
    assert principal.permissions == frozenset({Permission.SECURITY_READ})
    assert not principal.is_instance_admin
    assert principal.mfa is False
    assert principal.mfa_required is False
    assert principal.api_key_id == key["id"]
    assert stored_key(runtime, key["id"]).last_used_ip == "203.0.113.5"


def test_stored_scopes_this_version_does_not_know_grant_nothing(client, runtime, owner):
    """A scope name left in the database by another version is ignored, not a 500."""
    key = create_key(client, owner, scopes=["content:read"])
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            text("UPDATE api_keys SET scopes = :s WHERE id = :i"),
            {"s": '["content:read", "content:teleport"]', "i": key["id"]},
        )
    assert client.get(CONTENT_READ_PATH, headers=key_header(key["key"])).status_code == 200
    shown = client.get(f"{KEYS_PATH}/{key['id']}", headers=owner.headers)
    assert shown.status_code == 200
    assert shown.json()["scopes"] == ["content:read"]
