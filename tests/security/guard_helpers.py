"""A Plexus app for the rate-limit and IP-guard tests, with clients at chosen addresses.

The tests change settings (lower budgets, trusted proxies, short blocks), so each builds
its own deployment on the test's fresh database instead of using the ``app`` fixture.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from plexus.app import create_app
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import IpRule, SecurityEvent
from plexus.runtime import init_runtime

from auth_helpers import bearer, create_user

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

    from plexus.runtime import Runtime

ADMIN_EMAIL = "secops@example.org"
#: The address the administrator works from in these tests.
ADMIN_IP = "192.0.2.10"
BLOCKS = "/api/v1/security/ip-blocks"
ALLOWS = "/api/v1/security/ip-allows"


class Deployment:
    """One runtime and app; clients that appear to come from a given address."""

    def __init__(self, runtime: Runtime, app: FastAPI) -> None:
        self.runtime = runtime
        self.app = app
        self._clients: list[TestClient] = []
        self._admin_headers: dict[str, str] | None = None

    def client(self, ip: str, **kwargs: Any) -> TestClient:
        """A client whose TCP peer is ``ip`` (a proxy, when the settings trust it)."""
        client = TestClient(self.app, client=(ip, 40000), raise_server_exceptions=False, **kwargs)
        self._clients.append(client)
        return client

    def admin(self) -> tuple[TestClient, dict[str, str]]:
        """An instance administrator's client and Authorization header (made once)."""
        client = self.client(ADMIN_IP)
        if self._admin_headers is None:
            create_user(self.runtime, ADMIN_EMAIL, instance_admin=True)
            self._admin_headers = bearer(client, ADMIN_EMAIL)
        return client, self._admin_headers

    def rules(self, kind: str = "block") -> list[IpRule]:
        with unit_of_work(self.runtime.sessions) as session:
            statement = select(IpRule).where(IpRule.kind == kind).order_by(IpRule.id)
            return list(session.scalars(statement).all())

    def audit_events(self, event: str) -> list[AuditEvent]:
        with unit_of_work(self.runtime.sessions) as session:
            statement = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            return list(session.scalars(statement).all())

    def security_events(self, kind: str) -> list[SecurityEvent]:
        with unit_of_work(self.runtime.sessions) as session:
            statement = (
                select(SecurityEvent).where(SecurityEvent.kind == kind).order_by(SecurityEvent.id)
            )
            return list(session.scalars(statement).all())

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.runtime.dispose()


@contextlib.contextmanager
def deployment(env_vars: dict[str, str], **settings: str) -> Iterator[Deployment]:
    """A deployment of ``env_vars`` plus ``settings`` (``rate_limits="login=3/minute"``)."""
    extra = {f"PLEXUS_{name.upper()}": value for name, value in settings.items()}
    runtime = init_runtime(load_settings(environ={**env_vars, **extra}))
    deployed = Deployment(runtime, create_app(runtime.settings, runtime))
    try:
        yield deployed
    finally:
        deployed.close()


def context(event: AuditEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.context)
    return parsed


def details(event: SecurityEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.details)
    return parsed


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of ``status`` and ``code``; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:plexus:problem:{code}"
    assert body["status"] == status
    return body


def assert_rate_headers(response: Any, limit: int, remaining: int) -> None:
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    assert int(response.headers["RateLimit-Reset"]) >= 1
