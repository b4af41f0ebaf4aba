"""``/api/v1/content``: write, edit, review and archive content; its versions."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Response

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow
from plexus.content import service
from plexus.content.schemas import (
    ContentCreate,
    ContentList,
    ContentRead,
    ContentType,
    ContentUpdate,
    ReturnBody,
    Status,
    Tag,
    VersionList,
    VersionRead,
)
from plexus.deps import RuntimeDep, SessionDep

MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/content", tags=["content"])

Reader = Annotated[Principal, Depends(Allow(Permission.CONTENT_READ))]
Writer = Annotated[Principal, Depends(Allow(Permission.CONTENT_WRITE))]
Publisher = Annotated[Principal, Depends(Allow(Permission.CONTENT_PUBLISH))]
Deleter = Annotated[Principal, Depends(Allow(Permission.CONTENT_DELETE))]
ContentId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.post("", response_model=ContentRead, status_code=201)
def create(
    body: ContentCreate, principal: Writer, session: SessionDep, rt: RuntimeDep
) -> ContentRead:
    """Write a new item (a draft, version 1)."""
    return ContentRead.of(service.create_item(session, rt, principal, body))


@router.get("", response_model=ContentList)
def list_content(
    principal: Reader,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    status: Status | None = None,
    content_type: ContentType | None = None,
    tag: Annotated[Tag | None, Query()] = None,
) -> ContentList:
    """The workspace's content, most recently changed first."""
    rows, total = service.list_items(
        session,
        principal,
        limit=limit,
        offset=offset,
        status=status,
        content_type=content_type,
        tag=tag,
    )
    return ContentList(
        items=[ContentRead.of(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{content_id}", response_model=ContentRead)
def get(content_id: ContentId, principal: Reader, session: SessionDep) -> ContentRead:
    return ContentRead.of(service.get_item(session, principal, content_id))


@router.patch("/{content_id}", response_model=ContentRead)
def update(
    content_id: ContentId,
    body: ContentUpdate,
    principal: Writer,
    session: SessionDep,
    rt: RuntimeDep,
) -> ContentRead:
    """Change the given fields: a new version, and a draft again."""
    return ContentRead.of(service.update_item(session, rt, principal, content_id, body))


@router.post("/{content_id}/submit", response_model=ContentRead)
def submit(
    content_id: ContentId, principal: Writer, session: SessionDep, rt: RuntimeDep
) -> ContentRead:
    """Ask for review (draft → in_review)."""
    return ContentRead.of(service.submit(session, rt, principal, content_id))


@router.post("/{content_id}/approve", response_model=ContentRead)
def approve(
    content_id: ContentId, principal: Publisher, session: SessionDep, rt: RuntimeDep
) -> ContentRead:
    """Approve the current version (editors and above)."""
    return ContentRead.of(service.approve(session, rt, principal, content_id))


@router.post("/{content_id}/return", response_model=ContentRead)
def return_to_draft(
    content_id: ContentId,
    principal: Publisher,
    session: SessionDep,
    rt: RuntimeDep,
    body: ReturnBody | None = None,
) -> ContentRead:
    """Send it back to draft, with a comment for its author."""
    comment = body.comment if body is not None else None
    return ContentRead.of(service.return_to_draft(session, rt, principal, content_id, comment))


@router.post("/{content_id}/archive", response_model=ContentRead)
def archive(
    content_id: ContentId, principal: Publisher, session: SessionDep, rt: RuntimeDep
) -> ContentRead:
    return ContentRead.of(service.archive(session, rt, principal, content_id))


@router.post("/{content_id}/restore", response_model=ContentRead)
def restore(
    content_id: ContentId, principal: Publisher, session: SessionDep, rt: RuntimeDep
) -> ContentRead:
    """An archived item becomes a draft again."""
    return ContentRead.of(service.restore(session, rt, principal, content_id))


@router.delete("/{content_id}", status_code=204, response_class=Response)
def delete(
    content_id: ContentId, principal: Deleter, session: SessionDep, rt: RuntimeDep
) -> Response:
    service.delete_item(session, rt, principal, content_id)
    return Response(status_code=204)


@router.get("/{content_id}/versions", response_model=VersionList)
def list_versions(
    content_id: ContentId,
    principal: Reader,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> VersionList:
    """Every saved version, newest first."""
    rows = service.versions(session, principal, content_id, limit=limit, offset=offset)
    return VersionList(items=[VersionRead.of(r) for r in rows])


@router.get("/{content_id}/versions/{number}", response_model=VersionRead)
def get_version(
    content_id: ContentId,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: Reader,
    session: SessionDep,
) -> VersionRead:
    return VersionRead.of(service.version(session, principal, content_id, number))
