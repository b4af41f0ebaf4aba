"""Making accounts and signing in, for tests: users are written straight to the database
(fast, no policy checks); signing in goes through the real HTTP endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from plexus.accounts.service import set_email
from plexus.authz.permissions import Role
from plexus.db import unit_of_work
from plexus.models.identity import Membership, User, Workspace
from plexus.runtime import Runtime

PASSWORD = "correct horse battery staple 9"


def create_user(
    runtime: Runtime,
    email: str,
    *,
    password: str = PASSWORD,
    role: Role = Role.OWNER,
    workspace_id: int | None = None,
    instance_admin: bool = False,
    display_name: str | None = None,
    workspace_name: str = "Team",
) -> tuple[int, int]:
    """Create a user (and a workspace when ``workspace_id`` is None) with ``role`` in it.

    Returns (user id, workspace id).
    """
    with unit_of_work(runtime.sessions) as session:
        if workspace_id is None:
            workspace = Workspace(name=workspace_name)
            session.add(workspace)
            session.flush()
            workspace_id = workspace.id
        user = User(
            display_name=display_name or email.split("@", 1)[0],
            password_hash=runtime.passwords.hash(password),
            is_instance_admin=instance_admin,
        )
        set_email(session, runtime, user, email.lower())
        session.add(Membership(workspace_id=workspace_id, user_id=user.id, role=str(role)))
        session.flush()
        return user.id, workspace_id


def add_member(runtime: Runtime, user_id: int, workspace_id: int, role: Role) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.add(Membership(workspace_id=workspace_id, user_id=user_id, role=str(role)))


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password, **extra})


def tokens(client: TestClient, email: str, password: str = PASSWORD, **extra: Any) -> dict:
    response = login(client, email, password, **extra)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "access_token" in body, body
    return body


def bearer(
    client: TestClient, email: str, password: str = PASSWORD, **extra: Any
) -> dict[str, str]:
    """The Authorization header of a fresh sign-in."""
    return {"Authorization": f"Bearer {tokens(client, email, password, **extra)['access_token']}"}


def browser_login(client: TestClient, email: str, password: str = PASSWORD, **extra: Any) -> str:
    """Sign in with a cookie session on ``client`` (which must use an https base URL so the
    Secure cookie is sent back); returns the CSRF token."""
    response = login(client, email, password, use_cookie=True, **extra)
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


@dataclass
class SignedIn:
    """A user with one membership, signed in to that workspace with a bearer token."""

    email: str
    user_id: int
    workspace_id: int
    headers: dict[str, str]

    def relogin(self, client: TestClient) -> None:
        self.headers = bearer(client, self.email, workspace_id=self.workspace_id)


def sign_in(
    runtime: Runtime,
    client: TestClient,
    email: str,
    *,
    role: Role = Role.OWNER,
    workspace_id: int | None = None,
) -> SignedIn:
    """A new user with ``role`` (in a new workspace unless ``workspace_id``), signed in."""
    user_id, workspace = create_user(runtime, email, role=role, workspace_id=workspace_id)
    return SignedIn(email, user_id, workspace, bearer(client, email, workspace_id=workspace))
