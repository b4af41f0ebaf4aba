"""``/api/v1/security/ip-blocks`` and ``/ip-allows`` (R16; ASVS 16.3.x: every change is
audited): instance administrators only, CIDR checked (422), conflicts refused (409)."""

from __future__ import annotations

import pytest

from plexus.audit.events import AuditEventType

from auth_helpers import bearer, create_user
from guard_helpers import ADMIN_IP, ALLOWS, BLOCKS, assert_problem, context, deployment


@pytest.fixture
def deployed(env_vars):
    with deployment(env_vars) as deployed:
        yield deployed


def test_manual_block_list_and_lift(deployed):
    """A manual block refuses its whole network at once, is listed with its details, and
    is lifted by DELETE; each change is an audit event naming the administrator."""
    admin, headers = deployed.admin()
    made = admin.post(
        BLOCKS,
        json={"network": "203.0.113.0/24", "reason": "scraping", "minutes": 60},
        headers=headers,
    )
    rule = made.json()
    inside = deployed.client("203.0.113.200").get("/api/v1/")
    outside = deployed.client("203.0.114.1").get("/api/v1/")
    listed = admin.get(BLOCKS, headers=headers).json()["items"]
    lifted = admin.delete(f"{BLOCKS}/{rule['id']}", headers=headers)
    again = admin.delete(f"{BLOCKS}/{rule['id']}", headers=headers)
    inside_after = deployed.client("203.0.113.200").get("/api/v1/")
    listed_after = admin.get(BLOCKS, headers=headers).json()["items"]
    blocked_audit = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)
    unblocked_audit = deployed.audit_events(AuditEventType.SECURITY_IP_UNBLOCKED)

    assert made.status_code == 201, made.text
    assert rule["network"] == "203.0.113.0/24"
    assert (rule["kind"], rule["source"], rule["level"]) == ("block", "manual", 0)
    assert rule["expires_at"] is not None
    assert_problem(inside, 403, "address-blocked")
    assert outside.status_code == 200
    assert [(r["id"], r["reason"], r["blocked_requests"]) for r in listed] == [
        (rule["id"], "scraping", 1)
    ]
    assert lifted.status_code == 204
    assert_problem(again, 404, "not-found")
    assert inside_after.status_code == 200
    assert listed_after == []
    [blocked] = blocked_audit
    [unblocked] = unblocked_audit
    for event in (blocked, unblocked):
        assert event.actor_type == "user"
        assert event.target_id == str(rule["id"])
        assert event.ip == ADMIN_IP
        assert context(event)["network"] == "203.0.113.0/24"
    assert context(blocked)["minutes"] == 60
    assert context(blocked)["reason"] == "scraping"


def test_ipv6_network_block(deployed):
    admin, headers = deployed.admin()
    made = admin.post(BLOCKS, json={"network": "2001:DB8:1::/48", "reason": "x"}, headers=headers)
    inside = deployed.client("2001:db8:1:ffff::5").get("/api/v1/")
    outside = deployed.client("2001:db8:2::5").get("/api/v1/")

    assert made.status_code == 201, made.text
    assert made.json()["network"] == "2001:db8:1::/48"
    assert made.json()["expires_at"] is None
    assert_problem(inside, 403, "address-blocked")
    assert outside.status_code == 200


@pytest.mark.parametrize(
    "network",
    [
        "10.0.0.300",
        "10.1.2.3/8",
        "not-an-address",
        "2001:db8::/129",
        "2001:db8::1/64",
        "10.0.0.0/8; DROP TABLE ip_rules",
        "1" * 49,
    ],
)
@pytest.mark.parametrize("path", [BLOCKS, ALLOWS])
def test_invalid_network_is_a_422_problem(deployed, network, path):
    """An invalid address or CIDR (or one with host bits set) is refused, never widened."""
    admin, headers = deployed.admin()
    answer = admin.post(path, json={"network": network, "reason": "test"}, headers=headers)

    body = assert_problem(answer, 422, "validation-failed")
    assert [e["field"] for e in body["errors"]] == ["body.network"]
    assert deployed.rules("block") == []
    assert deployed.rules("allow") == []


@pytest.mark.parametrize(
    "payload",
    [
        {"network": "", "reason": "x"},
        {"network": "192.0.2.1", "reason": ""},
        {"network": "192.0.2.1", "reason": "line one\nline two"},
        {"network": "192.0.2.1", "reason": "r" * 201},
        {"network": "192.0.2.1", "reason": "x", "minutes": 0},
        {"network": "192.0.2.1", "reason": "x", "minutes": 525_601},
        {"network": "192.0.2.1", "reason": "x", "minutes": "10"},
        {"network": "192.0.2.1", "reason": "x", "level": 9},
        {"network": ["192.0.2.1"], "reason": "x"},
    ],
)
def test_malformed_block_bodies_are_422_problems(deployed, payload):
    admin, headers = deployed.admin()
    answer = admin.post(BLOCKS, json=payload, headers=headers)

    assert_problem(answer, 422, "validation-failed")


def test_conflicting_changes_are_409_problems(deployed):
    """The same block twice, a block an allow entry would override, a block holding the
    administrator's own address, and the same allow entry twice are refused."""
    admin, headers = deployed.admin()
    first = admin.post(BLOCKS, json={"network": "198.51.100.0/24", "reason": "a"}, headers=headers)
    twice = admin.post(BLOCKS, json={"network": "198.51.100.0/24", "reason": "b"}, headers=headers)
    allow = admin.post(ALLOWS, json={"network": "192.0.2.128/25", "reason": "o"}, headers=headers)
    covered = admin.post(BLOCKS, json={"network": "192.0.2.192/26", "reason": "c"}, headers=headers)
    own = admin.post(BLOCKS, json={"network": "192.0.2.0/25", "reason": "d"}, headers=headers)
    allow_twice = admin.post(
        ALLOWS, json={"network": "192.0.2.128/25", "reason": "o"}, headers=headers
    )

    assert first.status_code == 201, first.text
    assert allow.status_code == 201, allow.text
    for answer in (twice, covered, own, allow_twice):
        assert_problem(answer, 409, "conflict")
    assert "own address" in own.json()["detail"]
    assert [r.network for r in deployed.rules("block")] == ["198.51.100.0/24"]


def test_allow_entry_lifts_blocks_inside_it_and_can_be_removed(deployed):
    admin, headers = deployed.admin()
    block = admin.post(BLOCKS, json={"network": "203.0.113.9", "reason": "b"}, headers=headers)
    blocked = deployed.client("203.0.113.9").get("/api/v1/")
    allow = admin.post(ALLOWS, json={"network": "203.0.113.0/28", "reason": "lab"}, headers=headers)
    served = deployed.client("203.0.113.9").get("/api/v1/")
    blocks_left = admin.get(BLOCKS, headers=headers).json()["items"]
    allows = admin.get(ALLOWS, headers=headers).json()["items"]
    removed = admin.delete(f"{ALLOWS}/{allow.json()['id']}", headers=headers)
    removed_again = admin.delete(f"{ALLOWS}/{allow.json()['id']}", headers=headers)
    wrong_kind = admin.delete(f"{BLOCKS}/{allow.json()['id']}", headers=headers)
    allows_after = admin.get(ALLOWS, headers=headers).json()["items"]
    unblocked = deployed.audit_events(AuditEventType.SECURITY_IP_UNBLOCKED)
    allowed = deployed.audit_events(AuditEventType.SECURITY_IP_ALLOWED)
    allow_removed = deployed.audit_events(AuditEventType.SECURITY_IP_ALLOW_REMOVED)

    assert block.status_code == 201, block.text
    assert_problem(blocked, 403, "address-blocked")
    assert allow.status_code == 201, allow.text
    assert served.status_code == 200
    assert blocks_left == []
    assert [(a["network"], a["kind"], a["reason"]) for a in allows] == [
        ("203.0.113.0/28", "allow", "lab")
    ]
    assert removed.status_code == 204
    assert_problem(removed_again, 404, "not-found")
    assert_problem(wrong_kind, 404, "not-found")
    assert allows_after == []
    assert [context(e)["why"] for e in unblocked] == ["allow-listed"]
    assert [e.target_id for e in allowed] == [str(allow.json()["id"])]
    assert [e.target_id for e in allow_removed] == [str(allow.json()["id"])]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", BLOCKS),
        ("POST", BLOCKS),
        ("DELETE", f"{BLOCKS}/1"),
        ("GET", ALLOWS),
        ("POST", ALLOWS),
        ("DELETE", f"{ALLOWS}/1"),
    ],
)
def test_only_instance_administrators_manage_the_lists(deployed, method, path):
    """A workspace owner is not an instance administrator (403); no credentials is 401."""
    create_user(deployed.runtime, "owner@example.org")
    client = deployed.client("198.51.100.5")
    headers = bearer(client, "owner@example.org")
    body = {"network": "203.0.113.0/24", "reason": "x"} if method == "POST" else None

    owner = client.request(method, path, json=body, headers=headers)
    anonymous = client.request(method, path, json=body)

    assert_problem(owner, 403, "permission-denied")
    assert_problem(anonymous, 401, "unauthorized")


@pytest.mark.parametrize("rule_id", ["0", "-1", "abc", str(2**63)])
def test_bad_rule_ids_are_422_problems(deployed, rule_id):
    admin, headers = deployed.admin()
    answer = admin.delete(f"{BLOCKS}/{rule_id}", headers=headers)

    assert_problem(answer, 422, "validation-failed")


def test_unknown_rule_is_404(deployed):
    admin, headers = deployed.admin()
    assert_problem(admin.delete(f"{BLOCKS}/4242", headers=headers), 404, "not-found")
    assert_problem(admin.delete(f"{ALLOWS}/4242", headers=headers), 404, "not-found")
