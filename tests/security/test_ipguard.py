"""Automatic IP blocks (R16; ASVS 6.3.1 credential stuffing, 4.1.3 unforgeable client
address, 16.3.1-16.3.4 security events in the audit log; the "IP blocking" extra).

Every test drives the running app over HTTP from clients at chosen addresses and reads
the outcome from responses, the audit chain, security events and ``ip_rules``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from plexus.audit.events import AuditEventType
from plexus.security.events import SecurityEventKind

from auth_helpers import bearer, browser_login, create_user, login
from guard_helpers import (
    ALLOWS,
    BLOCKS,
    assert_problem,
    context,
    deployment,
    details,
)

ATTACKER = "203.0.113.66"
BYSTANDER = "198.51.100.20"
PROXY = "10.0.0.2"


def _stuff(client, count: int, *, start: int = 0, headers=None) -> list[int]:
    """``count`` failed logins, each against a different account."""
    return [
        client.post(
            "/api/v1/auth/login",
            json={"email": f"victim{n}@example.org", "password": f"guess {n}"},
            headers=headers or {},
        ).status_code
        for n in range(start, start + count)
    ]


def test_credential_stuffing_from_one_address_gets_it_blocked(env_vars):
    """ASVS 6.3.1 / R16: failed logins across many accounts from one address block that
    address (403 on every path), raise IP_BLOCKED and CREDENTIAL_STUFFING security events
    and append an audit event; other addresses are unaffected."""
    with deployment(env_vars, rate_limits="block_login=5/hour") as deployed:
        for n in range(3):
            create_user(deployed.runtime, f"victim{n}@example.org")
        create_user(deployed.runtime, "real@example.org")
        attacker = deployed.client(ATTACKER)

        statuses = _stuff(attacker, 6)
        after = [
            attacker.post(
                "/api/v1/auth/login", json={"email": "real@example.org", "password": "x"}
            ),
            attacker.get("/healthz"),
            attacker.get("/no/such/path"),
        ]
        bystander = login(deployed.client(BYSTANDER), "real@example.org")
        rules = deployed.rules()
        blocked_audit = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)
        blocked_events = deployed.security_events(SecurityEventKind.IP_BLOCKED)
        stuffing_events = deployed.security_events(SecurityEventKind.CREDENTIAL_STUFFING)

    assert statuses == [401] * 6
    for response in after:
        assert_problem(response, 403, "address-blocked")
    assert bystander.status_code == 200
    [rule] = rules
    assert (rule.network, rule.source, rule.level) == (f"{ATTACKER}/32", "auto", 0)
    assert "credential stuffing" in rule.reason
    assert rule.expires_at is not None
    assert rule.expires_at - rule.created_at == timedelta(seconds=900)
    [audit] = blocked_audit
    assert (audit.actor_type, audit.actor_id, audit.ip) == ("system", "ip_guard", ATTACKER)
    assert (audit.target_type, audit.target_id) == ("ip_rule", str(rule.id))
    assert context(audit)["cause"] == "login"
    assert [e.ip for e in blocked_events] == [ATTACKER]
    assert [e.ip for e in stuffing_events] == [ATTACKER]
    assert details(stuffing_events[0])["network"] == f"{ATTACKER}/32"


def test_allow_listed_address_is_never_auto_blocked(env_vars):
    """R16: an allow-listed address can fail logins and collect 404s past every threshold
    and is still served; a manual block of its network does not apply to it either."""
    with deployment(env_vars, rate_limits="block_login=3/hour;block_errors=3/minute") as deployed:
        admin, headers = deployed.admin()
        allowed = admin.post(
            ALLOWS, json={"network": "203.0.113.77", "reason": "office NAT"}, headers=headers
        )
        block = admin.post(
            BLOCKS, json={"network": "203.0.113.0/24", "reason": "abuse"}, headers=headers
        )
        office = deployed.client("203.0.113.77")
        logins = _stuff(office, 8)
        misses = [office.get(f"/nothing/{n}").status_code for n in range(8)]
        neighbour = deployed.client("203.0.113.78").get("/healthz")
        still_served = office.get("/healthz")
        rules = deployed.rules()
        events = deployed.security_events(SecurityEventKind.IP_BLOCKED)

    assert allowed.status_code == 201, allowed.text
    assert block.status_code == 201, block.text
    assert logins == [401] * 8
    assert misses == [404] * 8
    assert still_served.status_code == 200
    assert_problem(neighbour, 403, "address-blocked")
    assert [r.source for r in rules] == ["manual"]
    assert events == []


def test_forwarded_for_from_an_untrusted_peer_changes_nothing(env_vars):
    """ASVS 4.1.3: an untrusted peer's ``X-Forwarded-For`` is ignored: the rate-limit key,
    the block and the audit address are the peer's own, whatever header it sends."""
    with deployment(
        env_vars, trusted_proxies=PROXY, rate_limits="block_login=4/hour;public=3/minute"
    ) as deployed:
        peer = deployed.client(ATTACKER)
        limited = [
            peer.get("/api/v1/", headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code
            for n in range(4)
        ]
        statuses = [
            peer.post(
                "/api/v1/auth/login",
                json={"email": f"v{n}@example.org", "password": "guess"},
                headers={"X-Forwarded-For": f"192.0.2.{n}"},
            ).status_code
            for n in range(5)
        ]
        disguised = peer.get("/healthz", headers={"X-Forwarded-For": "192.0.2.200"})
        rules = deployed.rules()
        [audit] = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)

    assert limited == [200, 200, 200, 429]
    assert statuses == [401] * 5
    assert_problem(disguised, 403, "address-blocked")
    assert [r.network for r in rules] == [f"{ATTACKER}/32"]
    assert audit.ip == ATTACKER


def test_forwarded_for_from_a_trusted_proxy_names_the_client(env_vars):
    """ASVS 4.1.3: behind a trusted proxy, budgets and blocks follow the forwarded client;
    the proxy and its other clients keep being served."""
    with deployment(
        env_vars, trusted_proxies=PROXY, rate_limits="block_login=4/hour;public=3/minute"
    ) as deployed:
        proxy = deployed.client(PROXY)
        bad = {"X-Forwarded-For": ATTACKER}
        good = {"X-Forwarded-For": BYSTANDER}
        limited = [proxy.get("/api/v1/", headers=bad).status_code for _ in range(4)]
        other_client = proxy.get("/api/v1/", headers=good)
        statuses = _stuff(proxy, 5, headers=bad)
        blocked = proxy.get("/healthz", headers=bad)
        served = proxy.get("/healthz", headers=good)
        proxy_itself = proxy.get("/healthz")
        rules = deployed.rules()
        [audit] = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)

    assert limited == [200, 200, 200, 429]
    assert other_client.status_code == 200
    assert statuses == [401] * 5
    assert_problem(blocked, 403, "address-blocked")
    assert served.status_code == 200
    assert proxy_itself.status_code == 200
    assert [r.network for r in rules] == [f"{ATTACKER}/32"]
    assert audit.ip == ATTACKER


def test_burst_of_not_found_responses_blocks_the_scanner(env_vars):
    """R16: a burst of 404s (a scanner walking paths) blocks the address; the event is
    IP_BLOCKED only (no credential stuffing was involved)."""
    with deployment(env_vars, rate_limits="block_errors=5/minute") as deployed:
        scanner = deployed.client(ATTACKER)
        misses = [scanner.get(f"/.env.{n}").status_code for n in range(6)]
        blocked = scanner.get("/api/v1/")
        rules = deployed.rules()
        [audit] = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)
        blocked_events = deployed.security_events(SecurityEventKind.IP_BLOCKED)
        stuffing = deployed.security_events(SecurityEventKind.CREDENTIAL_STUFFING)

    assert misses == [404] * 6
    assert_problem(blocked, 403, "address-blocked")
    [rule] = rules
    assert rule.network == f"{ATTACKER}/32"
    assert "401/403/404" in rule.reason
    assert context(audit)["cause"] == "errors"
    assert len(blocked_events) == 1
    assert stuffing == []


def test_burst_of_unauthorised_responses_blocks_the_prober(env_vars):
    """R16: 401s (guessing tokens) count towards the same burst as 404s."""
    with deployment(env_vars, rate_limits="block_errors=4/minute") as deployed:
        prober = deployed.client(ATTACKER)
        answers = [
            prober.get("/api/v1/me", headers={"Authorization": f"Bearer forged.{n}.token"})
            for n in range(5)
        ]
        blocked = prober.get("/api/v1/")

    assert [a.status_code for a in answers] == [401] * 5
    assert_problem(blocked, 403, "address-blocked")


def test_ipv6_client_is_blocked_by_its_slash_64(env_vars):
    """An IPv6 host holds a whole /64: rotating addresses inside it does not escape."""
    with deployment(env_vars, rate_limits="block_errors=3/minute") as deployed:
        misses = [
            deployed.client(f"2001:db8:5:6::{n:x}").get("/missing").status_code for n in range(4)
        ]
        same_net = deployed.client("2001:db8:5:6::ffff").get("/api/v1/")
        other_net = deployed.client("2001:db8:5:7::1").get("/api/v1/")
        rules = deployed.rules()

    assert misses == [404] * 4
    assert_problem(same_net, 403, "address-blocked")
    assert other_net.status_code == 200
    assert [r.network for r in rules] == ["2001:db8:5:6::/64"]


def test_repeated_csrf_failures_block_the_address(env_vars):
    """R16: refused CSRF tokens (a forging page driving a victim's browser, or a probe)
    count towards a block of the sending address."""
    with deployment(env_vars, rate_limits="block_csrf=3/10minutes") as deployed:
        create_user(deployed.runtime, "browser@example.org")
        browser = deployed.client(ATTACKER, base_url="https://testserver")
        browser_login(browser, "browser@example.org")
        refusals = [browser.post("/api/v1/auth/logout-all") for _ in range(4)]
        blocked = browser.get("/api/v1/me")
        rules = deployed.rules()

    for refusal in refusals:
        assert_problem(refusal, 403, "csrf-failed")
    assert_problem(blocked, 403, "address-blocked")
    assert "CSRF" in rules[0].reason


def test_blocks_expire_escalate_and_their_end_is_audited(env_vars):
    """R16 / IP blocking extra: an automatic block ends by itself (audited as lifted); the
    next offence of the same network is blocked longer (base x 4^level, capped); an
    administrator can lift a block early (audited with their id)."""
    with deployment(
        env_vars,
        rate_limits="block_errors=2/minute",
        ip_block_base_seconds="2",
        ip_block_max_seconds="5",
    ) as deployed:
        admin, headers = deployed.admin()
        scanner = deployed.client(ATTACKER)
        first_round = [scanner.get(f"/x/{n}").status_code for n in range(3)]
        blocked = scanner.get("/api/v1/")
        time.sleep(2.3)
        after_expiry = scanner.get("/api/v1/")
        listing = admin.get(BLOCKS, headers=headers)
        second_round = [scanner.get(f"/y/{n}").status_code for n in range(3)]
        blocked_again = scanner.get("/api/v1/")
        [first, second] = deployed.rules()
        lifted = admin.delete(f"{BLOCKS}/{second.id}", headers=headers)
        after_lift = scanner.get("/api/v1/")
        unblocked = deployed.audit_events(AuditEventType.SECURITY_IP_UNBLOCKED)

    assert first_round == [404] * 3
    assert_problem(blocked, 403, "address-blocked")
    assert after_expiry.status_code == 200
    assert listing.json()["items"] == []
    assert second_round == [404] * 3
    assert_problem(blocked_again, 403, "address-blocked")
    assert (first.level, second.level) == (0, 1)
    assert first.expires_at - first.created_at == timedelta(seconds=2)
    # 2 x 4^1 = 8 seconds, capped at PLEXUS_IP_BLOCK_MAX_SECONDS=5.
    assert second.expires_at - second.created_at == timedelta(seconds=5)
    assert lifted.status_code == 204
    assert after_lift.status_code == 200
    expired, by_admin = unblocked
    assert (expired.actor_type, expired.actor_id) == ("system", "ip_guard")
    assert (expired.target_id, context(expired)["reason"]) == (str(first.id), "expired")
    assert by_admin.actor_type == "user"
    assert by_admin.target_id == str(second.id)
    assert first.lifted_at == first.expires_at
    assert second.lifted_at is None  # read before the administrator lifted it


def test_blocked_requests_are_counted_in_memory_then_written(env_vars):
    """R16: refusals are counted and shown to administrators at once, but written to the
    database in one update per refresh, not once per refused request."""
    with deployment(env_vars) as deployed:
        admin, headers = deployed.admin()
        made = admin.post(
            BLOCKS, json={"network": ATTACKER, "reason": "abuse", "minutes": 30}, headers=headers
        )
        attacker = deployed.client(ATTACKER)
        refusals = [attacker.get("/api/v1/").status_code for _ in range(7)]
        [before_flush] = deployed.rules()
        shown = admin.get(BLOCKS, headers=headers).json()["items"]
        deployed.runtime.ip_guard.refresh()
        [after_flush] = deployed.rules()
        shown_after = admin.get(BLOCKS, headers=headers).json()["items"]

    assert made.status_code == 201, made.text
    assert refusals == [403] * 7
    assert before_flush.blocked_requests == 0
    assert [r["blocked_requests"] for r in shown] == [7]
    assert after_flush.blocked_requests == 7
    assert [r["blocked_requests"] for r in shown_after] == [7]


def test_bystander_login_failures_below_threshold_block_nothing(env_vars):
    """The thresholds are budgets: a user mistyping a password a few times is not blocked."""
    with deployment(env_vars) as deployed:
        create_user(deployed.runtime, "typo@example.org")
        client = deployed.client(BYSTANDER)
        failures = [login(client, "typo@example.org", "wrong").status_code for _ in range(3)]
        headers = bearer(client, "typo@example.org")
        me = client.get("/api/v1/me", headers=headers)
        rules = deployed.rules()

    assert failures == [401, 401, 401]
    assert me.status_code == 200
    assert rules == []


def test_blocked_address_cannot_open_a_websocket(env_vars):
    """A block covers every kind of connection: a WebSocket handshake is refused too."""
    with deployment(env_vars) as deployed:

        @deployed.app.websocket("/_t/ws")
        async def greet(socket: WebSocket) -> None:
            await socket.accept()
            await socket.send_text("hello")
            await socket.close()

        admin, headers = deployed.admin()
        made = admin.post(BLOCKS, json={"network": ATTACKER, "reason": "x"}, headers=headers)
        with deployed.client(BYSTANDER).websocket_connect("/_t/ws") as open_socket:
            greeting = open_socket.receive_text()
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            deployed.client(ATTACKER).websocket_connect("/_t/ws"),
        ):
            pass

    assert made.status_code == 201, made.text
    assert greeting == "hello"
    assert refused.value.code == 1008
