"""``/api/v1/api-keys``: list, show, create, rotate and revoke the workspace's API keys."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Response

from plexus.api_keys import service
from plexus.api_keys.schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyList,
    ApiKeyRead,
    ApiKeyRotate,
    ApiKeyRotated,
)
from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow
from plexus.deps import RuntimeDep, SessionDep

#: The largest id the databases hold (a bigger one is a 422, never a database error).
MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/api-keys", tags=["api-keys"])

Reader = Annotated[Principal, Depends(Allow(Permission.API_KEY_READ))]
# Issuing a key hands out a standing credential: it needs a person who proved who they
# are within the re-authentication window (an API key never has).
Issuer = Annotated[Principal, Depends(Allow(Permission.API_KEY_CREATE, reauth=True))]
Revoker = Annotated[Principal, Depends(Allow(Permission.API_KEY_REVOKE))]
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=ApiKeyList)
def list_api_keys(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ApiKeyList:
    """The workspace's keys, newest first (never the keys themselves or their hashes)."""
    keys = service.list_keys(session, principal, limit=limit, offset=offset)
    return ApiKeyList(items=[ApiKeyRead.of(k) for k in keys])


@router.post("", response_model=ApiKeyIssued, status_code=201)
def create_api_key(
    body: ApiKeyCreate, principal: Issuer, session: SessionDep, rt: RuntimeDep
) -> ApiKeyIssued:
    """Create a key. The response holds the key itself, this once."""
    issued = service.create_key(
        session,
        rt,
        principal,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        allowed_networks=body.allowed_networks,
    )
    return ApiKeyIssued.issued(issued.record, issued.plaintext)


@router.get("/{key_id}", response_model=ApiKeyRead)
def get_api_key(key_id: KeyId, principal: Reader, session: SessionDep) -> ApiKeyRead:
    return ApiKeyRead.of(service.get_key(session, principal, key_id))


@router.post("/{key_id}/rotate", response_model=ApiKeyRotated, status_code=201)
def rotate_api_key(
    key_id: KeyId, body: ApiKeyRotate, principal: Issuer, session: SessionDep, rt: RuntimeDep
) -> ApiKeyRotated:
    """Issue a replacement (shown once); the old key works until the grace period ends."""
    rotated = service.rotate_key(session, rt, principal, key_id, grace_minutes=body.grace_minutes)
    return ApiKeyRotated.of(rotated)


@router.delete("/{key_id}", status_code=204, response_class=Response)
def revoke_api_key(
    key_id: KeyId, principal: Revoker, session: SessionDep, rt: RuntimeDep
) -> Response:
    """Revoke a key: its next request gets 401."""
    service.revoke_key(session, rt, principal, key_id)
    return Response(status_code=204)
