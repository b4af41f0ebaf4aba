"""Helpers for the API-key tests: two content routes (nothing in Plexus reads or publishes
content yet), signed-in members, clients from chosen addresses, and making, using and
inspecting keys. (No conftest.py here: it would shadow the root one for ``from conftest
import ...``.)"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission, Role
from plexus.authz.policy import Allow
from plexus.db import unit_of_work
from plexus.models.audit import AuditEvent
from plexus.models.identity import ApiKey, Membership, SecurityEvent, User
from plexus.runtime import Runtime

from auth_helpers import SignedIn, sign_in

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


#: A signed-in member, as these tests call one.
Member = SignedIn


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


def _membership(session: Session, member: Member) -> Membership:
    statement = select(Membership).where(
        Membership.user_id == member.user_id, Membership.workspace_id == member.workspace_id
    )
    return session.scalars(statement).one()


def set_role(runtime: Runtime, member: Member, role: Role) -> None:
    """Change a member's role in the database (the member endpoints are another issue's)."""
    with unit_of_work(runtime.sessions) as session:
        _membership(session, member).role = str(role)


def remove_membership(runtime: Runtime, member: Member) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.delete(_membership(session, member))


def deactivate(runtime: Runtime, member: Member) -> None:
    with unit_of_work(runtime.sessions) as session:
        user = session.get(User, member.user_id)
        assert user is not None
        user.is_active = False


# The test modules' fixtures. A conftest.py here would shadow tests/conftest.py for the
# modules that import from it, so each module imports the fixture functions it uses from
# here (with a ``noqa: F401``: pytest finds them by their ``name``, not the import).


@pytest.fixture(name="content_routes", autouse=True)
def content_routes_fixture(app: FastAPI) -> None:
    mount_content_routes(app)


@pytest.fixture(name="owner")
def owner_fixture(runtime: Runtime, client: TestClient) -> Member:
    return sign_in(runtime, client, "owner@example.com")
