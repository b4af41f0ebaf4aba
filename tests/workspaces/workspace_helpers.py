"""Helpers for the workspace, member and invitation tests: signed-in people, the problem
shape, and reading what the database and the audit chain hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from plexus.accounts.service import email_index
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import Invitation, Membership, User, Workspace
from plexus.runtime import Runtime

from auth_helpers import PASSWORD, SignedIn, sign_in, tokens

API = "/api/v1"
INVITATIONS = f"{API}/invitations"
ACCEPT = f"{INVITATIONS}/accept"
ACCEPT_EXISTING = f"{INVITATIONS}/accept-existing"
#: A strong password for accounts made through invitations and sign-up.
NEW_PASSWORD = "quartz lantern orbit meadow 42"


def workspace_path(workspace_id: int) -> str:
    return f"{API}/workspaces/{workspace_id}"


def members_path(workspace_id: int, user_id: int | None = None) -> str:
    base = f"{workspace_path(workspace_id)}/members"
    return base if user_id is None else f"{base}/{user_id}"


#: A signed-in user, as these tests call one.
Person = SignedIn


def token_pair(client: TestClient, person: Person) -> dict[str, Any]:
    return tokens(client, person.email, PASSWORD, workspace_id=person.workspace_id)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem+json of ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def problem_code(response: httpx.Response, status: int) -> str:
    return str(problem(response, status)["type"]).rsplit(":", 1)[-1]


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def invite(
    client: TestClient, inviter: Person, email: str, role: Role = Role.EDITOR, **extra: Any
) -> dict[str, Any]:
    response = client.post(
        INVITATIONS, json={"email": email, "role": str(role), **extra}, headers=inviter.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def accept(
    client: TestClient,
    token: str,
    *,
    display_name: str = "Grace Hopper",
    password: str = NEW_PASSWORD,
) -> httpx.Response:
    return client.post(
        ACCEPT, json={"token": token, "display_name": display_name, "password": password}
    )


def audit_events(runtime: Runtime, event: str) -> list[AuditEvent]:
    with unit_of_work(runtime.sessions) as session:
        statement = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        rows = list(session.scalars(statement))
        session.expunge_all()
        return rows


def role_of(runtime: Runtime, user_id: int, workspace_id: int) -> str | None:
    with unit_of_work(runtime.sessions) as session:
        return session.scalar(
            select(Membership.role).where(
                Membership.user_id == user_id, Membership.workspace_id == workspace_id
            )
        )


def stored_invitation(runtime: Runtime, invitation_id: int) -> Invitation:
    with unit_of_work(runtime.sessions) as session:
        row = session.get(Invitation, invitation_id)
        assert row is not None
        session.expunge(row)
        return row


def user_by_email(runtime: Runtime, email: str) -> User | None:
    with unit_of_work(runtime.sessions) as session:
        row = session.scalars(
            select(User).where(User.email_index == email_index(runtime, email))
        ).one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def counts(runtime: Runtime) -> tuple[int, int, int]:
    """How many users, workspaces and memberships exist."""
    with unit_of_work(runtime.sessions) as session:
        return (
            int(session.scalar(select(func.count()).select_from(User)) or 0),
            int(session.scalar(select(func.count()).select_from(Workspace)) or 0),
            int(session.scalar(select(func.count()).select_from(Membership)) or 0),
        )


# The test modules' fixtures. A conftest.py here would shadow tests/conftest.py for the
# modules that import from it, so each module imports the fixture functions it uses from
# here (with a ``noqa: F401``: pytest finds them by their ``name``, not the import).


@pytest.fixture(name="env_vars")
def env_vars_fixture(env_vars: dict[str, str]) -> dict[str, str]:
    """These tests sign in far more often than one address's login budget allows; the
    invitation class keeps its default."""
    budget = "1000 per 5 minutes"
    return {**env_vars, "PLEXUS_RATE_LIMITS": f"login={budget};login_account={budget}"}


@pytest.fixture(name="people")
def people_fixture(client: TestClient, runtime: Runtime) -> Callable[..., Person]:
    """``people(email, role=..., workspace_id=...)`` → a signed-in Person."""

    def make(email: str, *, role: Role = Role.OWNER, workspace_id: int | None = None) -> Person:
        return sign_in(runtime, client, email, role=role, workspace_id=workspace_id)

    return make


@pytest.fixture(name="owner")
def owner_fixture(people: Callable[..., Person]) -> Person:
    return people("owner@example.com")


@pytest.fixture(name="team")
def team_fixture(people: Callable[..., Person], owner: Person) -> dict[Role, Person]:
    """The owner's workspace with one member of every other role."""
    members = {Role.OWNER: owner}
    for role in (Role.ADMIN, Role.EDITOR, Role.CONTRIBUTOR, Role.VIEWER):
        members[role] = people(f"{role}@example.com", role=role, workspace_id=owner.workspace_id)
    return members
