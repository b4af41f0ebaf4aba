"""``/api/v1/publications``, and ``preflight`` / ``publish`` on a content item.

Preflight and publish read what they check in one transaction and end it before asking
any platform (Instagram's remaining daily quota), so no transaction waits on a platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query

from plexus.auth.principal import Principal
from plexus.authz.permissions import Permission
from plexus.authz.policy import Allow
from plexus.content.preflight import Problem
from plexus.deps import RuntimeDep, SessionDep
from plexus.errors import ValidationFailed
from plexus.publishing import service
from plexus.publishing.schemas import (
    PreflightBody,
    PreflightRead,
    ProblemRead,
    PublicationList,
    PublicationRead,
    PublishBody,
    PublishRead,
    RescheduleBody,
    ResolveBody,
    RetryBody,
    State,
)

MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/publications", tags=["publishing"])
content_router = APIRouter(prefix="/content", tags=["publishing"])

Reader = Annotated[Principal, Depends(Allow(Permission.CONTENT_READ))]
Publisher = Annotated[Principal, Depends(Allow(Permission.CONTENT_PUBLISH))]
ContentId = Annotated[int, Path(ge=1, le=MAX_ID)]
PublicationId = Annotated[int, Path(ge=1, le=MAX_ID)]
FilterId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _problems(problems: list[Problem]) -> list[ProblemRead]:
    return [ProblemRead.model_validate(p) for p in service.problems_json(problems)]


@content_router.post("/{content_id}/preflight", response_model=PreflightRead)
def preflight(
    content_id: ContentId,
    body: PreflightBody,
    principal: Reader,
    session: SessionDep,
    rt: RuntimeDep,
) -> PreflightRead:
    """Check the current version against every target's rules; every problem at once."""
    prepared = service.prepare(session, rt, principal, content_id, body.connection_ids)
    session.commit()
    problems = service.check(prepared, service.remaining_quotas(rt, prepared))
    return PreflightRead(ok=not problems, problems=_problems(problems))


@content_router.post("/{content_id}/publish", response_model=PublishRead, status_code=201)
def publish(
    content_id: ContentId,
    body: PublishBody,
    principal: Publisher,
    session: SessionDep,
    rt: RuntimeDep,
) -> PublishRead:
    """Publish the current (approved) version now or at ``scheduled_at``.

    Preflight runs first: when any target fails nothing is queued (422 with every
    problem), unless ``valid_only`` asks to publish to the targets that pass.
    """
    prepared = service.prepare(session, rt, principal, content_id, body.connection_ids)
    session.commit()
    problems = service.check(prepared, service.remaining_quotas(rt, prepared))
    failing = {p.connection_id for p in problems}
    targets = [c for c in dict.fromkeys(body.connection_ids) if c not in failing]
    if problems and (not body.valid_only or None in failing or not targets):
        raise ValidationFailed(
            "Some targets do not pass preflight; nothing was queued.",
            extra={"problems": service.problems_json(problems)},
        )
    created = service.publish(
        session,
        rt,
        principal,
        prepared,
        targets,
        scheduled_at=body.scheduled_at,
        timezone=body.timezone,
    )
    return PublishRead(
        publications=[PublicationRead.of(p) for p in created], problems=_problems(problems)
    )


@router.get("", response_model=PublicationList)
def list_publications(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    state: State | None = None,
    connection_id: FilterId = None,
    content_id: FilterId = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> PublicationList:
    """The workspace's publications, latest scheduled first. ``start``/``end`` (with an
    offset) give a calendar range of scheduled times.
    """
    rows, total = service.list_publications(
        session,
        principal,
        limit=limit,
        offset=offset,
        state=state,
        connection_id=connection_id,
        content_id=content_id,
        start=start,
        end=end,
    )
    return PublicationList(
        items=[PublicationRead.of(p) for p in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{publication_id}", response_model=PublicationRead)
def get_publication(
    publication_id: PublicationId, principal: Reader, session: SessionDep
) -> PublicationRead:
    return PublicationRead.of(service.get_publication(session, principal, publication_id))


@router.post("/{publication_id}/cancel", response_model=PublicationRead)
def cancel(
    publication_id: PublicationId, principal: Publisher, session: SessionDep, rt: RuntimeDep
) -> PublicationRead:
    return PublicationRead.of(service.cancel(session, rt, principal, publication_id))


@router.post("/{publication_id}/reschedule", response_model=PublicationRead)
def reschedule(
    publication_id: PublicationId,
    body: RescheduleBody,
    principal: Publisher,
    session: SessionDep,
    rt: RuntimeDep,
) -> PublicationRead:
    publication = service.reschedule(
        session,
        rt,
        principal,
        publication_id,
        scheduled_at=body.scheduled_at,
        timezone=body.timezone,
    )
    return PublicationRead.of(publication)


@router.post("/{publication_id}/retry", response_model=PublicationRead)
def retry(
    publication_id: PublicationId,
    principal: Publisher,
    session: SessionDep,
    rt: RuntimeDep,
    body: RetryBody | None = None,
) -> PublicationRead:
    """Send a failed publication again (an unconfirmed one with ``force``)."""
    force = body.force if body is not None else False
    return PublicationRead.of(service.retry(session, rt, principal, publication_id, force=force))


@router.post("/{publication_id}/resolve", response_model=PublicationRead)
def resolve(
    publication_id: PublicationId,
    body: ResolveBody,
    principal: Publisher,
    session: SessionDep,
    rt: RuntimeDep,
) -> PublicationRead:
    """Settle an unconfirmed publication by hand (published, or not)."""
    url = str(body.remote_url) if body.remote_url else None
    publication = service.resolve(
        session, rt, principal, publication_id, published=body.published, remote_url=url
    )
    return PublicationRead.of(publication)


@router.delete("/{publication_id}/post", response_model=PublicationRead)
def delete_post(
    publication_id: PublicationId, principal: Publisher, session: SessionDep, rt: RuntimeDep
) -> PublicationRead:
    """Delete the published post at the platform."""
    post = service.remote_post(session, principal, publication_id)
    session.commit()
    service.delete_remote(rt, post)
    return PublicationRead.of(service.mark_deleted(session, rt, principal, publication_id))
