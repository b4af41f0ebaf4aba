"""Queries on notifications. Every query is scoped to one user (their own inbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from plexus.models.connections import Notification
from plexus.models.identity import Membership

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session


class NotificationRepository:
    def __init__(self, session: Session, user_id: int) -> None:
        self.session = session
        self.user_id = user_id

    def page(self, *, unread_only: bool, limit: int, offset: int) -> Sequence[Notification]:
        statement = select(Notification).where(Notification.user_id == self.user_id)
        if unread_only:
            statement = statement.where(Notification.read_at.is_(None))
        statement = statement.order_by(Notification.id.desc()).limit(limit).offset(offset)
        return self.session.scalars(statement).all()

    def mark_read(self, notification_id: int, now: datetime) -> bool:
        result = self.session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.user_id == self.user_id)
            .values(read_at=now)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]


def member_ids_with_roles(session: Session, workspace_id: int, roles: Sequence[str]) -> list[int]:
    statement = select(Membership.user_id).where(
        Membership.workspace_id == workspace_id, Membership.role.in_(list(roles))
    )
    return list(session.scalars(statement).all())


def has_unread(session: Session, user_id: int, kind: str, subject: str) -> bool:
    statement = select(Notification.id).where(
        Notification.user_id == user_id,
        Notification.kind == kind,
        Notification.subject == subject,
        Notification.read_at.is_(None),
    )
    return session.scalars(statement.limit(1)).first() is not None


def add(session: Session, notification: Notification) -> None:
    session.add(notification)
