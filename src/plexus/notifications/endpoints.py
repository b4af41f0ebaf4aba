"""``/api/v1/me/notifications``: the caller's own notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict

from plexus.auth.principal import Principal
from plexus.authz.policy import Authenticated
from plexus.deps import SessionDep
from plexus.models.connections import Notification
from plexus.notifications import service

MAX_ID: Final = 2**63 - 1

router = APIRouter(prefix="/me/notifications", tags=["notifications"])

Me = Annotated[Principal, Depends(Authenticated(allow_api_keys=False))]


class NotificationRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    workspace_id: int
    kind: str
    subject: str | None
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, row: Notification) -> NotificationRead:
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            kind=row.kind,
            subject=row.subject,
            title=row.title,
            body=row.body,
            created_at=row.created_at,
            read_at=row.read_at,
        )


class NotificationList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[NotificationRead]


@router.get("", response_model=NotificationList)
def list_notifications(
    principal: Me,
    session: SessionDep,
    *,
    unread: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> NotificationList:
    rows = service.my_notifications(
        session, principal, unread_only=unread, limit=limit, offset=offset
    )
    return NotificationList(items=[NotificationRead.of(r) for r in rows])


@router.post("/{notification_id}/read", status_code=204, response_class=Response)
def mark_notification_read(
    notification_id: Annotated[int, Path(ge=1, le=MAX_ID)], principal: Me, session: SessionDep
) -> Response:
    service.mark_read(session, principal, notification_id)
    return Response(status_code=204)
