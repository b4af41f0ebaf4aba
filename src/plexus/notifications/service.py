"""Notifying members, and reading one's own notifications. Never commits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plexus.authz.permissions import Role
from plexus.errors import NotFound
from plexus.models.base import utcnow
from plexus.models.connections import Notification
from plexus.notifications import repository
from plexus.notifications.repository import NotificationRepository

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from plexus.auth.principal import Principal

ADMIN_ROLES = (Role.OWNER.value, Role.ADMIN.value)


def notify_workspace_admins(  # noqa: PLR0913 - where, what about, and what it says
    session: Session, workspace_id: int, *, kind: str, subject: str, title: str, body: str
) -> int:
    """One notification per owner and admin of the workspace, unless one about the same
    ``subject`` is still unread (a failing connection does not flood the inbox).
    Returns how many were created.
    """
    created = 0
    for user_id in repository.member_ids_with_roles(session, workspace_id, ADMIN_ROLES):
        if repository.has_unread(session, user_id, kind, subject):
            continue
        repository.add(
            session,
            Notification(
                workspace_id=workspace_id,
                user_id=user_id,
                kind=kind,
                subject=subject,
                title=title[:200],
                body=body[:1000],
            ),
        )
        created += 1
    session.flush()
    return created


def my_notifications(
    session: Session, principal: Principal, *, unread_only: bool, limit: int, offset: int
) -> Sequence[Notification]:
    repo = NotificationRepository(session, principal.user_id)
    return repo.page(unread_only=unread_only, limit=limit, offset=offset)


def mark_read(session: Session, principal: Principal, notification_id: int) -> None:
    if not NotificationRepository(session, principal.user_id).mark_read(notification_id, utcnow()):
        raise NotFound("There is no such notification.")
