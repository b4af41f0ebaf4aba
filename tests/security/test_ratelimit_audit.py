"""V16.3.x: running out of a rate-limit budget is an audit event, once per window per
address (a refused flood does not become a flood of audit rows)."""

from __future__ import annotations

from sqlalchemy import select

from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent

from auth_helpers import create_user, login
from guard_helpers import deployment

CLIENT_IP = "203.0.113.77"


def _exceeded(runtime) -> list[AuditEvent]:
    with unit_of_work(runtime.sessions) as session:
        statement = select(AuditEvent).where(AuditEvent.event == "security:rate_limit:exceeded")
        return list(session.scalars(statement))


def test_a_spent_budget_is_audited_once_per_window(env_vars):
    with deployment(env_vars, rate_limits="ip=2/minute;block_errors=100/minute") as deployed:
        client = deployed.client(CLIENT_IP)
        statuses = [client.get(f"/nothing/{n}").status_code for n in range(6)]
        rows = _exceeded(deployed.runtime)
    assert statuses == [404, 404, 429, 429, 429, 429]
    assert len(rows) == 1
    assert rows[0].ip == CLIENT_IP
    assert rows[0].result == "denied"


def test_a_spent_route_budget_is_audited_too(env_vars):
    """A 429 from a route's own class (here: login) is audited like the per-address one."""
    with deployment(env_vars, rate_limits="login=2/minute;block_login=100/minute") as deployed:
        create_user(deployed.runtime, "ann@example.com")
        client = deployed.client(CLIENT_IP)
        statuses = [
            login(client, "ann@example.com", "wrong password").status_code for _ in range(4)
        ]
        rows = _exceeded(deployed.runtime)
    assert statuses == [401, 401, 429, 429]
    assert len(rows) == 1
