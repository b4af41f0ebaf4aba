"""A Plexus app for the rate-limit and IP-guard tests, with clients at chosen addresses.

The tests change settings (lower budgets, trusted proxies, short blocks), so each builds
its own deployment on the test's fresh database instead of using the ``app`` fixture.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from plexus.app import create_app
from plexus.config import load_settings
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import IpRule, SecurityEvent
from plexus.runtime import init_runtime

from auth_helpers import bearer, create_user
from conftest import PLEXUS_CMD, subprocess_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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


# --- real server processes ---------------------------------------------------------------

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


@contextlib.contextmanager
def serving(port: int, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``plexus serve --port PORT`` in a child process until the block ends; yields its URL.

    Logs go to files (a pipe could fill and stall the server); they are shown if it
    fails to start. SIGINT, then kill, whatever the outcome.
    """
    tag = uuid.uuid4().hex[:8]
    out_path, err_path = cwd / f"serve-{tag}.out", cwd / f"serve-{tag}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [*PLEXUS_CMD, "serve", "--port", str(port)],
            env=subprocess_env(env),
            cwd=cwd,
            stdout=out,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                logs = out_path.read_text(errors="replace") + err_path.read_text(errors="replace")
                pytest.fail(f"plexus serve did not start on {port}\n{logs[-4000:]}")
            try:
                httpx.get(f"{url}/healthz", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
            else:
                break
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
