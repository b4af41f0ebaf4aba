"""Helpers for the API-key tests: two content routes (nothing in Plexus reads or publishes
content yet), signed-in members, clients from chosen addresses, and making, using and
inspecting keys. (No conftest.py here: it would shadow the root one for ``from conftest
import ...``.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission, Role
from plexus.authz.policy import Allow
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import ApiKey, Membership, SecurityEvent, User
from plexus.runtime import Runtime

from auth_helpers import bearer, create_user

KEYS_PATH = "/api/v1/api-keys"
CONTENT_READ_PATH = "/api/v1/_t/content"
CONTENT_PUBLISH_PATH = "/api/v1/_t/content/publish"
INVALID_KEY_DETAIL = "The API key is invalid, expired or revoked."


def mount_content_routes(app: FastAPI) -> None:
    """A read route and a publish route, each declaring its permission as real ones do."""
    router = APIRouter(prefix="/api/v1/_t")

    @router.get("/content")
    def read_content(
        principal: Annotated[Principal, Depends(Allow(Permission.CONTENT_READ))],
    ) -> dict[str, Any]:
        return {"read": True, "kind": str(principal.kind), "key": principal.api_key_id}

    @router.post("/content/publish")
    def publish_content(
        principal: Annotated[Principal, Depends(Allow(Permission.CONTENT_PUBLISH))],
    ) -> dict[str, Any]:
        return {"published": True, "key": principal.api_key_id}

    app.include_router(router)


@dataclass
class Member:
    email: str
    user_id: int
    workspace_id: int
    headers: dict[str, str]


def sign_in(
    runtime: Runtime,
    client: TestClient,
    email: str,
    *,
    role: Role = Role.OWNER,
    workspace_id: int | None = None,
) -> Member:
    """A new member (of a new workspace unless ``workspace_id``), signed in with a token."""
    user_id, workspace = create_user(runtime, email, role=role, workspace_id=workspace_id)
    return Member(email, user_id, workspace, bearer(client, email))


def from_ip(app: FastAPI, ip: str) -> TestClient:
    """A client whose requests come from ``ip`` (the ``client`` fixture runs the lifespan)."""
    return TestClient(app, raise_server_exceptions=False, client=(ip, 50000))


def key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_key(client: TestClient, member: Member, **body: Any) -> dict[str, Any]:
    """Create a key as ``member`` (default: scope content:read); returns the 201 body."""
    payload = {"name": "ci", "scopes": ["content:read"], **body}
    response = client.post(KEYS_PATH, json=payload, headers=member.headers)
    assert response.status_code == 201, response.text
    return response.json()


def assert_invalid_key(response: httpx.Response) -> None:
    """The one answer every unusable key gets, whatever is wrong with it."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["detail"] == INVALID_KEY_DETAIL
    assert body["type"] == "urn:plexus:problem:unauthorized"


def security_events(runtime: Runtime, kind: str) -> list[SecurityEvent]:
    with unit_of_work(runtime.sessions) as session:
        statement = select(SecurityEvent).where(SecurityEvent.kind == kind)
        rows = list(session.scalars(statement.order_by(SecurityEvent.id)))
        session.expunge_all()
        return rows


def event_details(event: SecurityEvent) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(event.details)
    return details


def audit_events(runtime: Runtime, name: str) -> list[AuditEvent]:
    with unit_of_work(runtime.sessions) as session:
        statement = select(AuditEvent).where(AuditEvent.event == name)
        rows = list(session.scalars(statement.order_by(AuditEvent.id)))
        session.expunge_all()
        return rows


def stored_key(runtime: Runtime, key_id: int) -> ApiKey:
    with unit_of_work(runtime.sessions) as session:
        row = session.get(ApiKey, key_id)
        assert row is not None
        session.expunge(row)
        return row


def set_role(runtime: Runtime, member: Member, role: Role) -> None:
    """Change a member's role in the database (the member endpoints are another issue's)."""
    with unit_of_work(runtime.sessions) as session:
        membership = session.scalars(
            select(Membership).where(
                Membership.user_id == member.user_id,
                Membership.workspace_id == member.workspace_id,
            )
        ).one()
        membership.role = str(role)


def remove_membership(runtime: Runtime, member: Member) -> None:
    with unit_of_work(runtime.sessions) as session:
        membership = session.scalars(
            select(Membership).where(
                Membership.user_id == member.user_id,
                Membership.workspace_id == member.workspace_id,
            )
        ).one()
        session.delete(membership)


def deactivate(runtime: Runtime, member: Member) -> None:
    with unit_of_work(runtime.sessions) as session:
        user = session.get(User, member.user_id)
        assert user is not None
        user.is_active = False
