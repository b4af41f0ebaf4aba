"""``plexus ip block|unblock|allow|unallow|list`` (R16; ASVS 16.3.x: audited with the
``system:cli`` actor), run as real processes against the test's database."""

from __future__ import annotations

import time

import pytest

from plexus.audit.events import AuditEventType

from conftest import run_cli
from guard_helpers import assert_problem, context, deployment

pytestmark = pytest.mark.slow

#: Longer than the rule cache of a running server (RULE_CACHE_SECONDS), with margin.
PICKUP_SECONDS = 10.0


def _ok(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(["ip", *args], env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_block_list_unblock_and_audit(env_vars):
    """Block a network, see it listed, lift it by network; each change is audited."""
    blocked = _ok(["block", "203.0.113.0/24", "--reason", "abuse", "--minutes", "30"], env_vars)
    listed = _ok(["list"], env_vars)
    lifted = _ok(["unblock", "203.0.113.0/24"], env_vars)
    empty = _ok(["list"], env_vars)

    assert "blocked" in blocked
    assert "203.0.113.0/24" in blocked
    [line] = [row for row in listed.splitlines() if "203.0.113.0/24" in row]
    assert "\tblock\t" in line
    assert "\tmanual\t" in line
    assert line.endswith("abuse")
    assert "lifted" in lifted
    assert "203.0.113.0/24" not in empty
    with deployment(env_vars) as deployed:
        [block] = deployed.audit_events(AuditEventType.SECURITY_IP_BLOCKED)
        [unblock] = deployed.audit_events(AuditEventType.SECURITY_IP_UNBLOCKED)
        [rule] = deployed.rules()
    for event in (block, unblock):
        assert (event.actor_type, event.actor_id) == ("system", "cli")
        assert event.target_id == str(rule.id)
    assert context(block)["minutes"] == 30
    assert rule.created_by is None
    assert rule.lifted_at is not None


def test_allow_and_unallow_by_id(env_vars):
    allowed = _ok(["allow", "2001:db8:abcd::/48", "--reason", "office"], env_vars)
    rule_id = allowed.split()[1]
    listed = _ok(["list"], env_vars)
    removed = _ok(["unallow", rule_id], env_vars)

    assert "2001:db8:abcd::/48\tmanual" in listed
    assert "\tallow\t" in listed
    assert f"removed {rule_id}" in removed
    with deployment(env_vars) as deployed:
        [allow] = deployed.audit_events(AuditEventType.SECURITY_IP_ALLOWED)
        [removal] = deployed.audit_events(AuditEventType.SECURITY_IP_ALLOW_REMOVED)
    assert allow.actor_id == removal.actor_id == "cli"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["block", "10.1.2.3/8", "--reason", "x"], 2, "host bits"),
        (["block", "not-an-ip", "--reason", "x"], 2, "not an IP address"),
        (["allow", "300.1.1.1", "--reason", "x"], 2, "not an IP address"),
        (["unblock", "4242"], 1, "No block rule 4242"),
        (["unblock", "192.0.2.0/24"], 1, "No block rule for 192.0.2.0/24"),
        (["unallow", "7"], 1, "No allow rule 7"),
    ],
)
def test_refusals_exit_non_zero_with_one_line(env_vars, args, code, message):
    result = run_cli(["ip", *args], env_vars)

    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_running_server_picks_up_a_cli_block(env_vars):
    """Another process's change reaches a running server within its rule-cache period."""
    with deployment(env_vars) as deployed:
        client = deployed.client("198.51.100.99")
        before = client.get("/api/v1/")
        _ok(["block", "198.51.100.99", "--reason", "seen in the logs"], env_vars)
        deadline = time.monotonic() + PICKUP_SECONDS
        answer = client.get("/api/v1/")
        while answer.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.25)
            answer = client.get("/api/v1/")
        _ok(["unblock", "198.51.100.99/32"], env_vars)

    assert before.status_code == 200
    assert_problem(answer, 403, "address-blocked")
